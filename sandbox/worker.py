"""The server's handles on the warm worker process and on the confined runners it forks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from typing import Any

from sandbox import frames, rootfs
from sandbox.config import PoolConfig
from sandbox.conversation import ExitStatus
from sandbox.zygote import BOOT, SOURCE_ROOT

WORKER_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "MPLBACKEND": "Agg",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
_MAX_STARTUP_ERROR = 8192


class RunnerFailed(Exception):
    """A runner died before it was ready: confinement failed, or the worker is gone."""


class Runner:
    """One pre-forked, confined job process waiting for its job, and its monitor's report."""

    def __init__(
        self, index: int, channel: socket.socket, stdout_fd: int, stderr_fd: int, monitor: socket.socket
    ) -> None:
        self.index = index
        self._channel: socket.socket | None = channel
        self._stdout_fd: int | None = stdout_fd
        self._stderr_fd: int | None = stderr_fd
        self._monitor = monitor
        self._monitor_writer: asyncio.StreamWriter | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.finished: asyncio.Future[ExitStatus] = asyncio.get_running_loop().create_future()

    async def wait_ready(self, tasks: asyncio.TaskGroup) -> None:
        """Wait for "ready" (the exit report is read in `tasks`); RunnerFailed with its stderr if it dies."""
        assert self._channel is not None
        self.reader, self.writer = await asyncio.open_unix_connection(sock=self._channel)
        self._channel = None
        monitor_reader, self._monitor_writer = await asyncio.open_unix_connection(sock=self._monitor)
        tasks.create_task(self._read_report(monitor_reader))
        try:
            message = await frames.read(self.reader, 1024, 0)
        except (frames.FrameError, ConnectionError):
            message = None
        if message is None or message[0].get("t") != "ready":
            self.kill()
            await asyncio.shield(self.finished)
            raise RunnerFailed(self._startup_error())

    def take_outputs(self) -> tuple[int, int]:
        """Hand the stdout/stderr read ends to whoever runs the job (it closes them)."""
        assert self._stdout_fd is not None and self._stderr_fd is not None
        fds = self._stdout_fd, self._stderr_fd
        self._stdout_fd = self._stderr_fd = None
        return fds

    def _startup_error(self) -> str:
        text = ""
        if self._stderr_fd is not None:
            os.set_blocking(self._stderr_fd, False)
            with contextlib.suppress(OSError):
                text = os.read(self._stderr_fd, _MAX_STARTUP_ERROR).decode(errors="replace").strip()
        return text or "the runner exited before it was ready"

    async def _read_report(self, reader: asyncio.StreamReader) -> None:
        status = ExitStatus()
        with contextlib.suppress(frames.FrameError, ConnectionError):
            message = await frames.read(reader, 1024, 0)
            if message is not None:
                wait_status, cpu = message[0].get("status"), message[0].get("cpu")
                if isinstance(wait_status, int):
                    if os.WIFSIGNALED(wait_status):
                        status = ExitStatus(signal=os.WTERMSIG(wait_status), cpu_s=cpu)
                    else:
                        status = ExitStatus(code=os.waitstatus_to_exitcode(wait_status), cpu_s=cpu)
        if not self.finished.done():
            self.finished.set_result(status)

    def kill(self) -> None:
        """Ask the monitor to kill the tree (harmless once it is gone)."""
        if self._monitor_writer is not None and not self._monitor_writer.is_closing():
            self._monitor_writer.write(b"k")

    def close(self) -> None:
        """Drop every descriptor the server holds for this runner (the monitor takes that as a kill)."""
        for writer in (self.writer, self._monitor_writer):
            if writer is not None:
                writer.close()
        for sock in (self._channel, self._monitor):
            if sock is not None:
                sock.close()
        for fd in (self._stdout_fd, self._stderr_fd):
            if fd is not None:
                os.close(fd)
        self._stdout_fd = self._stderr_fd = None


class Worker:
    """The warm worker process: started with a clean environment, asked to fork runners over a socket."""

    def __init__(self, config: PoolConfig) -> None:
        self._config = config
        self._control: socket.socket | None = None
        self._process: asyncio.subprocess.Process | None = None
        self.hello: dict[str, Any] = {}

    async def start(self) -> None:
        cfg = self._config
        mpl_dir = cfg.cache_dir / "matplotlib"
        mpl_dir.mkdir(parents=True, exist_ok=True)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-c", BOOT, str(SOURCE_ROOT), str(theirs.fileno()),
                stdin=asyncio.subprocess.DEVNULL, pass_fds=(theirs.fileno(),),
                env={**WORKER_ENV, "MPLCONFIGDIR": str(mpl_dir)}, cwd="/",
            )  # fmt: skip
        finally:
            theirs.close()
        ours.setblocking(False)
        self._control = ours
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(ours, cfg.model_dump_json().encode())
        async with asyncio.timeout(cfg.start_timeout_s):
            reply = await loop.sock_recv(ours, 1 << 16)
        if not reply:
            raise RunnerFailed("the sandbox worker exited during start-up (see the server's stderr)")
        self.hello = json.loads(reply)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def wait(self) -> int:
        assert self._process is not None
        return await self._process.wait()

    def fork_runner(self, index: int) -> Runner:
        """Ask the worker for a new runner; the returned runner still has to become ready."""
        if self._control is None or self._process is None or self._process.returncode is not None:
            raise RunnerFailed("the sandbox worker is not running")
        channel, channel_theirs = socket.socketpair()
        monitor, monitor_theirs = socket.socketpair()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        theirs = [channel_theirs.fileno(), out_w, err_w, monitor_theirs.fileno()]
        try:
            socket.send_fds(self._control, [str(index).encode()], theirs)  # spawn.c reads it too
        except OSError as e:
            channel.close()
            monitor.close()
            os.close(out_r)
            os.close(err_r)
            raise RunnerFailed(f"the sandbox worker did not take the request: {e}") from None
        finally:
            channel_theirs.close()
            monitor_theirs.close()
            os.close(out_w)
            os.close(err_w)
        return Runner(index, channel, out_r, err_r, monitor)

    async def stop(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._process is not None:
            if self._process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self._process.kill()
                await self._process.wait()
            rootfs.remove_skeleton_dir(self._process.pid)
