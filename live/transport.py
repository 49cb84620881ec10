"""The session's view of a connection, so the engine can be driven by any server or directly by tests."""

from __future__ import annotations

import contextlib
from typing import Protocol

from starlette.types import Receive, Send

from protocol import close_reason


class TransportClosed(Exception):
    """The peer went away; nothing more can be sent or received."""


class Transport(Protocol):
    async def recv(self) -> str | bytes: ...

    async def send(self, data: bytes) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class AsgiTransport:
    """An ASGI WebSocket connection (uvicorn's); server messages go out as binary frames, as Google's do.

    It holds the connection's `receive` and `send` and two flags, nothing of the handshake: an idle
    session keeps this for its whole life (bench/bench_idle.py)."""

    __slots__ = ("_receive", "_received_close", "_send", "_sent_close")

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self._received_close = False  # the peer is gone: nothing more will come
        self._sent_close = False  # we closed, or a send found the socket gone

    async def accept(self) -> None:
        message = await self._receive()
        if message["type"] != "websocket.connect":
            raise TransportClosed
        await self._send({"type": "websocket.accept"})

    async def recv(self) -> str | bytes:
        if self._received_close:
            raise TransportClosed
        message = await self._receive()
        if message["type"] == "websocket.disconnect":
            self._received_close = True
            raise TransportClosed
        text: str | None = message.get("text")
        if text is not None:
            return text
        data: bytes = message.get("bytes") or b""
        return data

    async def send(self, data: bytes) -> None:
        try:
            await self._send({"type": "websocket.send", "bytes": data})
        except (RuntimeError, OSError) as exc:  # we closed, or the peer is gone (ClientDisconnected)
            self._sent_close = True
            raise TransportClosed from exc

    async def close(self, code: int, reason: str) -> None:
        if self._sent_close:
            return
        self._sent_close = True
        with contextlib.suppress(RuntimeError, OSError):
            await self._send({"type": "websocket.close", "code": code, "reason": close_reason(reason)})
