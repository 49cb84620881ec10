"""The in-job side: receives one job over the channel, runs it, sends back figures, files and exit state.

Runs inside the confined process with the job's privileges, so nothing it reports is trusted by the server;
it exists to make results convenient (figures as PNG, written files, a clean traceback, `default_api`).
Channel fd layout: 0 = /dev/null, 1 = stdout pipe, 2 = stderr pipe, the channel socket passed in.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import os
import random
import signal
import socket
import struct
import sys
import threading
import traceback
import zlib
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

from sandbox import frames

# Why a job failed, when it is one of our limits rather than a plain bug; the server words the note.
LIMIT_KINDS = ("memory", "file_size", "disk", "processes", "open_files")


class HostCallError(RuntimeError):
    """The host could not complete a `default_api` call (the client answered with an error)."""


class DefaultApi:
    """`default_api.<name>(**kwargs)`: forwards a call to the server and blocks until the client answers."""

    def __init__(self, channel: socket.socket, names: list[str]) -> None:
        self._channel = channel
        self._names = frozenset(names)
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        if name not in self._names:
            declared = ", ".join(sorted(self._names)) or "none"
            raise AttributeError(f"default_api has no function {name!r} (declared: {declared})")

        def call(*args: Any, **kwargs: Any) -> Any:
            if args:
                raise TypeError(f"default_api.{name}() takes keyword arguments only")
            with self._lock:
                frames.send(self._channel, {"t": "call", "name": name, "args": kwargs})
                reply, _ = frames.recv(self._channel)
            if not reply.get("ok"):
                raise HostCallError(f"default_api.{name}: {reply.get('error', 'failed')}")
            return reply.get("value")

        call.__name__ = name
        return call

    def __dir__(self) -> list[str]:
        return sorted(self._names)


def _reseed() -> None:
    """Forked jobs inherit the warm worker's RNG state; each job must draw different numbers."""
    random.seed()
    np = sys.modules.get("numpy")
    if np is not None:  # a whole Mersenne Twister state from the OS: half the time of seed()'s derivation
        np.random.set_state(("MT19937", np.frombuffer(os.urandom(624 * 4), dtype=np.uint32), 624))


def _limit_kind(exc: BaseException) -> str | None:
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, MemoryError):
            return "memory"
        if isinstance(e, OSError) and e.errno == errno.EFBIG:
            return "file_size"
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return "disk"
        if isinstance(e, OSError) and e.errno == errno.EMFILE:
            return "open_files"
        if isinstance(e, BlockingIOError) and e.errno == errno.EAGAIN:
            return "processes"  # fork() under RLIMIT_NPROC
        if isinstance(e, RuntimeError) and "can't start new thread" in str(e):
            return "processes"  # threads count against RLIMIT_NPROC too
        e = e.__cause__ or e.__context__
    return None


def _print_user_traceback(exc: BaseException, tb: TracebackType | None) -> None:
    """Print the traceback without the runner's own frame, as if the code had run as a script."""
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb, file=sys.stderr)


