"""Which keys each message model knows, so a frame naming a field nobody defined is refused.

Google's JSON parser rejects unknown names ("Invalid JSON payload received. Unknown name ..."); a field
the server silently dropped would look accepted while doing nothing. Free-form values (function
arguments and responses, JSON schemas, labels) are not looked into.
"""

from __future__ import annotations

import functools
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.alias_generators import to_snake


def nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside `X | None`, `list[X]`, `Annotated[X, ...]`, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (dict, types.UnionType, typing.Union, list, typing.Annotated):
        for arg in typing.get_args(annotation):
            if typing.get_origin(annotation) is dict:
                return None
            found = nested_model(arg)
            if found is not None:
                return found
    return None


@functools.cache
def known_fields(model: type[BaseModel]) -> dict[str, type[BaseModel] | None]:
    """Every accepted key (camelCase alias and snake_case name) and the model its value holds."""
    keys: dict[str, type[BaseModel] | None] = {}
    for name, field in model.model_fields.items():
        inner = nested_model(field.annotation)
        keys[name] = inner
        keys[field.alias or name] = inner
    return keys


def unknown_field(value: Any, model: type[BaseModel]) -> tuple[str, str] | None:
    """The first (name, where) in `value` that `model` does not define, or None."""
    found = _unknown(value, model)
    if found is None:
        return None
    name, where = found
    return name, ".".join(to_snake(key) for key in reversed(where))


def _unknown(value: Any, model: type[BaseModel]) -> tuple[str, list[str]] | None:
    """Like `unknown_field`, the path as keys innermost first (built only when something is found)."""
    if isinstance(value, list) and hasattr(model, "bare_list_of"):
        value = {model.bare_list_of: value}
    if isinstance(value, list):
        for item in value:
            found = _unknown(item, model)
            if found:
                return found
        return None
    if not isinstance(value, dict):
        return None
    fields = known_fields(model)
    for key, item in value.items():
        if key not in fields:
            return key, []
        inner = fields[key]
        if inner is not None and item is not None:
            found = _unknown(item, inner)
            if found:
                found[1].append(key)
                return found
    return None
