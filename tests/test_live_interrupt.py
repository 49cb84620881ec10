"""Interruption over the real SDK: by new clientContent and by activityStart, during streamed text, during
a running 20-second job (whose processes must be gone within 100 ms) and during a pending call."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable

import pytest
from google.genai import live, types

from tests.conftest import Server
from tests.live_helpers import (
    Turn,
    process_chain,
    receive_turn,
    receive_until,
    scrape,
    text_config,
    wait_exited,
)

pytestmark = pytest.mark.timeout(60)  # a lost message hangs a receive: fail instead
MODEL = "gemini-live-2.5-flash-preview"
STORY = "tell me a long story"
KILL_WITHIN_S = 0.1

Interrupter = Callable[[live.AsyncSession], Awaitable[None]]


async def by_client_content(session: live.AsyncSession) -> None:
    await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="echo after")]))


async def by_activity_start(session: live.AsyncSession) -> None:
    await session.send_realtime_input(activity_start=types.ActivityStart())


async def next_turn(session: live.AsyncSession, interrupter: Interrupter) -> Turn:
    """The turn the user asked for when interrupting (with activity, its text comes before activityEnd)."""
    if interrupter is by_activity_start:
        await session.send_realtime_input(text="echo after")
        await session.send_realtime_input(activity_end=types.ActivityEnd())
    return await receive_turn(session)


def setup(interrupter: Interrupter, *functions: str, code: bool = False) -> types.LiveConnectConfig:
    tools: list[object] = [{"code_execution": {}}] if code else []
    if functions:
        tools.append(types.Tool(function_declarations=[types.FunctionDeclaration(name=f) for f in functions]))
    config = (
        text_config(tools) if tools else types.LiveConnectConfig(response_modalities=[types.Modality.TEXT])
    )
    if interrupter is by_activity_start:
        config.realtime_input_config = types.RealtimeInputConfig(
            automatic_activity_detection=types.AutomaticActivityDetection(disabled=True)
        )
    return config


INTERRUPTERS = pytest.mark.parametrize("interrupter", [by_client_content, by_activity_start])


@INTERRUPTERS
async def test_interrupting_streamed_text(semantics_server: Server, interrupter: Interrupter) -> None:
    async with semantics_server.client().aio.live.connect(model=MODEL, config=setup(interrupter)) as session:
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=STORY)]))
        story = await receive_until(session, "text")
        await interrupter(session)
        await receive_turn(session, story)
        after = await next_turn(session, interrupter)
    assert story.kinds() == ["text", "interrupted", "turn_complete"]  # no generationComplete
    sent = story.text()
    assert not sent.endswith("and the end.")
    (usage,) = story.of("turn_complete")  # usage on the interrupted turn: the words that were sent
    assert usage.prompt_token_count == len(STORY.split())
    assert usage.response_token_count == len(sent.split())
    assert after.text() == "echo: after"
    # The history keeps what was sent, and only that: the scripted model counts its words as prompt.
    (usage,) = after.of("turn_complete")
    assert usage.prompt_token_count == len(f"{STORY} {sent} echo after".split())


@INTERRUPTERS
async def test_interrupting_a_20_second_job_kills_its_tree(
    semantics_server: Server, interrupter: Interrupter
) -> None:
    marker = f"m{uuid.uuid4().hex}"
    config = setup(interrupter, "job_started", code=True)
    async with semantics_server.client().aio.live.connect(model=MODEL, config=config) as session:
        prompt = f"run the long job {marker}"
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=prompt)]))
        turn = await receive_until(session, "tool_call")  # the job has started its child and sleeps 20 s
        ((started,),) = turn.of("tool_call")
        await session.send_tool_response(
            function_responses=[types.FunctionResponse(id=started.id, name=started.name, response={})]
        )
        # The child carrying `marker` and the job that started it. (Their parent, the sandbox's monitor,
        # exits once it has reaped them and reported, tearing down the job's namespaces: not the job's tree.)
        tree = process_chain(marker, 2)
        before = scrape(semantics_server.url, semantics_server.ssl_context())
        sent_at = time.perf_counter()
        await interrupter(session)
        gone_at = wait_exited(tree, timeout_s=5)
        await receive_turn(session, turn)
        after = await next_turn(session, interrupter)
    measured = scrape(semantics_server.url, semantics_server.ssl_context())
    assert gone_at - sent_at < KILL_WITHIN_S, (
        f"job tree lived {gone_at - sent_at:.3f} s after the interruption"
    )
    # The server's own measure of this interruption (the stream stopped, the processes reaped).
    for series in ("count", 'bucket{le="0.1"}'):
        key = f"openlive_interruption_seconds_{series}"
        assert measured[key] - before.get(key, 0) == 1
    assert turn.kinds() == ["code", "tool_call", "interrupted", "turn_complete"]
    (usage,) = turn.of("turn_complete")
    (code,) = turn.of("code")
    assert usage.prompt_token_count == len(prompt.split())
    assert usage.response_token_count == len(code.split())
    assert after.text() == "echo: after"


async def test_activity_start_cancels_a_pending_call(semantics_server: Server) -> None:
    async with semantics_server.client().aio.live.connect(
        model=MODEL, config=setup(by_activity_start, "get_weather")
    ) as session:
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="weather in Paris")])
        )
        turn = await receive_until(session, "tool_call")
        ((call,),) = turn.of("tool_call")
        await by_activity_start(session)
        await receive_turn(session, turn)
        # A late answer to the cancelled call is dropped: the next turn is the user's.
        await session.send_tool_response(
            function_responses=[types.FunctionResponse(id=call.id, name=call.name, response={"sky": "late"})]
        )
        after = await next_turn(session, by_activity_start)
    assert turn.kinds() == ["tool_call", "cancel", "interrupted", "turn_complete"]
    assert turn.of("cancel") == [[call.id]]
    assert after.kinds() == ["text", "generation_complete", "turn_complete"]
    assert after.text() == "echo: after"


async def test_no_interruption_lets_the_turn_finish(semantics_server: Server) -> None:
    config = setup(by_activity_start)
    assert config.realtime_input_config is not None
    config.realtime_input_config.activity_handling = types.ActivityHandling.NO_INTERRUPTION
    async with semantics_server.client().aio.live.connect(model=MODEL, config=config) as session:
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=STORY)]))
        story = await receive_until(session, "text")
        await by_activity_start(session)
        await session.send_realtime_input(text="echo later")
        await session.send_realtime_input(activity_end=types.ActivityEnd())
        await receive_turn(session, story)
        later = await receive_turn(session)
    assert story.kinds() == ["text", "generation_complete", "turn_complete"]
    assert story.text().endswith("and the end.")
    assert later.text() == "echo: later"