def _execute(code: str, api: DefaultApi) -> tuple[int, str | None]:
    """Run the code as `__main__`; return (exit code, limit kind or None)."""
    scope: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins, "default_api": api}
    try:
        exec(compile(code, "<code>", "exec"), scope)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return int(e.code or 0), None
        print(e.code, file=sys.stderr)
        return 1, None
    except BaseException as e:
        _print_user_traceback(e, e.__traceback__)
        return 1, _limit_kind(e)
    return 0, None


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(rgba: memoryview, width: int, height: int) -> bytes:
    """8-bit RGBA rows as PNG, without row filters, at zlib level 1.

    Pillow, even at level 1, tries every row filter on every row; a figure's flat colours compress about
    as well without them (a 640x480 line plot: 31 KB against 33 KB) in a third of the time (2 against 6 ms).
    """
    stride = width * 4
    rows: list[bytes | memoryview] = []
    for y in range(height):
        rows += (b"\0", rgba[y * stride : (y + 1) * stride])
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8 bits, RGBA, deflate, no interlace
    idat = zlib.compress(b"".join(rows), 1)
    chunks = _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def _figure_png(figure: Any, dpi: int) -> bytes:
    """The figure as savefig draws it (its dpi, bounding box and colour settings), encoded by _png."""
    raw = io.BytesIO()
    figure.savefig(raw, format="rgba", dpi=dpi)
    renderer = getattr(figure.canvas, "renderer", None)
    width, height = getattr(renderer, "width", 0), getattr(renderer, "height", 0)
    if not (isinstance(width, int) and isinstance(height, int) and width * height * 4 == raw.tell() > 0):
        png = io.BytesIO()  # drawn on a canvas other than the figure's own: let savefig encode it
        figure.savefig(png, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
        return png.getvalue()
    return _png(raw.getbuffer(), width, height)


def figures_as_png(dpi: int, limit: int) -> list[bytes]:
    """Every open matplotlib figure, up to `limit` (the runner exits next, so they are not closed)."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return []
    return [_figure_png(plt.figure(num), dpi) for num in plt.get_fignums()[:limit]]


def _regular_files() -> list[str]:
    """Paths of the regular files under cwd (symlinks neither followed nor listed), in path order."""
    found: list[tuple[str, ...]] = []
    pending: list[tuple[str, ...]] = [()]
    while pending:
        parts = pending.pop()
        try:
            with os.scandir("/".join(parts) or ".") as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append((*parts, entry.name))
                    elif entry.is_file(follow_symlinks=False):
                        found.append((*parts, entry.name))
        except OSError:
            continue
    return ["/".join(parts) for parts in sorted(found)]


def _written_files(inputs: dict[str, bytes], max_files: int, max_bytes: int) -> tuple[list[str], list[bytes]]:
    """Regular files under cwd that are new or changed, within the caps."""
    names: list[str] = []
    blobs: list[bytes] = []
    total = 0
    for name in _regular_files():
        if len(names) >= max_files:
            break
        try:
            size = os.stat(name).st_size
            if total + size > max_bytes:
                continue
            with open(name, "rb") as f:
                data = f.read(max_bytes - total)
        except OSError:
            continue
        if inputs.get(name) == data:
            continue
        names.append(name)
        blobs.append(data)
        total += len(data)
    return names, blobs


def _stdio() -> list[io.TextIOWrapper]:
    """Fresh, line-buffered text streams on fds 1 and 2, so output survives a kill at the deadline."""
    streams = []
    for fd, attr in ((1, "stdout"), (2, "stderr")):
        stream = open(fd, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1)  # noqa: SIM115
        setattr(sys, attr, stream)
        setattr(sys, f"__{attr}__", stream)
        streams.append(stream)
    return streams


def prepare() -> list[io.TextIOWrapper]:
    """All of a job that does not depend on its code, done before the runner says it is ready.

    The reseed and the stdio streams, and one pass over the paths every job takes (compile and exec, the
    figure and file scans, on the still empty scratch dir): a forked runner pays for each page it first
    writes with a copy, and this way it pays before a job waits for it, not while.
    """
    streams = _stdio()
    _reseed()
    exec(compile("pass", "<warm-up>", "exec"), {"__builtins__": builtins})
    figures_as_png(0, 0)
    _written_files({}, 1, 1)
    return streams


def serve(channel: socket.socket, streams: list[io.TextIOWrapper]) -> NoReturn:
    """Receive one job, run it, report, and exit (or wait to be killed): a runner is never reused."""
    header, blobs = frames.recv(channel)
    inputs = dict(zip(header["files"], blobs, strict=True))
    for name, data in inputs.items():
        path = Path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    api = DefaultApi(channel, header["host_functions"])
    exit_code, limit = _execute(header["code"], api)
    try:
        images = figures_as_png(header["dpi"], header["max_images"])
    except Exception as e:
        print(f"could not render figures: {e!r}", file=sys.stderr)
        images = []
    names, data = _written_files(inputs, header["max_files"], header["max_file_bytes"])
    for stream in streams:
        with contextlib.suppress(OSError):  # the server stopped reading (output cap)
            stream.flush()
    os.close(1)
    os.close(2)
    done = {"t": "done", "exit": exit_code, "limit": limit, "images": len(images), "files": names}
    frames.send(channel, done, images + data)
    if header.get("linger"):
        # Tearing down this copy of the image costs ~2 ms of CPU, which nice does not lower where the
        # kernel groups by session (autogroup: this runner is a session of its own). The pool kills
        # it once the result is on its way.
        while True:
            signal.pause()
    os.nice(19)  # where nice counts, the next job's runner goes first
    os._exit(0)
