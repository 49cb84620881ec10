"""A real OpenAI-compatible upstream for the backend tests and the bench: llama_cpp.server on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from live.backends.llama import default_model_path

START_TIMEOUT_S = 120.0


@dataclass
class Upstream:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def kill(self) -> None:
        """SIGKILL, as a crash would: no graceful shutdown, open streams are cut."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_upstream(
    log: Path,
    *,
    chat_format: str | None = None,
    api_key: str | None = None,
    n_ctx: int = 4096,
    port: int | None = None,
) -> Upstream:
    """Starts the server with the default GGUF (on `port`, or a free one) and returns once it answers."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(default_model_path())]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--verbose", "False"]
    cmd += ["--chat_format", chat_format] if chat_format else []
    cmd += ["--api_key", api_key] if api_key else []
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    upstream = Upstream(proc, port, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"{upstream.base_url}/models", timeout=2).close()
            return upstream
        except urllib.error.HTTPError:  # e.g. 401 with --api_key: it is up
            return upstream
        except OSError:
            time.sleep(0.2)
    upstream.kill()
    raise RuntimeError(f"llama_cpp.server did not start within {START_TIMEOUT_S} s")
