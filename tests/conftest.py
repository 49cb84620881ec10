"""Real servers for the tests: `openlive serve` processes on ephemeral ports, TLS from `openlive certs`."""

from __future__ import annotations

import gc
import os
import selectors
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import websockets
import yaml
from google import genai
from google.genai import types

from live.backends.scripted import DEFAULT_SCRIPT
from sandbox import LocalPool, PoolConfig
from tests.llama_upstream import Upstream, start_upstream

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
OPENLIVE = str(Path(sys.executable).parent / "openlive")
API_KEY = "test-key"
START_TIMEOUT_S = 60.0


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str
    port: int
    ca: Path | None
    log: Path

    @property
    def ws_base(self) -> str:
        return self.url.replace("https://", "wss://").replace("http://", "ws://")

    def live_url(self, version: str = "v1beta") -> str:
        return (
            f"{self.ws_base}/ws/google.ai.generativelanguage.{version}.GenerativeService.BidiGenerateContent"
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=str(self.ca)) if self.ca else None

    def raw_live(self) -> websockets.asyncio.client.connect:
        """A raw Live WebSocket with the test key, for frames the SDK cannot send."""
        return websockets.connect(
            self.live_url(), ssl=self.ssl_context(), additional_headers={"x-goog-api-key": API_KEY}
        )

    def client(self, api_key: str = API_KEY, api_version: str = "v1beta") -> genai.Client:
        return genai.Client(
            api_key=api_key,
            http_options=types.HttpOptions(
                base_url=self.url, api_version=api_version, async_client_args={"ssl": self.ssl_context()}
            ),
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            gc.collect()  # SDK clients left in reference cycles close their keep-alive connections, which
            # would otherwise hold the server's graceful shutdown until the kill below
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(certs: Path | None, log: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    """Starts `openlive serve --port 0` (TLS unless `certs` is None) and waits for its start line."""
    cmd = [
        OPENLIVE,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--api-key",
        API_KEY,
        "--files-dir",  # each server its own Files API store, never the user's
        str(log.parent / f"{log.stem}-files"),
        *(["--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key")] if certs else []),
        *args,
    ]
    with log.open("w") as err:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env or dict(os.environ)
        )
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(START_TIMEOUT_S):
        proc.kill()
        raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")
    line = proc.stdout.readline().strip()
    if not line.startswith("openlive listening on "):
        proc.kill()
        raise RuntimeError(f"unexpected start line {line!r}: {log.read_text()[-2000:]}")
    url = line.removeprefix("openlive listening on ")
    return Server(proc, url, int(url.rsplit(":", 1)[1]), certs / "ca.pem" if certs else None, log)


def start_demo_server(
    certs: Path, directory: Path, *rules: dict[str, Any], args: tuple[str, ...] = ()
) -> Server:
    """The scripted model with the bundled demo script, `rules` tried first; `args` for `serve`."""
    script = yaml.safe_load(DEFAULT_SCRIPT.read_text())
    script["rules"][:0] = rules
    (directory / "script.yaml").write_text(yaml.safe_dump(script))
    script_args = ("--backend", "scripted", "--script", str(directory / "script.yaml"))
    return start_server(certs, directory / "server.log", *script_args, *args)


@pytest.fixture(scope="session")
async def small_pool() -> AsyncIterator[LocalPool]:
    """A local sandbox pool of one slot and one spare runner, for sandbox tests that need no other set-up."""
    pool = LocalPool(PoolConfig(slots=1, spare_runners=1))
    await pool.start()
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    subprocess.run([OPENLIVE, "certs", str(directory)], check=True, capture_output=True)
    return directory


@pytest.fixture(scope="session")
def server(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The default set-up: the bundled demo script."""
    srv = start_server(certs, tmp_path_factory.mktemp("logs") / "server.log", "--backend", "scripted")
    yield srv
    srv.stop()


def start_scripted(certs: Path, logs: Path, script: str, *args: str) -> Server:
    """`openlive serve --backend scripted` with a script from tests/data."""
    return start_server(
        certs, logs / "server.log", "--backend", "scripted", "--script", str(DATA / script), *args
    )


@pytest.fixture(scope="session")
def test_server(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The test script, a second key and a 3 s code deadline."""
    logs = tmp_path_factory.mktemp("test-server")
    srv = start_scripted(certs, logs, "test_script.yaml", "--api-key", "second-key", "--code-deadline", "3")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def semantics_server(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The script for turn and call semantics (slow text, a 20 s job, NON_BLOCKING calls)."""
    srv = start_scripted(certs, tmp_path_factory.mktemp("semantics-server"), "semantics_script.yaml")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def tools_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    """One real OpenAI-compatible upstream (llama_cpp.server, SmolLM2, tool calling) for every test that
    needs one: it takes seconds to start and holds the model in memory."""
    pytest.importorskip("llama_cpp.server")
    upstream = start_upstream(
        tmp_path_factory.mktemp("up") / "tools.log", chat_format="chatml-function-calling"
    )
    yield upstream
    upstream.kill()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real mosquitto on a free port, shared by the MQTT tests (a test that restarts it leaves it up)."""
    from tests.mqtt_helpers import Broker

    b = Broker(tmp_path_factory.mktemp("mosquitto"))
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def mqtt_workers(broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two `openlive worker` processes, w1 and w2 (a test that kills one starts it again)."""
    from tests.mqtt_helpers import Worker

    logs = tmp_path_factory.mktemp("workers")
    workers = {name: Worker(name, broker, logs / f"{name}.log") for name in ("w1", "w2")}
    try:
        for w in workers.values():
            w.start()
        yield workers
    finally:
        for w in workers.values():
            w.stop()


@pytest.fixture(scope="session")
def rest_server(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The REST tests' script, a second key, and small Files API caps (1 MiB a file, 2 MiB a key)."""
    directory = tmp_path_factory.mktemp("rest")
    config = directory / "openlive.toml"
    config.write_text("[files]\nmax_file_mb = 1\nquota_mb = 2\n")
    srv = start_server(
        certs, directory / "server.log", "--backend", "scripted", "--script", str(DATA / "rest_script.yaml"),
        "--api-key", "second-key", "--config", str(config),
    )  # fmt: skip
    yield srv
    srv.stop()
