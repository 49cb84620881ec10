"""Step-1 executor: one cold, unconfined interpreter per job. Correct but slow (~1 s of imports per job)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path

from sandbox.config import PoolConfig
from sandbox.conversation import ExitStatus, converse
from sandbox.models import HostCall, Job, Result

_ROOT = Path(__file__).resolve().parent.parent
_BOOT = (
    "import socket, sys; sys.path.insert(0, sys.argv[1]); from sandbox.runner import serve; "
    "serve(socket.socket(fileno=int(sys.argv[2])))"
)


class SubprocessExecutor:
    """Each job in a fresh `python -I` with a clean environment in a scratch dir; kills its process group."""

    def __init__(self, config: PoolConfig | None = None) -> None:
        self.config = config or PoolConfig()

    async def start(self) -> None:
        (self.config.cache_dir / "matplotlib").mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        return None

    async def run(self, job: Job, host_call: HostCall | None = None) -> Result:
        scratch = tempfile.mkdtemp(prefix="openlive-job-")
        ours, theirs = socket.socketpair()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": scratch,
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": str(self.config.cache_dir / "matplotlib"),
            "OPENBLAS_NUM_THREADS": "1",
        }
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-c", _BOOT, str(_ROOT), str(theirs.fileno()),
                stdin=asyncio.subprocess.DEVNULL, stdout=out_w, stderr=err_w, pass_fds=(theirs.fileno(),),
                cwd=scratch, env=env, start_new_session=True,
            )  # fmt: skip
        except BaseException:
            for fd in (out_r, err_r):
                os.close(fd)
            ours.close()
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        finally:
            theirs.close()
            os.close(out_w)
            os.close(err_w)

        async def exit_status() -> ExitStatus:
            code = await proc.wait()
            return ExitStatus(signal=-code) if code < 0 else ExitStatus(code=code)

        try:
            reader, writer = await asyncio.open_unix_connection(sock=ours)
            return await converse(reader, writer, out_r, err_r, job, host_call, self.config, exit_status)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            shutil.rmtree(scratch, ignore_errors=True)
