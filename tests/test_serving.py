"""What an operator relies on: TLS that refuses an untrusting client, plain-HTTP mode, /healthz following
what the sandbox can do, and /metrics counting closes and interruptions."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from google import genai
from google.genai import types

from tests.conftest import API_KEY, Server, start_server
from tests.live_helpers import SEED_PROMPT, ask, receive_turn, scrape, text_config

MODEL = "gemini-live-2.5-flash-preview"
CODE = types.GenerateContentConfig(tools=[types.Tool(code_execution=types.ToolCodeExecution())])


async def test_a_client_that_does_not_trust_the_ca_is_refused(server: Server) -> None:
    untrusting = genai.Client(
        api_key=API_KEY,
        http_options=types.HttpOptions(
            base_url=server.url, async_client_args={"ssl": ssl.create_default_context()}
        ),
    )
    with pytest.raises(ssl.SSLCertVerificationError):
        async with untrusting.aio.live.connect(model=MODEL, config=text_config()):
            pass
    # The same server, trusted through its CA, serves the SDK.
    async with server.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        assert (await ask(session, SEED_PROMPT)).of("result")[0][1].strip() == "5117"


def health(server: Server) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"{server.url}/healthz", timeout=10)
    return response.status_code, response.json()


def until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Polls a condition the server changes on its own (its sandbox supervisor), with a deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def kill_and_wait(pid: int, timeout_s: float = 10.0) -> None:
    """SIGKILLs process `pid` (not our child) and blocks until it has exited: its pidfd becomes readable.
    Through a pidfd taken first, since its parent may reap it (and free its pid) before we look."""
    fd = os.pidfd_open(pid)
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        assert select.select([fd], [], [], timeout_s)[0], f"process {pid} did not exit"
    finally:
        os.close(fd)


async def seed_result(client: genai.Client) -> tuple[types.Outcome | None, str]:
    """The seed example over REST: the outcome and output of its code."""
    response = await client.aio.models.generate_content(model=MODEL, contents=SEED_PROMPT, config=CODE)
    content = response.candidates[0].content if response.candidates else None
    results = [p.code_execution_result for p in (content.parts if content else None) or []]
    result = next(r for r in results if r is not None)
    return result.outcome, (result.output or "").strip()


async def live_over_ws(server: Server) -> str:
    """A raw Live session over ws:// (the SDK always uses wss://): the seed example's code output."""
    async with server.raw_live() as ws:
        await ws.send(json.dumps({"setup": {"model": f"models/{MODEL}", "tools": [{"codeExecution": {}}]}}))
        assert "setupComplete" in json.loads(await ws.recv())
        turn = {"turns": [{"role": "user", "parts": [{"text": SEED_PROMPT}]}], "turnComplete": True}
        await ws.send(json.dumps({"clientContent": turn}))
        async with asyncio.timeout(30):
            while True:
                content = json.loads(await ws.recv()).get("serverContent", {})
                for part in content.get("modelTurn", {}).get("parts", []):
                    if "codeExecutionResult" in part:
                        return str(part["codeExecutionResult"]["output"]).strip()


async def test_plain_http_and_health_that_follows_the_sandbox(tmp_path: Path) -> None:
    """Plain HTTP (no TLS flags) serves Live over ws:// and REST. /healthz says `degraded` while an
    isolation layer is skipped or the sandbox worker is down, and 503 `unavailable` once no code can run.
    Full garbage collections come on their timer (the thresholds alone would hardly ever start one)."""
    cache = tmp_path / "cache"
    config = tmp_path / "openlive.toml"
    config.write_text(
        "gc_full_interval_s = 0.2\n[sandbox]\nslots = 1\nspare_runners = 0\nqueue_timeout_s = 1\n"
        f'skip_layers = ["netns"]\nallow_weak_isolation = true\ncache_dir = "{cache}"\n'
    )
    server = start_server(None, tmp_path / "server.log", "--backend", "scripted", "--config", str(config))
    try:
        assert server.url.startswith("http://")
        full = 'python_gc_collections_total{generation="2"}'
        first = scrape(server.url, None)[full]
        until(lambda: scrape(server.url, None)[full] >= first + 2)
        client = server.client()
        code, body = health(server)
        assert (code, body["status"], body["sandbox"]["isolation"]) == (200, "degraded", "weak")
        assert not body["sandbox"]["layers"]["netns"]["ok"] and body["sandbox"]["layers"]["pidns"]["ok"]
        assert await live_over_ws(server) == "5117"
        assert await seed_result(client) == (types.Outcome.OUTCOME_OK, "5117")
        until(lambda: health(server)[1]["sandbox"]["runners_ready"] == 1)

        # The worker dies and cannot come back (its cache directory is now a file): the runner it forked
        # earlier still serves one job, then nothing can run.
        cache.rename(tmp_path / "cache.old")
        cache.write_text("not a directory")
        worker = body["sandbox"]["worker_pid"]
        kill_and_wait(worker)
        until(lambda: health(server)[1]["sandbox"]["state"] == "degraded")
        code, body = health(server)
        assert (code, body["status"], body["sandbox"]["runners_ready"]) == (200, "degraded", 1)
        assert await seed_result(client) == (types.Outcome.OUTCOME_OK, "5117")
        code, body = health(server)
        assert (code, body["status"], body["sandbox"]["runners_ready"]) == (503, "unavailable", 0)
        assert "restart failed" in body["sandbox"]["last_error"]
        outcome, output = await seed_result(client)
        assert outcome == types.Outcome.OUTCOME_FAILED and "no sandbox became free" in output
        assert server.proc.poll() is None
    finally:
        server.stop()


async def test_metrics_count_closes_and_interruptions(test_server: Server) -> None:
    before = scrape(test_server.url, test_server.ssl_context())
    async with test_server.raw_live() as ws:
        await ws.send(json.dumps({"setup": {"model": "models/m"}}))
        await ws.recv()
        await ws.send("not json")
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
    assert ws.close_code == 1007
    async with test_server.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="sleep forever")])
        )
        async for msg in session.receive():
            if msg.server_content and msg.server_content.model_turn:
                break  # the turn is running
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="echo x")]))
        assert (await receive_turn(session)).kinds() == ["interrupted", "turn_complete"]
        assert (await receive_turn(session)).text() == "echo: x"
    after = scrape(test_server.url, test_server.ssl_context())

    def delta(key: str) -> float:
        return after.get(key, 0) - before.get(key, 0)

    assert delta('openlive_session_closes_total{code="1007"}') == 1
    assert delta("openlive_interruptions_total") == 1
    assert delta("openlive_turns_total") == 2
