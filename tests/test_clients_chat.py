"""`openlive chat` driven through a real pseudo-terminal against a real server."""

from __future__ import annotations

import fcntl
import os
import re
import select
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import API_KEY, OPENLIVE, Server, start_demo_server

TIMEOUT_S = 30.0
SLEEP_RULE = {
    "match": "(?i)sleep forever",
    "reply": [
        {"text": "Going to sleep."},
        {"code": "import time\nwhile True:\n    time.sleep(1)\n"},
        {"text": "Woke up."},
    ],
}


@pytest.fixture(scope="module")
def chat_server(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The bundled demo script plus a rule whose code never ends (something to interrupt)."""
    srv = start_demo_server(certs, tmp_path_factory.mktemp("chat"), SLEEP_RULE)
    yield srv
    srv.stop()


def _controlling_terminal() -> None:
    """In the child: a new session whose controlling terminal is the pty, so ^C becomes SIGINT."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """A program on the slave side of a pty; `expect` reads the master side until a pattern shows up."""

    def __init__(self, argv: list[str]) -> None:
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, preexec_fn=_controlling_terminal, close_fds=True
        )
        os.close(slave)
        self.output = ""
        self.seen = 0  # `expect` only looks past what earlier expectations consumed

    def expect(self, pattern: str, timeout: float = TIMEOUT_S) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.output, self.seen)
            if match:
                self.seen = match.end()
                return match
            left = deadline - time.monotonic()
            if left <= 0 or (self.proc.poll() is not None and not self._readable(0)):
                raise AssertionError(f"{pattern!r} not seen; terminal shows:\n{self.output[-3000:]}")
            if self._readable(left):
                try:
                    self.output += os.read(self.master, 65536).decode(errors="replace")
                except OSError:  # EIO: the child closed the pty
                    raise AssertionError(
                        f"{pattern!r} not seen before exit:\n{self.output[-3000:]}"
                    ) from None

    def _readable(self, timeout: float) -> bool:
        return bool(select.select([self.master], [], [], timeout)[0])

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        os.close(self.master)


def chat_command(server: Server, key: str, *args: str) -> list[str]:
    return [OPENLIVE, "chat", "--url", server.url, "--ca", str(server.ca), "--key", key, *args]


def test_chat_streams_interrupts_and_quits(chat_server: Server, tmp_path: Path) -> None:
    plots = tmp_path / "plots"
    term = Terminal(
        chat_command(
            chat_server,
            API_KEY,
            "--function",
            "get_weather",
            "--plots-dir",
            str(plots),
            "--color",
            "never",
        )
    )
    try:
        term.expect(r"tools: code execution, get_weather")
        term.expect(r"you> ")

        term.type("What is the sum of the first 50 prime numbers?\r")
        term.expect(r"╭─ code · python\r?\n│ def is_prime\(n\):")
        term.expect(r"╭─ result · ok\r?\n│ 5117\r?\n╰─")
        term.expect(r"The sum of the first 50 prime numbers is 5117\.")
        term.expect(r"you> ")

        term.type("What is the weather in Paris?\r")
        term.expect(r'→ get_weather\(\{"city": "Paris"\}\)')
        term.expect(r"The weather service says: \{\"city\": \"Paris\"")
        term.expect(r"you> ")

        # Ctrl-C while the code runs: the turn is interrupted, the program lives on.
        term.type("sleep forever\r")
        term.expect(r"while True:")
        term.type("\x03")
        term.expect(r"\[interrupted\]")
        term.expect(r"you> ")
        assert term.proc.poll() is None

        term.type("Plot sin and cos\r")
        saved = Path(term.expect(r"\[plot saved: (\S+\.png)\]").group(1))
        assert saved.parent == plots.resolve()
        assert saved.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        term.expect(r"you> ")

        term.type("/quit\r")
        assert term.proc.wait(TIMEOUT_S) == 0
    finally:
        term.close()


def test_chat_reports_a_refused_key(chat_server: Server) -> None:
    result = subprocess.run(
        chat_command(chat_server, "wrong", "--prompt", "hi"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert result.returncode == 1
    assert "1008" in result.stdout
