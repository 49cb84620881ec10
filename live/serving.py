"""The WebSocket side of the server: uvicorn's sans-I/O websockets protocol, made lean for connections
that stay open for minutes while saying nothing, and handing each straight to the Live endpoint.

An idle Live session is mostly its connection, so what the connection holds is what 10,000 idle
sessions cost (bench/bench_idle.py). Against uvicorn's own protocol this one keeps, per connection:
- its ASGI input as a list and one waiter, not an `asyncio.Queue` (four deques, about 3 KB);
- its write flow control as a flag and a list of waiters, not an `asyncio.Event` (a deque, ~0.8 KB);
- none of the handshake once accepted: the request's headers, the response and the ASGI scope (~5 KB);
- no middleware under the endpoint: the app's stack (proxy headers, errors, telemetry, body limits)
  serves HTTP, while each of its layers would hold a suspended frame for a socket's whole life.
Everything else (framing, keepalive pings, flow control, closing) is uvicorn's.

Two things per message cost less (bench/bench_load.py): frames queued together leave in one write
(`SEND_FRAMES`, an ASGI extension `AsgiTransport.send_all` uses: a turn's `modelTurn`,
`generationComplete` and `turnComplete` are three frames and one system call), and reading stops only
when the app falls `READ_BACKLOG` messages behind, not after every message (uvicorn pauses and resumes
the socket per message: two more system calls each).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from uvicorn._types import ASGIReceiveEvent, ASGISendEvent, WebSocketScope
from uvicorn.config import Config
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.exceptions import InvalidState
from websockets.http11 import Request

from live.waitlist import Waitlist

SEND_FRAMES = "openlive.websocket.send_frames"
"""ASGI extension (in the scope's `extensions`) and message type: `{"type": SEND_FRAMES, "frames": [...]}`
sends each item as a binary frame, all in one write."""
READ_BACKLOG = 8  # messages received and not yet read by the app before the socket stops being read

Endpoint = Callable[
    [WebSocketScope, Callable[[], Awaitable[ASGIReceiveEvent]], Callable[[ASGISendEvent], Awaitable[None]]],
    Awaitable[None],
]


class Inbox(Waitlist[ASGIReceiveEvent]):
    """What the connection received and the app has yet to read: the part of `asyncio.Queue` uvicorn
    uses (`put_nowait`, `get`, `empty`), with one reader."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self._items)

    async def get(self) -> ASGIReceiveEvent:
        while not self._items:
            await self.waiter()
        return self._items.pop(0)


class Writable:
    """Whether the socket takes more writes now: the part of `asyncio.Event` uvicorn uses."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future[None]] | None = None  # made when a writer first has to wait

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    async def wait(self) -> None:
        if self._set:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        await waiter


class LiveWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O websockets protocol with lean per-connection state (see the module's doc);
    `endpoint` is called with the connection's scope, `receive` and `send`, as an ASGI app would be."""

    endpoint: ClassVar[Endpoint]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.app = type(self).endpoint
        self.queue = Inbox()  # type: ignore[assignment]  # the part of asyncio.Queue uvicorn uses
        self.writable = Writable()  # type: ignore[assignment]  # the part of asyncio.Event uvicorn uses

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # websockets' parser keeps the request in its frame for the connection's life; its headers (in the
        # scope by now, ~3 KB) are not read again.
        event.headers.clear()
        if hasattr(self, "scope"):  # an upgrade, not a refused handshake
            self.scope["extensions"][SEND_FRAMES] = {}

    def send_receive_event_to_app(self) -> None:
        paused, self.read_paused = self.read_paused, True  # uvicorn would pause reading after each message
        super().send_receive_event_to_app()
        self.read_paused = paused
        if not paused and not self.close_sent and len(self.queue) >= READ_BACKLOG:  # type: ignore[arg-type]
            self.read_paused = True
            self.transport.pause_reading()  # `receive` resumes it once the app has read them all

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] == SEND_FRAMES:
            await self._send_frames(message["frames"])  # type: ignore[typeddict-item]
            return
        accepting = not self.handshake_complete
        await super().send(message)
        if accepting and self.handshake_complete and self.initial_response is None:
            # uvicorn reads these only until the handshake's answer is sent.
            del self.request, self.response, self.scope


    async def _send_frames(self, frames: list[bytes]) -> None:
        """uvicorn's `websocket.send` for several binary frames, with one write."""
        await self.writable.wait()
        if self.disconnected:
            raise ClientDisconnected
        if self.close_sent or not self.handshake_complete or self.initial_response is not None:
            raise RuntimeError(f"Unexpected ASGI message {SEND_FRAMES!r} now.")
        try:
            for frame in frames:
                self.conn.send_binary(frame)
        except InvalidState:
            raise ClientDisconnected from None
        self.transport.write(b"".join(self.conn.data_to_send()))


def live_protocol(endpoint: Endpoint) -> type[LiveWebSocketProtocol]:
    """The protocol class for uvicorn's `ws` setting: every WebSocket goes to `endpoint`."""
    return type("LiveWebSocketProtocol", (LiveWebSocketProtocol,), {"endpoint": staticmethod(endpoint)})
