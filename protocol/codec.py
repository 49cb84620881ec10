"""Bytes <-> messages: the only place wire text is read or written.

Every client-caused failure becomes a ``ProtocolError(1007, reason)`` with a short,
human reason, so the server can close the socket with it as-is; nothing here
ever lets a traceback or pydantic's full error dump reach the wire.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from pydantic import ValidationError

from .client import ClientMessage
from .errors import CLOSE_INVALID_PAYLOAD, MessageTooLarge, ProtocolError
from .fields import unknown_field
from .server import GENERATION_COMPLETE, ModelText, Outbound, ServerMessage

MAX_SERVER_MESSAGE_BYTES = 1 << 20
"""websockets' default ``max_size``, which the SDK client does not override."""

_FIELD_BY_KEY: dict[str, str] = {
    key: name for name, field in ClientMessage.model_fields.items() for key in (name, field.alias or name)
}
_MODEL_TEXT_HEAD = b'{"serverContent":{"modelTurn":{"role":"model","parts":[{"text":'
_MODEL_TEXT_TAIL = b"}]}}}"
_GENERATION_COMPLETE = GENERATION_COMPLETE.model_dump_json(by_alias=True, exclude_none=True).encode()
_json_string = json.JSONEncoder(ensure_ascii=False).encode  # escapes as pydantic does: ", \\, < 0x20
_EXPECTED = ", ".join(f.alias or n for n, f in ClientMessage.model_fields.items())


def _reject_constant(token: str) -> NoReturn:
    # json.loads would otherwise accept NaN / Infinity, which are not JSON.
    raise ValueError(f"invalid literal {token}")


_decode = json.JSONDecoder(parse_constant=_reject_constant).decode  # made once: `json.loads` with an
# argument makes a decoder (and its scanner) per call


def _invalid(reason: str) -> ProtocolError:
    return ProtocolError(CLOSE_INVALID_PAYLOAD, reason)


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for item in loc:
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else item)
    return out


def _describe(error: ValidationError) -> str:
    """One line in Google's style, for the first error only: where and what."""
    first = error.errors(include_url=False, include_input=False, include_context=False)[0]
    message = first["msg"].removeprefix("Value error, ")
    path = _path(first["loc"])
    text = f"Invalid value at '{path}': {message}" if path else f"Invalid value: {message}"
    more = error.error_count() - 1
    return f"{text} (and {more} more)" if more else text


def _load_json(data: bytes | str) -> Any:
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise _invalid("Invalid JSON payload received. Message is not valid UTF-8.") from None
    else:
        text = data
    try:
        return _decode(text.removeprefix("\ufeff"))
    except json.JSONDecodeError as exc:
        raise _invalid(
            f"Invalid JSON payload received. {exc.msg} at line {exc.lineno} column {exc.colno}."
        ) from None
    except (ValueError, RecursionError):
        raise _invalid("Invalid JSON payload received. Message is not valid JSON.") from None


def parse_client_message(data: bytes | str) -> ClientMessage:
    """Parse one client frame (text or binary) into a ClientMessage.

    Raises ProtocolError(1007) for anything a client got wrong; the reason names
    the problem and is already cut to the 123-byte close-reason limit.
    """
    return parse_client_frame(data)[0]


def parse_client_frame(data: bytes | str) -> tuple[ClientMessage, bool]:
    """`parse_client_message`, and whether the frame was plain text turns (`clientContent` whose turns
    have only a role and text parts: the frame a client sends most, which sets no field beyond those)."""
    obj = _load_json(data)
    if not isinstance(obj, dict):
        raise _invalid(f"Invalid JSON payload received. Expected an object, got {type(obj).__name__}.")
    if _plain_text_turns(obj):
        return ClientMessage.model_validate(obj), True
    for key in obj:
        if key not in _FIELD_BY_KEY:
            raise _invalid(f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.')
    present = [key for key, value in obj.items() if value is not None]
    if not present:
        raise _invalid(f"Invalid JSON payload received. Expected one of: {_EXPECTED}.")
    if len(present) > 1:
        raise _invalid(f"Invalid JSON payload received. More than one message field: {', '.join(present)}.")
    unknown = unknown_field(obj, ClientMessage)
    if unknown is not None:
        name, where = unknown
        at = f"Unknown name \"{name}\" at '{where}'"
        raise _invalid(f"Invalid JSON payload received. {at}: Cannot find field.")
    try:
        return ClientMessage.model_validate(obj), False
    except ValidationError as exc:
        raise _invalid(_describe(exc)) from None


_TURN_KEYS = (frozenset({"parts"}), frozenset({"role", "parts"}))
_TEXT_PART = ["text"]


def _plain_text_turns(obj: dict[str, Any]) -> bool:
    """Whether `obj` is the message a client sends most: `clientContent` with text turns, camelCase, no
    nulls (`{"clientContent": {"turns": [{"role": "user", "parts": [{"text": ...}]}], "turnComplete":
    true}}`). Such a message names no field the parser refuses, so the walk for unknown names is skipped."""
    if len(obj) != 1 or type(content := obj.get("clientContent")) is not dict:
        return False
    if len(content) != ("turns" in content) + ("turnComplete" in content):
        return False
    if type(content.get("turns", [])) is not list or type(content.get("turnComplete", False)) is not bool:
        return False
    for turn in content.get("turns", []):
        if type(turn) is not dict or type(parts := turn.get("parts")) is not list:
            return False
        if turn.keys() != _TURN_KEYS["role" in turn] or turn.get("role", "user") not in ("user", "model"):
            return False
        for part in parts:
            if type(part) is not dict or list(part) != _TEXT_PART or type(part["text"]) is not str:
                return False
    return True


def dump_server_message(msg: Outbound) -> bytes:
    """Serialise for a binary frame: compact UTF-8 JSON, camelCase, None fields left out.

    Set sub-objects stay even when empty, so ``SetupComplete()`` gives
    ``{"setupComplete":{}}``. Raises MessageTooLarge over 1 MiB.
    """
    if isinstance(msg, ModelText):
        raw = b"".join((_MODEL_TEXT_HEAD, _json_string(msg.text).encode("utf-8"), _MODEL_TEXT_TAIL))
    elif msg is GENERATION_COMPLETE:
        return _GENERATION_COMPLETE
    else:
        raw = msg.model_dump_json(by_alias=True, exclude_none=True).encode("utf-8")
    if len(raw) > MAX_SERVER_MESSAGE_BYTES:
        raise MessageTooLarge(len(raw), MAX_SERVER_MESSAGE_BYTES)
    return raw


def dump_client_message(msg: ClientMessage) -> str:
    """What a client sends (a text frame, as the SDK does): camelCase JSON, None fields left out."""
    return msg.model_dump_json(by_alias=True, exclude_none=True)


def parse_server_message(data: bytes | str) -> ServerMessage:
    """Read a server frame on the client side; a malformed one raises ProtocolError(1007)."""
    obj = _load_json(data)
    if not isinstance(obj, dict):
        raise _invalid(f"Expected an object, got {type(obj).__name__}.")
    try:
        return ServerMessage.model_validate(obj)
    except ValidationError as exc:
        raise _invalid(_describe(exc)) from None
