"""`openlive serve --executor mqtt://… --events mqtt://…` with real workers, through the google-genai SDK."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
from google.genai import types

from live.events import EventBus
from sandbox import Job, Outcome, Result
from sandbox.mqtt import BrokerConfig
from tests.conftest import API_KEY, DATA, Server, start_server
from tests.live_helpers import ask, receive_turn, scrape, text_config, until_code_runs
from tests.mqtt_helpers import Broker, until, wait_for

MODEL = "gemini-live-2.5-flash-preview"
LIGHTS = types.FunctionDeclaration(name="turn_on_the_lights", description="Lights on")


@pytest.fixture(scope="module")
def mqtt_server(
    certs: Path, broker: Broker, mqtt_workers: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    srv = start_server(
        certs,
        tmp_path_factory.mktemp("mqtt-server") / "server.log",
        "--backend",
        "scripted",
        "--script",
        str(DATA / "test_script.yaml"),
        "--executor",
        broker.url,
        "--events",
        broker.url,
    )
    yield srv
    srv.stop()


def health(server: Server) -> dict[str, Any]:
    return dict(httpx.get(f"{server.url}/healthz", verify=server.ssl_context() or True).json())


def running_jobs(server: Server) -> int:
    return sum(w["running"] for w in health(server)["sandbox"]["workers"] if w["state"] == "online")


def workers_online(server: Server) -> bool:
    sandbox = health(server)["sandbox"]
    return sandbox["state"] == "ready" and {
        w["name"] for w in sandbox["workers"] if w["state"] == "online"
    } == {
        "w1",
        "w2",
    }


@pytest.fixture
def online(mqtt_server: Server) -> Server:
    wait_for(lambda: workers_online(mqtt_server), 30, "both workers online")
    return mqtt_server


def lights_config() -> types.LiveConnectConfig:
    return text_config([{"code_execution": {}}, types.Tool(function_declarations=[LIGHTS])])


async def lights_turn(session: Any) -> None:
    """Code on a remote worker calls the client's function; the client answers; the code prints it."""
    await session.send_client_content(
        turns=types.Content(role="user", parts=[types.Part(text="please turn on the lights")])
    )
    async for msg in session.receive():
        if msg.tool_call:
            (call,) = msg.tool_call.function_calls
            break
    assert call.name == "turn_on_the_lights" and call.args == {"room": "kitchen"}
    await session.send_tool_response(
        function_responses=[types.FunctionResponse(id=call.id, name=call.name, response={"result": "ok"})]
    )
    turn = await receive_turn(session)
    assert turn.of("result") == [(types.Outcome.OUTCOME_OK, "{'result': 'ok'}\n")]


async def test_host_call_from_remote_code_reaches_the_client(online: Server) -> None:
    async with online.client().aio.live.connect(model=MODEL, config=lights_config()) as session:
        await lights_turn(session)
    metrics = scrape(online.url, online.ssl_context())
    assert metrics["openlive_sandbox_remote_workers"] == 2
    assert metrics["openlive_session_events_dropped_total"] == 0


async def test_interrupting_kills_the_remote_job(online: Server) -> None:
    async with online.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        await until_code_runs(session, "sleep forever")
        await asyncio.to_thread(wait_for, lambda: running_jobs(online) == 1, 30, "the job to run remotely")
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="echo after")])
        )
        assert (await receive_turn(session)).kinds() == ["interrupted", "turn_complete"]
        assert (await receive_turn(session)).text() == "echo: after"
    # Its deadline is 30 s: only the cancel reaching the worker ends it this soon.
    await asyncio.to_thread(wait_for, lambda: running_jobs(online) == 0, 5, "the remote job to be killed")


@pytest.fixture
async def events(broker: Broker) -> AsyncIterator[list[dict[str, Any]]]:
    """Every session event published while the test runs, in arrival order."""
    seen: list[dict[str, Any]] = []
    async with aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe("openlive/sessions/#", qos=1)

        async def collect() -> None:
            async for message in client.messages:
                event = json.loads(bytes(message.payload))
                event["_topic"] = message.topic.value
                event["_raw"] = bytes(message.payload)
                seen.append(event)

        task = asyncio.create_task(collect())
        yield seen
        task.cancel()


async def test_event_stream_has_every_event_in_order_and_no_secret(
    online: Server, events: list[dict[str, Any]]
) -> None:
    async with online.client().aio.live.connect(model=MODEL, config=lights_config()) as session:
        await lights_turn(session)
    await until(lambda: any(e["event"] == "session_ended" for e in events), 10, "session_ended")
    session_id = events[0]["session"]
    mine = [e for e in events if e["session"] == session_id]
    assert [e["event"] for e in mine] == [
        "session_started",
        "turn_started",
        "tool_call",
        "code_execution",
        "turn_complete",
        "usage",
        "session_ended",
    ]
    assert [e["seq"] for e in mine] == list(range(1, len(mine) + 1))
    assert all(e["_topic"] == f"openlive/sessions/{session_id}/{e['event']}" for e in mine)
    started, _, call, code, *_ = mine
    assert started["code_execution"] is True and started["functions"] == ["turn_on_the_lights"]
    assert call["calls"][0]["name"] == "turn_on_the_lights" and "args" not in call["calls"][0]
    assert code["outcome"] == "OUTCOME_OK" and code["worker"] in {"w1", "w2"} and code["duration_ms"] > 0
    assert "code" not in code and "output" not in code  # content only with --events-content
    assert not any(API_KEY.encode() in e["_raw"] for e in mine)


async def test_broker_restart_mid_session_is_survived(online: Server, broker: Broker) -> None:
    async with online.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        before = await ask(session, "count the characters of abcd")
        assert before.of("result") == [(types.Outcome.OUTCOME_OK, "4\n")]
        broker.stop()
        broker.start()
        # Server and workers reconnect with backoff; the client's session never noticed.
        await asyncio.to_thread(
            wait_for, lambda: workers_online(online), 30, "workers back after the restart"
        )
        after = await ask(session, "count the characters of abcdefg")
    assert after.of("result") == [(types.Outcome.OUTCOME_OK, "7\n")]


async def test_events_carry_code_and_output_only_when_configured(
    broker: Broker, events: list[dict[str, Any]]
) -> None:
    job, result = (
        Job(code="print(6 * 7)"),
        Result(outcome=Outcome.OK, output="42\n", worker="w9", duration_s=0.01),
    )
    for include_content in (False, True):
        bus = EventBus(BrokerConfig.parse(broker.url), include_content)
        await bus.start()
        bus.session(f"content-{include_content}").code_ran(job, result)
        await bus.close()  # sends what is queued first
    await until(lambda: len(events) == 2 and events, 10, "both events")
    plain, full = sorted(events, key=lambda e: e["session"])
    assert (plain["session"], full["session"]) == ("content-False", "content-True")
    assert "code" not in plain and "output" not in plain
    assert (full["code"], full["output"], full["worker"], full["outcome"]) == (
        job.code,
        "42\n",
        "w9",
        "OUTCOME_OK",
    )
