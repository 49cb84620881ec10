"""The google-genai SDK against a real openlive server over wss://: the core Live paths end to end."""

from __future__ import annotations

import asyncio
import io

import matplotlib.image
import pytest
from google.genai import types

from live.backends.scripted import DEFAULT_SCRIPT
from tests.conftest import Server
from tests.live_helpers import SEED_PROMPT, ask, is_png, receive_turn, scrape, text_config, until_code_runs

MODEL = "gemini-live-2.5-flash-preview"


async def test_seed_example_runs_real_code(server: Server) -> None:
    async with server.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        assert session.session_id  # setupComplete carries the session id
        turn = await ask(session, SEED_PROMPT)
    assert turn.kinds() == ["text", "code", "result", "text", "generation_complete", "turn_complete"]
    (code,) = turn.of("code")
    assert "while len(primes) < 50" in code
    (outcome, output) = turn.of("result")[0]
    assert outcome == types.Outcome.OUTCOME_OK
    assert output.strip() == "5117"
    assert "5117" in "".join(
        v for k, v in turn.events[turn.events.index(("result", (outcome, output))) :] if k == "text"
    )
    # Honest: the number comes from running the code, not from the script.
    assert "5117" not in DEFAULT_SCRIPT.read_text()
    (usage,) = turn.of("turn_complete")
    # The scripted model counts words: the prompt, then what the code step fed back (text, code, output).
    assert usage.prompt_token_count == len(SEED_PROMPT.split())
    said = "".join(v for k, v in turn.events[: turn.events.index(("code", code))] if k == "text")
    fed_back = " ".join([said, code, output])
    assert usage.tool_use_prompt_token_count == len(fed_back.split())
    assert usage.total_token_count == (
        usage.prompt_token_count + usage.tool_use_prompt_token_count + usage.response_token_count
    )


async def test_the_answer_follows_the_code_not_the_script(server: Server) -> None:
    async with server.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        turn = await ask(session, "What is the sum of the first 10 prime numbers?")
    assert turn.of("result") == [(types.Outcome.OUTCOME_OK, "129\n")]
    assert "is 129." in turn.text()


async def test_plot_returns_png(server: Server) -> None:
    async with server.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        turn = await ask(session, "Please plot sin and cos for me")
    assert turn.kinds()[:4] == ["text", "code", "result", "image"]
    ((mime, data),) = turn.of("image")
    assert mime == "image/png" and is_png(data)
    pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100


async def test_failing_code_is_regenerated_at_most_five_times(server: Server) -> None:
    async with server.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        turn = await ask(session, "show me some code that will fail")
        results = turn.of("result")
        assert len(turn.of("code")) == 5 and len(results) == 5
        for outcome, output in results:
            assert outcome == types.Outcome.OUTCOME_FAILED
            assert "Traceback (most recent call last)" in output and "ZeroDivisionError" in output
            assert "about to divide" in output  # stdout before the failure is kept
        assert "ZeroDivisionError" in turn.text()  # the model got the error and answered without code
        assert turn.kinds()[-2:] == ["generation_complete", "turn_complete"]
        assert turn.turn_complete_reasons == [types.TurnCompleteReason.MAX_REGENERATION_REACHED]
        # The session is still usable afterwards.
        again = await ask(session, "hello")
        assert "scripted demo model" in again.text()


async def test_without_the_code_tool_no_code_runs(server: Server) -> None:
    config = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT])
    async with server.client().aio.live.connect(model=MODEL, config=config) as session:
        turn = await ask(session, SEED_PROMPT)
    assert turn.of("code") == [] and turn.of("result") == []
    assert turn.kinds()[-2:] == ["generation_complete", "turn_complete"]


WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Weather for a city",
    parameters=types.Schema(
        type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)}
    ),
)


async def test_function_call_round_trip(server: Server) -> None:
    config = text_config([types.Tool(function_declarations=[WEATHER])])
    async with server.client().aio.live.connect(model=MODEL, config=config) as session:
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="What is the weather in Paris?")])
        )
        first = await receive_turn_until_tool_call(session)
        ((call,),) = first
        assert call.name == "get_weather" and call.args == {"city": "Paris"}
        assert call.id and call.id.startswith("function-call-")
        await session.send_tool_response(
            function_responses=[
                types.FunctionResponse(id=call.id, name=call.name, response={"forecast": "sunny, 24C"})
            ]
        )
        turn = await receive_turn(session)
    assert "sunny, 24C" in turn.text()
    assert turn.kinds()[-2:] == ["generation_complete", "turn_complete"]


