"""The server's side of one job: send it, answer host calls, collect capped output, turn it into a Result.

Independent of how the job's process was made and confined: the pool hands over the channel's streams,
the read ends of stdout/stderr and a way to learn how the process ended, and kills the tree afterwards.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from sandbox import frames
from sandbox.config import PoolConfig
from sandbox.models import File, HostCall, Job, Outcome, Result
from sandbox.runner import LIMIT_KINDS

MAX_CALL_HEADER = 1 << 20  # a host call's arguments
MAX_PNG = 8 << 20  # one figure


@dataclass(frozen=True)
class ExitStatus:
    """How the job's main process ended: an exit code or a signal, and the CPU seconds it used if known."""

    code: int | None = None
    signal: int | None = None
    cpu_s: float | None = None


class _Output:
    """One of the job's output pipes: keeps the first `cap` bytes, discards up to `drain`, then hangs up."""

    def __init__(self, fd: int, cap: int, drain: int) -> None:
        os.set_blocking(fd, False)
        self._fd: int | None = fd
        self._cap = cap
        self._drain = drain
        self._buf = bytearray()
        self.total = 0
        self.closed = asyncio.Event()
        asyncio.get_running_loop().add_reader(fd, self.read_available)

    def read_available(self, max_chunks: int = 64) -> None:
        for _ in range(max_chunks):
            if self._fd is None:
                return
            try:
                chunk = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            self._buf += chunk[: max(0, self._cap - len(self._buf))]
            self.total += len(chunk)
            if not chunk or self.total >= self._drain:
                self.close()

    def drain_now(self) -> None:
        """Everything the job wrote before reporting is already in the pipe: take it without waiting."""
        while self._fd is not None and self.total < self._drain:
            before = self.total
            self.read_available()
            if self.total == before:
                return

    def close(self) -> None:
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None
        self.closed.set()

    def text(self) -> str:
        text = self._buf.decode("utf-8", errors="replace")
        if self.total > len(self._buf):
            text += f"\n[sandbox] output cut: {self.total - len(self._buf)} more bytes not shown\n"
        return text


def _limit_note(kind: str, c: PoolConfig) -> str:
    """One line naming the limit a job ran into, so the model can change its approach."""
    what = {
        "memory": f"memory limit reached ({c.memory_mb} MiB per process, {c.processes} processes)",
        "file_size": f"file size limit reached ({c.file_size_mb} MiB per file)",
        "disk": f"disk full (scratch {c.scratch_mb} MiB, /tmp {c.tmp_mb} MiB, /dev/shm {c.shm_mb} MiB)",
        "processes": f"process/thread limit reached ({c.processes} per job)",
        "open_files": f"open file limit reached ({c.open_files})",
        "cpu": f"CPU time limit reached ({c.cpu_s} s per process)",
    }[kind]
    return f"[sandbox] {what}"


def _exit_note(status: ExitStatus, config: PoolConfig) -> str:
    if status.signal is None:
        return f"[sandbox] the process exited with status {status.code} before reporting"
    cpu_exhausted = status.cpu_s is not None and status.cpu_s >= config.cpu_s
    if status.signal == signal.SIGXCPU or (status.signal == signal.SIGKILL and cpu_exhausted):
        return _limit_note("cpu", config)
    try:
        name = signal.Signals(status.signal).name
    except ValueError:
        name = str(status.signal)
    meaning = {
        "SIGSEGV": " (segmentation fault)",
        "SIGSYS": " (forbidden system call)",
        "SIGBUS": " (bus error)",
    }
    return f"[sandbox] killed by signal {name}{meaning.get(name, '')}"


def _join(*parts: str) -> str:
    out = ""
    for part in parts:
        if part:
            out += part if not out or out.endswith("\n") else "\n" + part
    return out


def _safe_name(name: Any) -> str | None:
    if not isinstance(name, str) or not name or "\x00" in name:
        return None
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        return None
    return path.as_posix()


def _job_header(job: Job, config: PoolConfig, linger: bool) -> tuple[dict[str, Any], list[bytes]]:
    names = []
    for f in job.files:
        name = _safe_name(f.name)
        if name is None:
            raise ValueError(f"bad input file name {f.name!r}")
        names.append(name)
    header = {
        "t": "job",
        "code": job.code,
        "files": names,
        "host_functions": job.host_functions,
        "dpi": config.figure_dpi,
        "max_images": config.max_figures,
        "max_files": config.max_output_files,
        "max_file_bytes": config.max_output_file_bytes,
        "linger": linger,
    }
    return header, [f.data for f in job.files]


async def answer_host_call(call: dict[str, Any], job: Job, host_call: HostCall | None) -> dict[str, Any]:
    """The reply to `default_api.<name>(**args)` from running code: `ok` and a value, or an error text."""
    name, args = call.get("name"), call.get("args")
    if not isinstance(name, str) or name not in job.host_functions or not isinstance(args, dict):
        return {"ok": False, "error": f"no such function {name!r}"}
    if host_call is None:
        return {"ok": False, "error": "host functions are not available here"}
    try:
        return {"ok": True, "value": await host_call(name, args)}
    except Exception as e:
        return {"ok": False, "error": str(e) or type(e).__name__}


