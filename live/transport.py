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

    async def send_all(self, frames: list[bytes]) -> None:
        """Each as its own message, in order (in one write where the server can)."""
        ...

    async def close(self, code: int, reason: str) -> None: ...


class AsgiTransport:
    """An ASGI WebSocket connection (uvicorn's); server messages go out as binary frames, as Google's do.

    It holds the connection's `receive` and `send` and two flags, nothing of the handshake: an idle
    session keeps this for its whole life (bench/bench_idle.py)."""

    __slots__ = ("_receive", "_received_close", "_send", "_send_frames", "_sent_close")

    def __init__(self, receive: Receive, send: Send, send_frames: str | None = None) -> None:
        """`send_frames`: the server's message type for several frames in one write, if it has one
        (`live.serving.SEND_FRAMES`)."""
        self._receive = receive
        self._send = send
        self._send_frames = send_frames
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
        await self._put({"type": "websocket.send", "bytes": data})

    async def send_all(self, frames: list[bytes]) -> None:
        if self._send_frames is not None and len(frames) > 1:
            await self._put({"type": self._send_frames, "frames": frames})
        else:
            for data in frames:
                await self._put({"type": "websocket.send", "bytes": data})

    async def _put(self, message: dict[str, object]) -> None:
        try:
            await self._send(message)
        except (RuntimeError, OSError) as exc:  # we closed, or the peer is gone (ClientDisconnected)
            self._sent_close = True
            raise TransportClosed from exc

    async def close(self, code: int, reason: str) -> None:
        if self._sent_close:
            return
        self._sent_close = True
        with contextlib.suppress(RuntimeError, OSError):
            await self._send({"type": "websocket.close", "code": code, "reason": close_reason(reason)})
