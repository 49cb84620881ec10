"""docs/parity.md against the code: the file is what the registry generates, the registry covers every
field of the protocol models and nothing else, and a real server refuses every rejected field (and
refused value) naming it, while accepting every field marked accepted-and-ignored."""

from __future__ import annotations

import asyncio
import json
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from websockets.exceptions import ConnectionClosed

from live.parity import FIELDS, Status, document, model_fields
from protocol import ClientMessage, ServerMessage, parse_client_frame
from protocol.fields import known_fields
from tests.conftest import Server

DOC = Path(__file__).resolve().parents[1] / "docs" / "parity.md"
MODEL = "models/gemini-live-2.5-flash-preview"


def test_the_document_is_the_registry() -> None:
    assert DOC.read_text() == document(), "docs/parity.md is stale: run `openlive parity > docs/parity.md`"
    rows = [line.split("|")[1:3] for line in DOC.read_text().splitlines() if line.startswith("| `")]
    table = {key.strip().strip("`"): status.strip() for key, status in rows}
    assert table == {key: row.status.value for key, row in FIELDS.items()}


def test_the_registry_covers_exactly_the_protocol() -> None:
    fields = [*model_fields(ClientMessage), *model_fields(ServerMessage)]
    assert sorted(FIELDS) == sorted(set(fields))
    for key in model_fields(ClientMessage):
        assert FIELDS[key].status in (Status.SUPPORTED, Status.IGNORED, Status.REJECTED), key
    for key in model_fields(ServerMessage):
        if key.split(".")[0] in {"ServerMessage", "SetupComplete", "ServerContent", "ToolCall"}:
            assert FIELDS[key].status in (Status.SENT, Status.NOT_SENT), key


def _routes() -> dict[str, list[tuple[type[BaseModel], str]]]:
    """For each model, the first chain of (model, field) from ClientMessage that reaches it."""
    routes: dict[str, list[tuple[type[BaseModel], str]]] = {"ClientMessage": []}
    pending: list[type[BaseModel]] = [ClientMessage]
    while pending:
        model = pending.pop(0)
        for name, inner in known_fields(model).items():
            if inner is not None and inner.__name__ not in routes and name in model.model_fields:
                routes[inner.__name__] = [*routes[model.__name__], (model, name)]
                pending.append(inner)
    return routes


def _sample(annotation: Any) -> Any:
    """A value of the field's type that the parser accepts."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        return _sample(next(a for a in args if a is not type(None)))
    if origin is list:
        return [_sample(args[0])]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _required(annotation)
    samples = {bool: True, int: 1, float: 0.5, str: "x", bytes: "eA==", dict: {}}
    return samples.get(origin or annotation, "x")


def _required(model: type[BaseModel]) -> dict[str, Any]:
    return {
        f.alias or n: (MODEL if n == "model" else _sample(f.annotation))
        for n, f in model.model_fields.items()
        if f.is_required()
    }


def frames_for(key: str, value: Any) -> tuple[list[str], str]:
    """The frames that set `key` (Model.field) to `value`, and the field's wire path."""
    model_name, field_name = key.split(".")
    route = _routes()[model_name]
    message: dict[str, Any] = {}
    node: Any = message
    path = ""
    for owner, name in route:
        alias = owner.model_fields[name].alias or name
        child_model = known_fields(owner)[name]
        assert child_model is not None
        child = _required(child_model)
        is_list = "list" in str(owner.model_fields[name].annotation)
        node[alias] = [child] if is_list else child
        path = f"{path}.{alias}" if path else alias
        path += "[0]" if is_list else ""
        node = child
    node[field_name] = value
    path = f"{path}.{field_name}" if path else field_name
    frames = [json.dumps(message)]
    if "setup" not in message:
        frames.insert(0, json.dumps({"setup": {"model": MODEL}}))
    elif "model" not in message["setup"]:
        message["setup"]["model"] = MODEL
        frames = [json.dumps(message)]
    return frames, path


