"""`openlive serve --workers 2`: two processes on one port, each serving sessions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import httpx
import pytest

from tests.conftest import DATA, Server, start_server
from tests.live_helpers import ask, text_config
from tests.mqtt_helpers import Broker

MODEL = "gemini-live-2.5-flash-preview"


@pytest.fixture(scope="module")
def two_processes(certs: Path, broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        certs,
        tmp_path_factory.mktemp("processes") / "server.log",
        "--backend",
        "scripted",
        "--script",
        str(DATA / "test_script.yaml"),
        "--workers",
        "2",
        "--events",
        broker.url,
    )
    yield srv
    srv.stop()


async def test_sessions_are_served_by_both_processes(two_processes: Server, broker: Broker) -> None:
    """New connections spread over the processes (SO_REUSEPORT); each session says which one served it."""
    processes: set[int] = set()
    async with aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as events:
        await events.subscribe("openlive/sessions/+/session_started", qos=1)
        messages = aiter(events.messages)
        for _ in range(40):  # one process taking 40 connections in a row: 2**-39
            async with two_processes.client().aio.live.connect(model=MODEL, config=text_config()) as session:
                assert (await ask(session, "echo hello")).text() == "echo: hello"
            async with asyncio.timeout(10):
                processes.add(json.loads(bytes((await anext(messages)).payload))["process"])
            if len(processes) == 2:
                break
    assert len(processes) == 2
    assert two_processes.proc.pid not in processes  # the parent only supervises


def test_health_answers_from_either_process(two_processes: Server) -> None:
    seen = set()
    for _ in range(40):
        with httpx.Client(verify=two_processes.ssl_context() or True) as client:  # a new connection each time
            body = client.get(f"{two_processes.url}/healthz").json()
        assert body["status"] in ("ok", "degraded")
        seen.add(body["process"])
        if len(seen) == 2:
            break
    assert len(seen) == 2
