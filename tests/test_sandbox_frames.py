"""The framing the server uses to read what a (hostile) job sends: bounded, no pickle, clear failures."""

from __future__ import annotations

import asyncio
import json
import socket
import struct

import pytest

from sandbox import frames


def _raw(header: object, extra: bytes = b"") -> bytes:
    body = json.dumps(header).encode()
    return struct.pack("<I", len(body)) + body + extra


async def _read(data: bytes, max_header: int = 1 << 20, max_blobs: int = 1 << 20) -> object:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return await frames.read(reader, max_header, max_blobs)


async def test_round_trip_with_blobs_between_child_and_server() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        frames.send(theirs, {"t": "done", "n": 2}, [b"\x89PNG...", b""])
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        assert await frames.read(reader, 1024, 1024) == ({"t": "done", "n": 2}, [b"\x89PNG...", b""])
        writer.write(frames.encode({"t": "reply", "value": [1, 2]}))
        await writer.drain()
        assert await asyncio.to_thread(frames.recv, theirs) == ({"t": "reply", "value": [1, 2]}, [])
        writer.close()


async def test_clean_end_of_stream_is_none() -> None:
    assert await _read(b"") is None


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (struct.pack("<I", 1 << 31), "header of 2147483648 bytes exceeds"),
        (b"\x01\x00", "truncated length prefix"),
        (struct.pack("<I", 5) + b"{}", "truncated message"),
        (struct.pack("<I", 3) + b"{x}", "bad JSON"),
        (_raw([1, 2]), "not an object"),
        (_raw({"_blobs": [-1]}), "bad or oversized blob list"),
        (_raw({"_blobs": [True]}), "bad or oversized blob list"),
        (_raw({"_blobs": "12"}), "bad or oversized blob list"),
        (_raw({"_blobs": [1] * 300}), "bad or oversized blob list"),
        (_raw({"_blobs": [2 << 20]}), "bad or oversized blob list"),
        (_raw({"_blobs": [10]}, b"short"), "truncated message"),
    ],
)
async def test_malformed_input_is_rejected(data: bytes, error: str) -> None:
    with pytest.raises(frames.FrameError, match=error):
        await _read(data)


def test_numpy_values_become_json() -> None:
    np = pytest.importorskip("numpy")
    body = frames.encode({"x": np.int64(3), "a": np.arange(3), "o": object})[4:]
    decoded = json.loads(body)
    assert decoded["x"] == 3 and decoded["a"] == [0, 1, 2] and decoded["o"] == "<class 'object'>"