def _model(name: str) -> type[BaseModel]:
    for owner, field in [step for route in _routes().values() for step in route]:
        inner = known_fields(owner)[field]
        if inner is not None and inner.__name__ == name:
            return inner
    return ClientMessage


async def outcome(server: Server, frames: list[str]) -> tuple[int | None, str, list[Any]]:
    received: list[Any] = []
    async with server.raw_live() as ws:
        for frame in frames:
            await ws.send(frame)
        try:
            async with asyncio.timeout(3 if len(frames) == 1 else 10):
                async for raw in ws:
                    received.append(json.loads(raw))
                    if len(frames) == 1 and "setupComplete" in received[-1]:
                        return None, "", received  # accepted
        except TimeoutError:
            return None, "", received
        except ConnectionClosed:
            pass
        return ws.close_code, ws.close_reason or "", received


REFUSED = [k for k, r in FIELDS.items() if r.status is Status.REJECTED or r.refuses is not None]
IGNORED = [k for k, r in FIELDS.items() if r.status is Status.IGNORED]


@pytest.mark.parametrize("key", REFUSED)
async def test_each_rejected_field_is_refused_naming_it(server: Server, key: str) -> None:
    row = FIELDS[key]
    model = _model(key.split(".")[0])
    field = next(f for n, f in model.model_fields.items() if (f.alias or n) == key.split(".")[1])
    value = row.refused_example if row.refused_example is not None else _sample(field.annotation)
    frames, path = frames_for(key, value)
    code, reason, _ = await outcome(server, frames)
    assert code == 1008, (key, frames, code, reason)
    named, _, rest = reason.partition(" is not supported by openlive")
    assert rest and path.startswith(named), (key, reason)  # the field, or a rejected field holding it
    assert len(reason.encode()) <= 123


@pytest.mark.parametrize("key", IGNORED)
async def test_each_ignored_field_is_accepted(server: Server, key: str) -> None:
    model = _model(key.split(".")[0])
    field = next(f for n, f in model.model_fields.items() if (f.alias or n) == key.split(".")[1])
    frames, _ = frames_for(key, _sample(field.annotation))
    code, reason, received = await outcome(server, frames)
    assert code is None, (key, frames, code, reason)
    assert any("setupComplete" in m for m in received)


def _set_fields(message: BaseModel) -> Iterator[str]:
    """`Model.field` for every field set in `message`, nested ones too."""
    for name in message.model_fields_set:
        yield f"{type(message).__name__}.{type(message).model_fields[name].alias or name}"
        value = getattr(message, name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, BaseModel):
                yield from _set_fields(item)


@pytest.mark.parametrize(
    "message",
    [
        {"clientContent": {"turns": [{"role": "user", "parts": [{"text": "Hi!"}]}], "turnComplete": True}},
        {"clientContent": {"turns": [{"parts": [{"text": "a"}, {"text": "b"}]}, {"role": "model", "parts": []}]}},  # noqa: E501
        {"clientContent": {"turnComplete": True}},
    ],
)  # fmt: skip
def test_plain_text_frames_set_only_fields_nothing_refuses(message: dict[str, Any]) -> None:
    """The session skips the refusal walk for plain text turns (live/session.py): there must be nothing
    for it to find in them."""
    parsed, plain_text = parse_client_frame(json.dumps(message))
    assert plain_text
    keys = set(_set_fields(parsed))
    assert {"ClientMessage.clientContent"} < keys
    for key in keys:
        assert FIELDS[key].status is Status.SUPPORTED and FIELDS[key].refuses is None, key


@pytest.mark.parametrize(
    "message",
    [
        {"clientContent": {"turns": [{"role": "user", "parts": [{"text": "a", "thought": True}]}]}},
        {"clientContent": {"turns": [{"parts": [{"inlineData": {"mimeType": "text/csv", "data": "YQ=="}}]}]}},
        {"client_content": {"turns": [{"parts": [{"text": "a"}]}]}},
        {"realtimeInput": {"text": "a"}},
    ],
)  # fmt: skip
def test_other_frames_are_not_plain_text(message: dict[str, Any]) -> None:
    assert parse_client_frame(json.dumps(message))[1] is False
