"""A real mosquitto on a free port and real `openlive worker` processes, for the MQTT tests."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tests.conftest import OPENLIVE

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
START_TIMEOUT_S = 60.0
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Polls a condition that some other process will make true."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@dataclass
class Broker:
    """mosquitto with its own config: since 2.0 it listens on localhost only and refuses anonymous
    clients unless a config says otherwise, so the tests write one (`listener`, `allow_anonymous`), with
    `set_tcp_nodelay` as any deployment should have it (docs/deployment.md)."""

    directory: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    password_file: Path | None = None  # then only its logins may connect
    certs: Path | None = None  # `openlive certs` output: then the listener speaks TLS only

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.certs else 'mqtt'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        config = self.directory / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "set_tcp_nodelay true"]
        # As root it would switch to the `mosquitto` user, which cannot read pytest's private tmp dirs.
        lines.append("user root")
        if self.password_file:
            lines += ["allow_anonymous false", f"password_file {self.password_file}"]
        else:
            lines.append("allow_anonymous true")
        if self.certs:
            lines += [f"certfile {self.certs / 'server.pem'}", f"keyfile {self.certs / 'server.key'}"]
        config.write_text("\n".join(lines) + "\n")
        with (self.directory / "mosquitto.log").open("ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(config)], stdout=log, stderr=log)
        wait_for(lambda: _accepts(self.port), 10, "mosquitto to listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        wait_for(lambda: not _accepts(self.port), 10, "mosquitto to stop listening")


@dataclass
class Worker:
    name: str
    broker: Broker
    log: Path
    proc: subprocess.Popen[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)

    def start(self) -> None:
        cmd = [OPENLIVE, "worker", "--broker", self.broker.url, "--name", self.name]
        cmd += ["--slots", "2", "--heartbeat", "0.5", *self.args]
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, **self.env}
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # printed once its pool is ready
        if not line.startswith("openlive worker"):
            self.proc.kill()
            raise RuntimeError(f"worker {self.name} did not start: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: no goodbye, as when a machine dies (the broker sends its will)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def until(condition: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Polls, without blocking the loop, a state another process changes.

    Returns the condition's first value that is neither None, False nor empty (0 counts as a value)."""
    deadline = time.monotonic() + timeout_s
    for _ in itertools.count():
        value = condition()
        if value is not None and value is not False and value != []:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(0.05)
    raise AssertionError("unreachable")
