"""`openlive serve --workers 2`: two processes on one port, each serving sessions, sharing resumption."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import httpx
import pytest

from tests.conftest import API_KEY, Server, start_server
from tests.live_helpers import ask, text_config
from tests.mqtt_helpers import Broker, wait_for
from tests.test_live_lifecycle import Log, config, write_script
from tests.test_live_tokens import mint, refused

MODEL = "gemini-live-2.5-flash-preview"


@pytest.fixture(scope="module")
def two_processes(certs: Path, broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("processes")
    srv = start_server(
        certs,
        directory / "server.log",
        "--backend",
        "scripted",
        "--script",
        str(write_script(directory)),
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
                assert (await ask(session, "say hello")).text() == "ok hello"
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


async def test_a_session_resumes_on_either_process(two_processes: Server, broker: Broker) -> None:
    """The processes share one SQLite store, so a handle from one resumes the session on the other."""
    client = two_processes.client()
    async with aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as events:
        await events.subscribe("openlive/sessions/+/session_started", qos=1)
        messages = aiter(events.messages)

        async def process() -> int:
            async with asyncio.timeout(10):
                return int(json.loads(bytes((await anext(messages)).payload))["process"])

        log = Log()
        async with client.aio.live.connect(model=MODEL, config=config()) as session:
            await log.until(session, "update")
            await log.ask(session, "remember 7")
        verified = {await process(): False}
        for _ in range(40):  # each resumption is a new connection: the kernel picks the process
            resumed = Log()
            async with client.aio.live.connect(model=MODEL, config=config(log.handles[-1])) as session:
                await resumed.until(session, "update")
                served_by = await process()
                if not verified.get(served_by):  # once per process: each question adds to the history
                    await resumed.ask(session, "what did the code print?")
                    assert "The code printed 21." in resumed.turn.text()
                    verified[served_by] = True
            log.handles += resumed.handles
            if len(verified) == 2 and all(verified.values()):
                break
    assert len(verified) == 2 and all(verified.values())  # resumed with its history on both processes


async def test_ephemeral_tokens_are_counted_across_processes(two_processes: Server) -> None:
    """Minted by one process, used and used up on whichever the kernel picks: 10 tokens, 2**-10 that
    every mint and use met the same process by chance."""
    for _ in range(10):
        token = await mint(two_processes, uses=1)
        client = two_processes.client(api_key=token, api_version="v1alpha")
        async with client.aio.live.connect(model=MODEL, config=config()) as session:
            assert (await ask(session, "say hi")).text() == "ok hi"
        error = await refused(two_processes, token, config())
        assert error.code == 1011 and error.details == "Token has been used too many times"


def test_a_process_that_dies_is_replaced(two_processes: Server) -> None:
    def processes_answering() -> set[int]:
        seen = set()
        for _ in range(40):
            with httpx.Client(verify=two_processes.ssl_context() or True) as client:
                try:
                    seen.add(client.get(f"{two_processes.url}/healthz").json()["process"])
                except httpx.TransportError:  # accepted by the killed process just before it died
                    continue
            if len(seen) == 2:
                break
        return seen

    before = processes_answering()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    # The survivor keeps serving meanwhile; the supervisor starts a new process on the same port.
    wait_for(lambda: len(after := processes_answering()) == 2 and victim not in after, 60, "a replacement")
    assert two_processes.proc.poll() is None


def test_uploads_and_files_are_shared_by_the_processes(two_processes: Server) -> None:
    """Each request below opens its own connection, so any of them may reach either process: the upload's
    start, its two chunks, and the get all find the same store (24 requests in one process: 2**-23)."""
    verify = two_processes.ssl_context()
    key = {"x-goog-api-key": API_KEY}
    for i in range(6):
        data = f"x,y\n{i},{i * i}\n".encode()
        start = httpx.post(
            f"{two_processes.url}/upload/v1beta/files",
            json={"file": {"displayName": f"rows{i}.csv"}},
            headers=key | {"X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start",
                           "X-Goog-Upload-Header-Content-Length": str(len(data)),
                           "X-Goog-Upload-Header-Content-Type": "text/csv"},
            verify=verify,
        )  # fmt: skip
        upload = start.headers["x-goog-upload-url"]
        half = len(data) // 2
        chunk = {"X-Goog-Upload-Command": "upload", "X-Goog-Upload-Offset": "0"}
        first = httpx.post(upload, content=data[:half], verify=verify, headers=chunk)
        assert first.status_code == 200 and first.headers["x-goog-upload-status"] == "active"
        final = httpx.post(upload, content=data[half:], verify=verify,
                           headers={"X-Goog-Upload-Command": "upload, finalize",
                                    "X-Goog-Upload-Offset": str(half)})  # fmt: skip
        assert final.status_code == 200, final.text
        name = final.json()["file"]["name"]
        got = httpx.get(f"{two_processes.url}/v1beta/{name}", headers=key, verify=verify)
        assert got.status_code == 200 and got.json()["sizeBytes"] == str(len(data))
