"""User input over the real SDK: activity configuration, seeded history, turnCompleteReason."""

from __future__ import annotations

import pytest
from google.genai import errors, live, types

from tests.conftest import Server
from tests.live_helpers import ask, receive_turn

pytestmark = pytest.mark.timeout(60)  # a lost message hangs a receive: fail instead
MODEL = "gemini-live-2.5-flash-preview"
TEXT = [types.Modality.TEXT]


def manual(coverage: types.TurnCoverage | None = None) -> types.LiveConnectConfig:
    """Activity marked by the client (automatic detection off)."""
    return types.LiveConnectConfig(
        response_modalities=TEXT,
        realtime_input_config=types.RealtimeInputConfig(
            automatic_activity_detection=types.AutomaticActivityDetection(disabled=True),
            turn_coverage=coverage,
        ),
    )


async def closes(session: live.AsyncSession) -> errors.APIError:
    with pytest.raises(errors.APIError) as closed:
        await receive_turn(session)
    return closed.value


async def test_all_input_coverage_joins_text_sent_before_the_activity(semantics_server: Server) -> None:
    config = manual(types.TurnCoverage.TURN_INCLUDES_ALL_INPUT)
    async with semantics_server.client().aio.live.connect(model=MODEL, config=config) as session:
        await session.send_realtime_input(text="echo early")
        await session.send_realtime_input(activity_start=types.ActivityStart())
        await session.send_realtime_input(text=" and late")
        await session.send_realtime_input(activity_end=types.ActivityEnd())
        turn = await receive_turn(session)
    assert turn.text() == "echo: early and late"


async def test_input_while_the_user_holds_the_floor_is_answered_after_it(semantics_server: Server) -> None:
    """A clientContent sent during an open activity starts no turn until `activityEnd`; then it is
    answered, and the activity's own turn after it, in the order they came."""
    async with semantics_server.client().aio.live.connect(model=MODEL, config=manual()) as session:
        await session.send_realtime_input(activity_start=types.ActivityStart())
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="echo held")]), turn_complete=True
        )
        await session.send_realtime_input(text="echo inside")
        await session.send_realtime_input(activity_end=types.ActivityEnd())
        held = await receive_turn(session)
        inside = await receive_turn(session)
    assert (held.text(), inside.text()) == ("echo: held", "echo: inside")
    (usage,) = inside.of("turn_complete")  # the second turn read the first, and its answer
    read = ["echo held", "echo: held", "echo inside"]
    assert usage.prompt_token_count == len(" ".join(read).split())


async def test_text_outside_an_activity_is_refused_not_lost(semantics_server: Server) -> None:
    async with semantics_server.client().aio.live.connect(model=MODEL, config=manual()) as session:
        await session.send_realtime_input(text="echo nowhere")
        closed = await closes(session)
    assert closed.code == 1007 and "TURN_INCLUDES_ALL_INPUT" in str(closed)


async def test_activity_marks_need_automatic_detection_off(semantics_server: Server) -> None:
    config = types.LiveConnectConfig(response_modalities=TEXT)
    async with semantics_server.client().aio.live.connect(model=MODEL, config=config) as session:
        await session.send_realtime_input(activity_start=types.ActivityStart())
        closed = await closes(session)
    assert closed.code == 1007 and "automaticActivityDetection.disabled" in str(closed)


async def test_initial_history_is_seeded_without_generating(semantics_server: Server) -> None:
    config = types.LiveConnectConfig(
        response_modalities=TEXT, history_config=types.HistoryConfig(initial_history_in_client_content=True)
    )
    seed = [
        types.Content(role="user", parts=[types.Part(text="echo seeded question")]),
        types.Content(role="model", parts=[types.Part(text="seeded answer")]),
    ]
    async with semantics_server.client().aio.live.connect(model=MODEL, config=config) as session:
        await session.send_client_content(turns=seed, turn_complete=True)
        turn = await ask(session, "echo now")
    # Nothing was generated for the seed (the first turn is the one asked for), yet the model read it.
    assert turn.kinds() == ["text", "generation_complete", "turn_complete"] and turn.text() == "echo: now"
    (usage,) = turn.of("turn_complete")
    read = [part.text or "" for content in seed for part in content.parts or []] + ["echo now"]
    assert usage.prompt_token_count == len(" ".join(read).split())


async def test_a_call_to_an_undeclared_function_ends_the_turn_as_malformed(semantics_server: Server) -> None:
    config = types.LiveConnectConfig(
        response_modalities=TEXT,
        tools=[types.Tool(function_declarations=[types.FunctionDeclaration(name="get_weather")])],
    )
    async with semantics_server.client().aio.live.connect(model=MODEL, config=config) as session:
        turn = await ask(session, "call a ghost")
        normal = await ask(session, "echo fine")
    assert turn.kinds() == ["generation_complete", "turn_complete"]
    assert turn.turn_complete_reasons == [types.TurnCompleteReason.MALFORMED_FUNCTION_CALL]
    assert normal.turn_complete_reasons == [None]
