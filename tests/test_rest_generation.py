"""countTokens, models.get, and generation config honoured (stop sequences, max tokens) or refused by name."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from google.genai import errors, types

from tests.conftest import API_KEY, Server
from tests.test_rest import CODE, sync_client

MODEL = "gemini-2.5-flash"
TEN = "one two three four five six seven eight nine ten"


def generate(
    server: Server, config: types.GenerateContentConfig, text: str = "count to ten"
) -> types.GenerateContentResponse:
    with sync_client(server) as client:  # closed at once: a client left to the collector keeps its connection
        return client.models.generate_content(model=MODEL, contents=text, config=config)


def test_count_tokens_matches_what_generation_reports(rest_server: Server) -> None:
    with sync_client(rest_server) as client:
        counted = client.models.count_tokens(model=MODEL, contents="please count to ten now")
        assert counted.total_tokens == 5  # the scripted model's tokens are words
        used = client.models.generate_content(model=MODEL, contents="please count to ten now")
        assert used.usage_metadata and used.usage_metadata.prompt_token_count == counted.total_tokens


def test_models_get(rest_server: Server) -> None:
    with sync_client(rest_server) as client:
        model = client.models.get(model=MODEL)
        assert model.name == f"models/{MODEL}"
        assert {"generateContent", "streamGenerateContent", "countTokens"} <= set(
            model.supported_actions or []
        )


def test_stop_sequences_end_the_text_there(rest_server: Server) -> None:
    response = generate(rest_server, types.GenerateContentConfig(stop_sequences=["five"]))
    assert response.text == "one two three four "
    assert response.candidates and response.candidates[0].finish_reason == types.FinishReason.STOP


def test_a_stop_sequence_across_streamed_chunks_is_never_sent(rest_server: Server) -> None:
    with sync_client(rest_server) as client:
        config = types.GenerateContentConfig(stop_sequences=["four five"])  # the chunks split between them
        chunks = list(
            client.models.generate_content_stream(model=MODEL, contents="count to ten", config=config)
        )
        text = "".join(c.text or "" for c in chunks)
        assert text == "one two three "
        assert chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP


def test_max_output_tokens_cuts_the_turn_with_max_tokens(rest_server: Server) -> None:
    response = generate(rest_server, types.GenerateContentConfig(max_output_tokens=3))
    assert response.text == "one two three"
    assert response.candidates and response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert response.usage_metadata and response.usage_metadata.candidates_token_count == 3
    full = generate(rest_server, types.GenerateContentConfig(max_output_tokens=50))
    assert (
        full.text == TEN and full.candidates and full.candidates[0].finish_reason == types.FinishReason.STOP
    )


def test_max_output_tokens_is_the_whole_turns_budget(rest_server: Server) -> None:
    """The code step spends the 3 tokens; the answer after the result gets none, so the turn ends there."""
    config = types.GenerateContentConfig(tools=CODE.tools, max_output_tokens=3)
    response = generate(rest_server, config, "list the working directory")
    parts = (
        response.candidates[0].content.parts if response.candidates and response.candidates[0].content else []
    )
    assert [bool(p.executable_code) for p in parts or []] == [True, False]  # the code, its result, no text
    assert parts and parts[1].code_execution_result
    assert response.candidates and response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS


def test_a_call_to_an_undeclared_function_ends_malformed(rest_server: Server) -> None:
    weather = types.FunctionDeclaration(name="get_weather")
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[weather])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    response = generate(rest_server, config, "call a function you were not given")
    assert not response.function_calls  # never sent to the client
    assert (
        response.candidates
        and response.candidates[0].finish_reason == types.FinishReason.MALFORMED_FUNCTION_CALL
    )


def test_code_results_count_as_tool_use_prompt(rest_server: Server) -> None:
    response = generate(rest_server, CODE, "list the working directory")
    usage = response.usage_metadata
    # The second model call re-read the code (3 scripted tokens: words) and its result "[]" (1).
    assert usage and usage.tool_use_prompt_token_count == 4
    assert usage.total_token_count == (
        (usage.prompt_token_count or 0)
        + (usage.candidates_token_count or 0)
        + usage.tool_use_prompt_token_count
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (types.GenerateContentConfig(candidate_count=2), "candidateCount: only 1 candidate"),
        (
            types.GenerateContentConfig(response_logprobs=True),
            "generationConfig.responseLogprobs is not supported",
        ),
        (types.GenerateContentConfig(response_mime_type="application/json"), "not supported by this model"),
        (types.GenerateContentConfig(response_mime_type="text/x.enum"), "'text/x.enum' is not supported"),
        (
            types.GenerateContentConfig(response_schema={"type": "OBJECT"}),
            "responseSchema requires responseMimeType application/json",
        ),
        (
            types.GenerateContentConfig(response_mime_type="application/json", tools=CODE.tools),
            "Function calling with a response mime type: 'application/json' is unsupported",
        ),
        (types.GenerateContentConfig(response_modalities=["AUDIO"]), "responseModalities is not supported"),
        (
            types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True)),
            "thinkingConfig is not supported",
        ),
    ],
)
def test_what_cannot_be_honoured_is_refused_by_name(
    rest_server: Server, config: types.GenerateContentConfig, message: str
) -> None:
    with pytest.raises(errors.ClientError) as refused:
        generate(rest_server, config)
    assert refused.value.code == 400 and message in (refused.value.message or "")


async def test_live_setup_refuses_what_it_cannot_honour(rest_server: Server) -> None:
    client = rest_server.client()
    schema = {"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}}
    json_mode = types.GenerationConfig(response_mime_type="application/json", response_schema=schema)
    config = types.LiveConnectConfig(generation_config=json_mode)
    with pytest.raises(errors.APIError) as closed:
        async with client.aio.live.connect(model=MODEL, config=config) as session:
            async for _ in session.receive():
                pass
    assert closed.value.code == 1007 and "responseMimeType application/json" in str(closed.value.details)


class _Sandbox:
    """The server's running-job count, from /healthz."""

    def __init__(self, server: Server) -> None:
        self.url = f"{server.url}/healthz"
        self.verify = server.ssl_context()

    def running(self) -> int:
        count: int = httpx.get(self.url, verify=self.verify).json()["sandbox"]["running"]
        return count

    def reaches(self, want: int) -> bool:
        deadline = time.monotonic() + 15
        while self.running() != want and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.running() == want


