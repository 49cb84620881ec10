"""Length-prefixed JSON frames with raw blobs: the only format spoken between the server and a job.

Never pickle: the job is hostile, so everything it sends is parsed as bounded JSON plus byte blobs.
A message is `u32 length | JSON object` whose `"_blobs"` key lists the sizes of the raw blobs that follow.
The child side is synchronous (plain sockets); the server side reads with asyncio streams.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from typing import Any

_LEN = struct.Struct("<I")
MAX_HEADER = 4 << 20  # a JSON header: code, host-call arguments, metadata
MAX_BLOBS = 256


class FrameError(Exception):
    """The peer sent something that is not a well-formed, bounded message."""


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays become plain numbers and lists; anything else its str()."""
    for method in ("tolist", "item"):
        if callable(getattr(value, method, None)):
            return getattr(value, method)()
    return str(value)


def encode(header: dict[str, Any], blobs: list[bytes] | None = None) -> bytes:
    blobs = blobs or []
    body = json.dumps({**header, "_blobs": [len(b) for b in blobs]}, default=_jsonable).encode()
    return b"".join([_LEN.pack(len(body)), body, *blobs])


def _decode_header(body: bytes, max_blob_total: int) -> tuple[dict[str, Any], list[int]]:
    try:
        header = json.loads(body)
    except ValueError as e:
        raise FrameError(f"bad JSON: {e}") from None
    if not isinstance(header, dict):
        raise FrameError("header is not an object")
    sizes = header.pop("_blobs", [])
    if (
        not isinstance(sizes, list)
        or len(sizes) > MAX_BLOBS
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in sizes)
        or sum(sizes) > max_blob_total
    ):
        raise FrameError("bad or oversized blob list")
    return header, sizes


def decode(
    buf: bytes, max_header: int = MAX_HEADER, max_blob_total: int = 1 << 30
) -> tuple[dict[str, Any], list[bytes]]:
    """A whole message held in memory (an MQTT payload), with the same bounds as a stream."""
    if len(buf) < _LEN.size:
        raise FrameError("truncated length prefix")
    (n,) = _LEN.unpack_from(buf)
    if n > max_header:
        raise FrameError(f"header of {n} bytes exceeds {max_header}")
    end = _LEN.size + n
    header, sizes = _decode_header(buf[_LEN.size : end], max_blob_total)
    if end + sum(sizes) != len(buf):
        raise FrameError("blob sizes do not match the message length")
    blobs = []
    for size in sizes:
        blobs.append(buf[end : end + size])
        end += size
    return header, blobs


# --- child side (blocking) -------------------------------------------------------------------------


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError("channel closed")
        buf += chunk
    return bytes(buf)


def send(sock: socket.socket, header: dict[str, Any], blobs: list[bytes] | None = None) -> None:
    sock.sendall(encode(header, blobs))


def recv(sock: socket.socket, max_blob_total: int = 1 << 30) -> tuple[dict[str, Any], list[bytes]]:
    (n,) = _LEN.unpack(_recv_exactly(sock, _LEN.size))
    if n > MAX_HEADER:
        raise FrameError("header too large")
    header, sizes = _decode_header(_recv_exactly(sock, n), max_blob_total)
    return header, [_recv_exactly(sock, size) for size in sizes]


# --- server side (asyncio) -------------------------------------------------------------------------


async def read(
    reader: asyncio.StreamReader, max_header: int, max_blob_total: int
) -> tuple[dict[str, Any], list[bytes]] | None:
    """Next message, or None at a clean end of stream; FrameError if the peer breaks the bounds."""
    try:
        prefix = await reader.readexactly(_LEN.size)
    except asyncio.IncompleteReadError as e:
        if e.partial:
            raise FrameError("truncated length prefix") from None
        return None
    (n,) = _LEN.unpack(prefix)
    if n > max_header:
        raise FrameError(f"header of {n} bytes exceeds {max_header}")
    try:
        header, sizes = _decode_header(await reader.readexactly(n), max_blob_total)
        return header, [await reader.readexactly(size) for size in sizes]
    except asyncio.IncompleteReadError:
        raise FrameError("truncated message") from None
