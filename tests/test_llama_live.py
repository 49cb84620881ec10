"""The embedded llama.cpp default (real SmolLM2 weights) behind a real server, through the SDK."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from google.genai import types

from tests.conftest import Server, start_server
from tests.live_helpers import ask, assert_real_result, receive_turn, scrape

pytestmark = pytest.mark.llama


@pytest.fixture(scope="module")
def llama_server(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(certs, tmp_path_factory.mktemp("logs") / "llama.log")  # the default backend
    yield srv
    srv.stop()


async def test_llama_writes_code_that_really_runs(llama_server: Server) -> None:
    config = types.LiveConnectConfig(
        response_modalities=[types.Modality.TEXT],
        tools=[{"code_execution": {}}],
        temperature=0.0,
        seed=7,
        max_output_tokens=200,
    )
    async with llama_server.client().aio.live.connect(
        model="gemini-live-2.5-flash-preview", config=config
    ) as s:
        turn = await ask(s, "Write Python code that prints the sum of the numbers from 1 to 100.")
    kinds = turn.kinds()
    assert "code" in kinds, turn.events
    first = kinds.index("code")
    assert kinds[first + 1] == "result"
    assert kinds[-2:] == ["generation_complete", "turn_complete"]
    # Every result is the real output of the code shown just before it.
    codes, results = turn.of("code"), turn.of("result")
    assert len(codes) == len(results)
    for code, (outcome, output) in zip(codes, results, strict=True):
        assert_real_result(code, outcome, output)
    usage = turn.of("turn_complete")[0]
    assert usage.prompt_token_count > 0 and usage.response_token_count > 0


async def test_unknown_model_closes_1008(llama_server: Server) -> None:
    from google.genai import errors

    config = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT])
    with pytest.raises(errors.APIError) as closed:
        async with llama_server.client().aio.live.connect(model="no-such-model", config=config) as s:
            await ask(s, "hi")
    assert closed.value.code == 1008
    assert "models/no-such-model is not found" in str(closed.value)


def test_models_lists_the_default(llama_server: Server) -> None:
    import httpx

    response = httpx.get(f"{llama_server.url}/v1beta/models", headers={"x-goog-api-key": "test-key"},
                         verify=llama_server.ssl_context())  # fmt: skip
    assert [m["name"] for m in response.json()["models"]] == ["models/smollm2-135m-instruct"]


async def test_interruption_stops_generation(llama_server: Server) -> None:
    """After `interrupted` arrives, the embedded model samples no more tokens: the next generation (the
    backend has a single worker, so it starts only once the old one returned) accounts for every token
    sampled after the acknowledgement."""
    key = 'openlive_model_tokens_sampled_total{model="smollm2-135m-instruct"}'
    config = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT], max_output_tokens=1000)
    model = "gemini-live-2.5-flash-preview"
    async with llama_server.client().aio.live.connect(model=model, config=config) as s:
        start = scrape(llama_server.url, llama_server.ssl_context())[key]
        prompt = "Write a very long story about a dragon, with many chapters."
        await s.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=prompt)]))
        async for msg in s.receive():
            if msg.text:
                break  # the model is generating
        # New content (not completing a turn) interrupts without starting another generation.
        await s.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="stop")]),
                                    turn_complete=False)  # fmt: skip
        turn = await receive_turn(s)
        assert "interrupted" in turn.kinds()
        at_ack = scrape(llama_server.url, llama_server.ssl_context())[key]
    short = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT], max_output_tokens=4)
    async with llama_server.client().aio.live.connect(model=model, config=short) as s:
        usage = (await ask(s, "Hi")).of("turn_complete")[0]
    later = scrape(llama_server.url, llama_server.ssl_context())[key]
    assert later == at_ack + usage.response_token_count
    assert 0 < at_ack - start < 1000  # it was generating, and stopped well before its limit
