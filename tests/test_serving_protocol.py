"""The lean WebSocket protocol under every Live session (`live.serving`): it keeps none of the handshake
once accepted, and its light input list and write gate still carry every message in order, through a
reader that stops reading and resumes.

A real uvicorn server on an ephemeral port with the real protocol and `AsgiTransport`, and a real
`websockets` client; the endpoint is a small echo so what is under test is the connection, not a session.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import uvicorn
import websockets
from starlette.types import Receive, Scope, Send
from websockets.http11 import Request

from live.serving import READ_BACKLOG, SEND_FRAMES, LiveWebSocketProtocol, live_protocol
from live.transport import AsgiTransport, TransportClosed

CHUNK = 256 * 1024


async def no_http(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("only WebSockets here")


@asynccontextmanager
async def serving(
    endpoint: Callable[[Scope, Receive, Send], Awaitable[None]],
) -> AsyncIterator[tuple[str, uvicorn.Server]]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)  # connections inherit it: see below
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        no_http, ws=live_protocol(endpoint), ws_per_message_deflate=False, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 (uvicorn's own flag, set once it listens; no event)
            await asyncio.sleep(0.01)
    try:
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}/ws", server
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task


def connections(server: uvicorn.Server) -> list[LiveWebSocketProtocol]:
    return [c for c in server.server_state.connections if isinstance(c, LiveWebSocketProtocol)]


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    transport = AsgiTransport(receive, send)
    await transport.accept()
    while True:
        try:
            data = await transport.recv()
        except TransportClosed:
            return
        await transport.send(data.encode() if isinstance(data, str) else data)


async def test_an_accepted_connection_keeps_none_of_its_handshake() -> None:
    async with (
        serving(echo) as (url, server),
        websockets.connect(url, additional_headers={"x-goog-api-key": "a-key" * 40}) as ws,
    ):
        await ws.send("hello")
        assert await ws.recv() == b"hello"
        [protocol] = connections(server)
        assert not any(hasattr(protocol, name) for name in ("scope", "request", "response"))
        # websockets' parser holds on to the request it parsed: its headers are gone.
        gc.collect()
        requests = [o for o in gc.get_objects() if isinstance(o, Request) and o is not ws.request]
        assert requests and all(len(r.headers) == 0 for r in requests)
        await ws.send("still served")
        assert await ws.recv() == b"still served"


async def test_messages_in_a_burst_arrive_in_order() -> None:
    async with serving(echo) as (url, _), websockets.connect(url) as ws:
        sent = [f"message {i}" for i in range(500)]
        for text in sent:  # uvicorn pauses reading until the app takes each message from the input
            await ws.send(text)
        assert [await ws.recv() for _ in sent] == [t.encode() for t in sent]


async def test_a_reader_that_stops_reading_holds_the_writer_back_then_gets_everything() -> None:
    sent = [bytes([i]) * CHUNK for i in range(64)]  # 16 MB: more than the socket buffers below take
    finished = asyncio.Event()

    async def stream(scope: Scope, receive: Receive, send: Send) -> None:
        transport = AsgiTransport(receive, send)
        await transport.accept()
        for chunk in sent:
            await transport.send(chunk)
        finished.set()
        await transport.close(1000, "done")

    async with serving(stream) as (url, server):
        port = int(url.split(":")[2].split("/")[0])
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # loopback would take 32 MB
        client.setblocking(False)
        await asyncio.get_running_loop().sock_connect(client, ("127.0.0.1", port))
        async with websockets.connect(url, sock=client, max_size=None, max_queue=1) as ws:
            async with asyncio.timeout(20):
                # The client does not read: the transport pauses the writer (nothing outside says when).
                while not connections(server) or connections(server)[0].writable.is_set():  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            assert not finished.is_set()
            received = [await ws.recv() for _ in sent]
            assert received == sent
            await asyncio.wait_for(finished.wait(), 10)


async def test_reading_after_the_peer_left_fails_at_once_however_often() -> None:
    outcomes: list[str] = []
    done = asyncio.Event()

    async def read_on(scope: Scope, receive: Receive, send: Send) -> None:
        transport = AsgiTransport(receive, send)
        await transport.accept()
        for _ in range(3):  # uvicorn reports the leaving twice (close frame, lost connection), then no more
            try:
                await asyncio.wait_for(transport.recv(), 10)
            except TransportClosed:
                outcomes.append("closed")
        await transport.close(1000, "")  # nothing to close any more: a no-op, not an error
        done.set()

    async with serving(read_on) as (url, _):
        async with websockets.connect(url):
            pass
        await asyncio.wait_for(done.wait(), 15)
    assert outcomes == ["closed", "closed", "closed"]


async def test_frames_sent_together_leave_in_one_write_as_separate_messages() -> None:
    writes: list[bytes] = []
    sent: list[bytes] = []
    done = asyncio.Event()

    async def three(scope: Scope, receive: Receive, send: Send) -> None:
        assert SEND_FRAMES in scope["extensions"]
        transport = AsgiTransport(receive, send, SEND_FRAMES)
        await transport.accept()
        await transport.recv()
        [protocol] = connections(server)
        write = protocol.transport.write
        protocol.transport.write = lambda data: (writes.append(bytes(data)), write(data))[1]  # type: ignore
        await transport.send_all([b"modelTurn", b"generationComplete", b"turnComplete"])
        await transport.send(b"alone")
        sent.extend(writes)
        done.set()
        with contextlib.suppress(TransportClosed):
            await transport.recv()

    async with serving(three) as (url, server), websockets.connect(url) as ws:
        await ws.send("go")
        expected = [b"modelTurn", b"generationComplete", b"turnComplete", b"alone"]
        assert [await ws.recv() for _ in expected] == expected
        await asyncio.wait_for(done.wait(), 5)
    assert len(sent) == 2 and sent[0].endswith(b"turnComplete") and sent[1].endswith(b"alone")


async def test_reading_stops_only_when_the_app_falls_behind() -> None:
    """uvicorn stops reading the socket after every message (two system calls each); here only once
    READ_BACKLOG messages wait for the app, and it reads again once the app has taken them."""
    received = asyncio.Event()
    read_them = asyncio.Event()
    states: list[bool] = []

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        transport = AsgiTransport(receive, send)
        await transport.accept()
        await received.wait()
        for _ in range(READ_BACKLOG + 1):
            await transport.recv()
        states.append(connections(server)[0].read_paused)
        read_them.set()
        await transport.recv()

    async with serving(slow) as (url, server), websockets.connect(url) as ws:
        await ws.send("first")
        async with asyncio.timeout(10):
            while not connections(server) or not len(connections(server)[0].queue):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        [protocol] = connections(server)
        states.append(protocol.read_paused)  # one message waits: still reading
        for i in range(READ_BACKLOG):
            await ws.send(f"more {i}")
        async with asyncio.timeout(10):
            while len(protocol.queue) < READ_BACKLOG:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        states.append(protocol.read_paused)
        received.set()
        await asyncio.wait_for(read_them.wait(), 10)
    assert states == [False, True, False]