class _Dialogue:
    """Reads the job's messages, answering host calls concurrently, until it reports or hangs up."""

    def __init__(self, job: Job, host_call: HostCall | None, config: PoolConfig) -> None:
        self._job = job
        self._host_call = host_call
        self._config = config
        self._write_lock = asyncio.Lock()

    async def run(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[dict[str, Any], list[bytes]] | None:
        max_blobs = self._config.max_figures * MAX_PNG + self._config.max_output_file_bytes
        broken: Exception | None = None
        message = None
        async with asyncio.TaskGroup() as tg:
            calls: set[asyncio.Task[None]] = set()
            try:
                while True:
                    message = await frames.read(reader, MAX_CALL_HEADER, max_blobs)
                    if message is None or message[0].get("t") == "done":
                        break
                    if message[0].get("t") != "call":
                        raise frames.FrameError(f"unexpected message {message[0].get('t')!r}")
                    task = tg.create_task(self._answer(message[0], writer))
                    calls.add(task)
                    task.add_done_callback(calls.discard)
            except (frames.FrameError, ConnectionError) as e:
                broken = e  # raised below, not as a group: the job broke the channel, nothing else did
            finally:
                for task in calls:
                    task.cancel()
        if broken is not None:
            raise broken
        return message

    async def _answer(self, call: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        reply = await answer_host_call(call, self._job, self._host_call)
        async with self._write_lock:
            writer.write(frames.encode({"t": "reply", **reply}))
            await writer.drain()


def _report(
    done: dict[str, Any], blobs: list[bytes], stdout: str, stderr: str, config: PoolConfig
) -> tuple[Outcome, str, list[bytes], list[File]]:
    exit_code, limit = done.get("exit"), done.get("limit")
    n_images, names = done.get("images"), done.get("files")
    if (
        not isinstance(exit_code, int)
        or (limit is not None and limit not in LIMIT_KINDS)
        or not isinstance(n_images, int)
        or not isinstance(names, list)
        or n_images < 0
        or n_images + len(names) != len(blobs)
    ):
        raise frames.FrameError("malformed report")
    images = [png for png in blobs[:n_images][: config.max_figures] if png.startswith(b"\x89PNG\r\n\x1a\n")]
    files: list[File] = []
    for raw_name, data in zip(names, blobs[n_images:], strict=True):
        name = _safe_name(raw_name)
        if name is not None and len(files) < config.max_output_files:
            mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
            files.append(File(name=name, data=data, mime_type=mime))
    if exit_code == 0:
        return Outcome.OK, stdout, images, files
    note = _limit_note(limit, config) if limit else ""
    return Outcome.FAILED, _join(stdout, stderr, note), images, files


async def converse(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    stdout_fd: int,
    stderr_fd: int,
    job: Job,
    host_call: HostCall | None,
    config: PoolConfig,
    exit_status: Callable[[], Awaitable[ExitStatus]],
    linger: bool,
) -> Result:
    """Run the job over an established channel. Takes ownership of the channel and both descriptors.

    With `linger`, the runner waits to be killed after its report instead of exiting at once.
    """
    started = time.perf_counter()  # not loop.time(): uvloop's clock ticks in whole ms
    out = _Output(stdout_fd, config.output_cap_bytes, config.output_drain_bytes)
    err = _Output(stderr_fd, config.output_cap_bytes, config.output_drain_bytes)

    def result(
        outcome: Outcome, output: str, images: list[bytes] | None = None, files: list[File] | None = None
    ) -> Result:
        elapsed = time.perf_counter() - started
        return Result(
            outcome=outcome, output=output, images=images or [], files=files or [], duration_s=elapsed
        )

    try:
        async with asyncio.timeout(job.deadline_s):
            header, blobs = _job_header(job, config, linger)
            writer.write(frames.encode(header, blobs))
            await writer.drain()
            message = await _Dialogue(job, host_call, config).run(reader, writer)
            if message is not None:
                out.drain_now()
                err.drain_now()
                outcome, output, images, files = _report(*message, out.text(), err.text(), config)
                return result(outcome, output, images, files)
            status = await exit_status()
            await out.closed.wait()
            await err.closed.wait()
    except TimeoutError:
        out.drain_now()
        err.drain_now()
        note = f"[sandbox] deadline of {job.deadline_s:g} s exceeded"
        return result(Outcome.DEADLINE_EXCEEDED, _join(out.text(), err.text(), note))
    except ValueError as e:  # the job itself is unusable (an input file name): the client's error
        return result(Outcome.FAILED, f"[sandbox] {e}")
    except (frames.FrameError, ConnectionError) as e:
        out.drain_now()
        err.drain_now()
        return result(Outcome.FAILED, _join(out.text(), err.text(), f"[sandbox] broken job channel: {e}"))
    finally:
        out.close()
        err.close()
        writer.close()
    if status.signal is None and status.code == 0:
        return result(Outcome.OK, out.text())
    return result(Outcome.FAILED, _join(out.text(), err.text(), _exit_note(status, config)))