SLEEP_LONG = {
    "contents": [{"role": "user", "parts": [{"text": "sleep long"}]}],
    "tools": [{"codeExecution": {}}],
}


def test_a_client_that_leaves_a_stream_cancels_the_turn_and_its_job(rest_server: Server) -> None:
    sandbox = _Sandbox(rest_server)
    url = f"{rest_server.url}/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"
    headers = {"x-goog-api-key": API_KEY}
    with httpx.stream("POST", url, json=SLEEP_LONG, headers=headers, verify=sandbox.verify) as response:
        lines = response.iter_lines()
        assert any("executableCode" in line for line in lines)
        assert sandbox.reaches(1)  # the job sleeps 25 s; the stream stays open meanwhile
        lines.close()  # closes the connection: the client goes away
    assert sandbox.reaches(0)  # the job went with the client, long before its 25 s


def test_a_client_that_stops_waiting_for_an_answer_cancels_the_job(rest_server: Server) -> None:
    sandbox = _Sandbox(rest_server)
    url = f"{rest_server.url}/v1beta/models/{MODEL}:generateContent"
    headers = {"x-goog-api-key": API_KEY}
    with ThreadPoolExecutor(1) as pool:
        gave_up = pool.submit(httpx.post, url, json=SLEEP_LONG, headers=headers, verify=sandbox.verify,
                              timeout=httpx.Timeout(10, read=4))  # fmt: skip
        assert sandbox.reaches(1)
        with pytest.raises(httpx.ReadTimeout):
            gave_up.result()  # the client closes its connection after 4 s without an answer
    assert sandbox.reaches(0)