async def receive_turn_until_tool_call(session: object) -> list[list[types.FunctionCall]]:
    """receive() does not stop at a toolCall, so read messages until one arrives."""
    calls: list[list[types.FunctionCall]] = []
    async for msg in session.receive():  # type: ignore[attr-defined]
        if msg.tool_call:
            calls.append(msg.tool_call.function_calls)
            break
    return calls


async def test_code_calls_client_function_mid_run(test_server: Server) -> None:
    lights = types.FunctionDeclaration(name="turn_on_the_lights", description="Lights on")
    config = text_config([{"code_execution": {}}, types.Tool(function_declarations=[lights])])
    async with test_server.client().aio.live.connect(model=MODEL, config=config) as session:
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="please turn on the lights")])
        )
        ((call,),) = await receive_turn_until_tool_call(session)
        assert call.name == "turn_on_the_lights" and call.args == {"room": "kitchen"}
        await session.send_tool_response(
            function_responses=[types.FunctionResponse(id=call.id, name=call.name, response={"result": "ok"})]
        )
        turn = await receive_turn(session)
    assert turn.of("result") == [(types.Outcome.OUTCOME_OK, "{'result': 'ok'}\n")]
    assert "Done: {'result': 'ok'}" in turn.text()


async def test_deadline_exceeded_keeps_partial_output(test_server: Server) -> None:
    async with test_server.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        turn = await ask(session, "sleep forever")
    outcome, output = turn.of("result")[0]
    assert outcome == types.Outcome.OUTCOME_DEADLINE_EXCEEDED
    assert "going to sleep" in output


async def test_new_content_interrupts_running_code(test_server: Server) -> None:
    async with test_server.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        await until_code_runs(session, "sleep forever")
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="echo after")])
        )
        interrupted = await receive_turn(session)
        assert interrupted.kinds() == ["interrupted", "turn_complete"]
        turn = await receive_turn(session)
    assert turn.text() == "echo: after"


async def test_realtime_text_and_incremental_client_content(test_server: Server) -> None:
    async with test_server.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        await session.send_realtime_input(text="echo from realtime")
        assert (await receive_turn(session)).text() == "echo: from realtime"
        # turnComplete false accumulates; the turn runs on the content that completes it.
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="ignored")]), turn_complete=False
        )
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="echo last")])
        )
        assert (await receive_turn(session)).text() == "echo: last"


async def test_input_file_reaches_the_code(test_server: Server) -> None:
    csv = b"name,qty\napples,3\npears,4\n"
    async with test_server.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        await session.send_client_content(
            turns=types.Content(
                role="user",
                parts=[
                    types.Part(
                        inline_data=types.Blob(data=csv, mime_type="text/csv", display_name="data.csv")
                    ),
                    types.Part(text="read the csv"),
                ],
            )
        )
        turn = await receive_turn(session)
    assert turn.of("result") == [(types.Outcome.OUTCOME_OK, "7\n")]


async def test_each_figure_is_one_png_part(test_server: Server) -> None:
    async with test_server.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        turn = await ask(session, "two figures please")
    images = turn.of("image")
    assert len(images) == 2 and all(mime == "image/png" and is_png(data) for mime, data in images)


async def test_sessions_run_concurrently(server: Server) -> None:
    """Four sessions hold a turn open at one moment: each has its toolCall before any is answered (a server
    that ran sessions one after another would never get there), and the server counts four active."""
    cities = ["Paris", "Oslo", "Lima", "Cairo"]
    config = text_config([types.Tool(function_declarations=[WEATHER])])
    before = scrape(server.url, server.ssl_context())
    all_waiting = asyncio.Barrier(len(cities))
    during: dict[str, float] = {}

    async def one(city: str) -> str:
        async with server.client().aio.live.connect(model=MODEL, config=config) as session:
            await session.send_client_content(
                turns=types.Content(role="user", parts=[types.Part(text=f"What is the weather in {city}?")])
            )
            ((call,),) = await receive_turn_until_tool_call(session)
            assert call.args == {"city": city}
            if await all_waiting.wait() == 0:  # one of the four reads the server while all wait
                during.update(await asyncio.to_thread(scrape, server.url, server.ssl_context()))
            await all_waiting.wait()
            forecast = {"forecast": f"sun in {city}"}
            await session.send_tool_response(
                function_responses=[types.FunctionResponse(id=call.id, name=call.name, response=forecast)]
            )
            return (await receive_turn(session)).text()

    texts = await asyncio.wait_for(asyncio.gather(*(one(city) for city in cities)), 60)
    for key in ("openlive_sessions_active", "openlive_turns_total"):
        assert during[key] - before.get(key, 0) == len(cities), key
    assert all(f"sun in {city}" in text for city, text in zip(cities, texts, strict=True))


