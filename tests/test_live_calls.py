"""Client function calls over the real SDK: calls from code, BLOCKING order, NON_BLOCKING scheduling."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.genai import live, types

from tests.conftest import Server
from tests.live_helpers import Turn, receive_turn, receive_until, text_config

pytestmark = pytest.mark.timeout(60)  # a lost message hangs a receive: fail instead
MODEL = "gemini-live-2.5-flash-preview"
STORY = "tell me a long story"


def declare(name: str, non_blocking: bool = False) -> types.FunctionDeclaration:
    behavior = types.Behavior.NON_BLOCKING if non_blocking else None
    return types.FunctionDeclaration(name=name, description=f"{name} for tests", behavior=behavior)


def config(*functions: types.FunctionDeclaration, code: bool = False) -> types.LiveConnectConfig:
    tools: list[Any] = [types.Tool(function_declarations=list(functions))]
    return text_config([{"code_execution": {}}, *tools] if code else tools)


async def say(session: live.AsyncSession, text: str) -> None:
    await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=text)]))


async def answer(session: live.AsyncSession, call: types.FunctionCall, **fields: Any) -> None:
    await session.send_tool_response(
        function_responses=[types.FunctionResponse(id=call.id, name=call.name, **fields)]
    )


async def test_code_calls_a_client_function_three_times_in_a_loop(semantics_server: Server) -> None:
    """Each `default_api.read_sensor(...)` of the running code is one toolCall, answered into the code."""
    cfg = config(declare("read_sensor"), code=True)
    async with semantics_server.client().aio.live.connect(model=MODEL, config=cfg) as session:
        await say(session, "read three sensors")
        turn = Turn()
        ids = []
        for room, celsius in (("kitchen", 21), ("hall", 19), ("attic", 15)):
            await receive_until(session, "tool_call", turn)
            (call,) = turn.of("tool_call")[-1]
            assert call.name == "read_sensor" and call.args == {"room": room}
            ids.append(call.id)
            await answer(session, call, response={"celsius": celsius})
        await receive_turn(session, turn)
    calls = ["tool_call"] * 3
    assert turn.kinds() == ["code", *calls, "result", "text", "generation_complete", "turn_complete"]
    assert len(set(ids)) == 3
    assert turn.of("result") == [(types.Outcome.OUTCOME_OK, "kitchen 21\nhall 19\nattic 15\n")]
    assert turn.text() == "Readings: kitchen 21\nhall 19\nattic 15"


async def test_input_during_a_blocking_call_is_answered_after_it_in_order(semantics_server: Server) -> None:
    async with semantics_server.client().aio.live.connect(
        model=MODEL, config=config(declare("get_weather"))
    ) as session:
        await say(session, "weather in Paris")
        (call,) = (await receive_until(session, "tool_call")).of("tool_call")[0]
        await say(session, "echo second")
        await session.send_realtime_input(text="echo third")
        await answer(session, call, response={"sky": "clear"})
        turns = [await receive_turn(session) for _ in range(3)]
    assert [t.kinds() for t in turns] == [["text", "generation_complete", "turn_complete"]] * 3
    assert [t.text() for t in turns] == ['Weather in Paris: {"sky": "clear"}', "echo: second", "echo: third"]


async def book(session: live.AsyncSession) -> types.FunctionCall:
    """Asks for the NON_BLOCKING booking: the turn completes before any result is sent."""
    await say(session, "book a table")
    turn = await receive_turn(session)
    assert turn.kinds() == ["tool_call", "text", "generation_complete", "turn_complete"]
    assert turn.text() == "I am booking it and will tell you once it is done."
    ((call,),) = turn.of("tool_call")
    assert call.name == "book_table" and call.args == {"people": 2}
    return call


def booking_config() -> types.LiveConnectConfig:
    return config(declare("book_table", non_blocking=True))


async def test_silent_result_adds_to_context_without_output(semantics_server: Server) -> None:
    async with semantics_server.client().aio.live.connect(model=MODEL, config=booking_config()) as session:
        call = await book(session)
        await answer(session, call, response={"status": "booked"}, scheduling="SILENT")
        await session.send_client_content(turn_complete=True)  # "go on": the model now sees the result
        await say(session, "echo probe")
        first, second = await receive_turn(session), await receive_turn(session)
    # Had SILENT produced output, a booking turn would come first and the empty turn would answer again.
    assert first.text() == 'Booking update: {"status": "booked"}'
    assert second.text() == "echo: probe"


@pytest.mark.parametrize(
    ("scheduling", "story_kinds"),
    [
        ("WHEN_IDLE", ["text", "generation_complete", "turn_complete"]),  # the answer waits for the story
        ("INTERRUPT", ["text", "interrupted", "turn_complete"]),  # the story is cut, then the answer
    ],
)
async def test_result_during_another_turn_follows_its_scheduling(
    semantics_server: Server, scheduling: str, story_kinds: list[str]
) -> None:
    async with semantics_server.client().aio.live.connect(model=MODEL, config=booking_config()) as session:
        call = await book(session)
        await say(session, STORY)
        story = await receive_until(session, "text")
        await answer(session, call, response={"status": "booked"}, scheduling=scheduling)
        await receive_turn(session, story)
        update = await receive_turn(session)
    assert story.kinds() == story_kinds
    assert story.text().endswith("and the end.") == (scheduling == "WHEN_IDLE")
    assert update.kinds() == ["text", "generation_complete", "turn_complete"]
    assert update.text() == 'Booking update: {"status": "booked"}'


async def test_will_continue_streams_results_for_one_call(semantics_server: Server) -> None:
    async with semantics_server.client().aio.live.connect(model=MODEL, config=booking_config()) as session:
        call = await book(session)
        await answer(session, call, response={"progress": "50%"}, will_continue=True)
        first = await receive_turn(session)
        await answer(session, call, response={"progress": "90%"}, will_continue=True)
        second = await receive_turn(session)
        # The documented way to end the stream without another answer; the call is then closed.
        await answer(session, call, response={}, will_continue=False, scheduling="SILENT")
        await answer(session, call, response={"progress": "too late"})
        await say(session, "echo probe")
        probe = await receive_turn(session)
    assert first.text() == 'Booking update: {"progress": "50%"}'
    assert second.text() == 'Booking update: {"progress": "90%"}'
    assert probe.kinds() == ["text", "generation_complete", "turn_complete"]
    assert probe.text() == "echo: probe"


async def test_a_new_user_turn_leaves_a_non_blocking_call_open(semantics_server: Server) -> None:
    async with semantics_server.client().aio.live.connect(model=MODEL, config=booking_config()) as session:
        call = await book(session)
        await say(session, STORY)
        story = await receive_until(session, "text")
        await say(session, "echo meanwhile")
        await receive_turn(session, story)
        meanwhile = await receive_turn(session)
        await answer(session, call, response={"status": "booked"})
        update = await receive_turn(session)
    assert story.kinds() == ["text", "interrupted", "turn_complete"]  # no toolCallCancellation
    assert meanwhile.text() == "echo: meanwhile"
    assert update.text() == 'Booking update: {"status": "booked"}'


async def test_function_response_parts_reach_the_model(semantics_server: Server) -> None:
    png = b"\x89PNG\r\n\x1a\n"
    part = types.FunctionResponsePart(inline_data=types.FunctionResponseBlob(mime_type="image/png", data=png))
    async with semantics_server.client().aio.live.connect(model=MODEL, config=booking_config()) as session:
        call = await book(session)
        await answer(session, call, response={"status": "booked"}, parts=[part])
        update = await receive_turn(session)
    status = json.dumps({"status": "booked"})
    assert update.text() == f"Booking update: {status} [image/png: 8 bytes]"


async def test_non_blocking_function_called_from_code_returns_at_once(semantics_server: Server) -> None:
    """The code gets None without waiting; the result comes later and is answered by its scheduling."""
    cfg = config(declare("book_table", non_blocking=True), code=True)
    async with semantics_server.client().aio.live.connect(model=MODEL, config=cfg) as session:
        await say(session, "book from code")
        turn = await receive_turn(session)
        ((call,),) = turn.of("tool_call")
        await answer(session, call, response={"status": "booked"})
        update = await receive_turn(session)
    assert turn.kinds() == ["code", "tool_call", "result", "text", "generation_complete", "turn_complete"]
    assert call.name == "book_table" and call.args == {"people": 3}
    assert turn.of("result") == [(types.Outcome.OUTCOME_OK, "None\n")]
    assert update.text() == 'Booking update: {"status": "booked"}'


async def next_update(session: live.AsyncSession) -> types.LiveServerSessionResumptionUpdate:
    async for msg in session.receive():
        if msg.session_resumption_update:
            return msg.session_resumption_update
    raise AssertionError("the turn ended without a sessionResumptionUpdate")


async def test_an_open_non_blocking_call_makes_the_session_not_resumable(semantics_server: Server) -> None:
    """Its results would be lost on another connection; once it is answered the session resumes again."""
    cfg = booking_config()
    cfg.session_resumption = types.SessionResumptionConfig()
    async with semantics_server.client().aio.live.connect(model=MODEL, config=cfg) as session:
        call = await book(session)
        pending = await next_update(session)
        await answer(session, call, response={"status": "booked"})
        await receive_turn(session)
        answered = await next_update(session)
    assert not pending.resumable and not pending.new_handle
    assert answered.resumable and answered.new_handle
