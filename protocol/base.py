"""The shared model base and the base64 bytes type.

Clients send a mix of camelCase and snake_case at every level (the SDK dumps
nested config without camelCasing it), and protobuf's JSON parser accepts both,
so every model validates by alias *and* by name. Unknown nested fields are
ignored, as both the SDK and lenient proto parsers do.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, model_validator
from pydantic.alias_generators import to_camel

_WHITESPACE = re.compile(r"\s+")
_TO_STANDARD = str.maketrans("-_", "+/")


def decode_base64(value: Any) -> Any:
    """Decode standard or URL-safe base64, padded or not.

    The SDK sends URL-safe (``-_``), raw clients send standard (``+/``), and
    some omit the padding; protobuf JSON accepts all of them. Non-strings
    (already bytes) pass through to pydantic's own bytes check.
    """
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if not isinstance(value, str):
        return value
    text = _WHITESPACE.sub("", value).translate(_TO_STANDARD)
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("invalid base64") from None


def encode_base64(value: bytes) -> str:
    """Standard padded base64, what Google's servers emit and every decoder reads."""
    return base64.b64encode(value).decode("ascii")


Base64Bytes = Annotated[
    bytes,
    BeforeValidator(decode_base64),
    PlainSerializer(encode_base64, return_type=str, when_used="json"),
]
"""Bytes on the wire as base64: lenient in, standard base64 out (JSON mode only)."""


class WireModel(BaseModel):
    """Base of every protocol model: camelCase aliases, names accepted too.

    JSON ``null`` means "absent" in protobuf JSON, so nulls are dropped before
    validation; fields with non-None defaults (``parts``, ``turnComplete``)
    then take their defaults instead of failing.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=True,
        extra="ignore",
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict) and None in data.values():
            return {k: v for k, v in data.items() if v is not None}
        return data