async def test_code_runs_per_turn_are_capped(test_server: Server) -> None:
    """A model that keeps writing (working) code still finishes its turn: at most 10 runs."""
    async with test_server.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        turn = await ask(session, "do twelve runs")
    assert [output for _, output in turn.of("result")] == [f"{i}\n" for i in range(1, 11)]
    assert turn.text() == "last output 10"


async def test_context_update_changes_tools_mid_session(server: Server) -> None:
    async with server.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        assert len((await ask(session, SEED_PROMPT)).of("code")) == 1
        await session.send_context_update(tools=[])  # clears every tool
        assert (await ask(session, SEED_PROMPT)).of("code") == []
        await session.send_context_update(tools=[types.Tool(code_execution=types.ToolCodeExecution())])
        assert len((await ask(session, SEED_PROMPT)).of("code")) == 1


async def test_metrics_count_sessions_turns_code_and_closes(server: Server) -> None:
    before = scrape(server.url, server.ssl_context())
    async with server.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        await ask(session, SEED_PROMPT)
        await ask(session, "show me code that will fail")
        during = scrape(server.url, server.ssl_context())
    after = scrape(server.url, server.ssl_context())

    def delta(key: str, at: dict[str, float] = after) -> float:
        return at.get(key, 0) - before.get(key, 0)

    assert delta("openlive_sessions_total") == 1 and delta("openlive_turns_total") == 2
    assert delta("openlive_sessions_active", during) == 1
    assert delta('openlive_code_runs_total{outcome="OUTCOME_OK"}') == 1
    assert delta('openlive_code_runs_total{outcome="OUTCOME_FAILED"}') == 5
    assert delta("openlive_sandbox_jobs_total") == 6
    assert after["openlive_sandbox_slots"] >= 1


async def test_unnamed_attachments_get_the_names_the_model_is_told(test_server: Server) -> None:
    png = b"\x89PNG\r\n\x1a\n"
    csv = b"name,qty\nfigs,5\ndates,6\n"
    async with test_server.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        await session.send_client_content(turns=types.Content(role="user", parts=[
            types.Part(inline_data=types.Blob(data=png, mime_type="image/png")),
            types.Part(inline_data=types.Blob(data=b"\0\0", mime_type="audio/pcm;rate=16000")),  # media
            types.Part(inline_data=types.Blob(data=csv, mime_type="text/csv")),
            types.Part(text="sum the unnamed csv"),
        ]))  # fmt: skip
        turn = await receive_turn(session)
    assert turn.of("result") == [(types.Outcome.OUTCOME_OK, "['input_file_0.png', 'input_file_1.csv']\n11\n")]


async def test_long_text_is_split_under_the_message_limit(test_server: Server) -> None:
    """2 MB of text without a space (here echoed back) reaches the SDK, whose frames are capped at 1 MiB."""
    word = "x" * (2 * 1024 * 1024)
    async with test_server.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        turn = await ask(session, f"echo {word}")
        assert turn.text() == f"echo: {word}"
        assert len(turn.of("text")) >= 3
        assert (await ask(session, "echo still here")).text() == "echo: still here"


async def test_a_message_over_the_limit_closes_1011_not_abnormally(test_server: Server) -> None:
    """2 MB of model-written code cannot travel (code is not split): a clean 1011; the server serves on."""
    from google.genai import errors

    word = "y" * (2 * 1024 * 1024)
    with pytest.raises(errors.APIError) as closed:
        async with test_server.client().aio.live.connect(model=MODEL, config=text_config()) as session:
            await ask(session, f"count the characters of {word}")
    assert closed.value.code == 1011 and "Internal error" in str(closed.value)
    async with test_server.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        assert (await ask(session, "echo fine")).text() == "echo: fine"
