"""The openai backend against a real OpenAI-compatible server (llama_cpp.server with SmolLM2), and its
failure modes against real failures: a killed upstream, a refused connection, 4xx answers, a stall."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from live.backends.base import (
    CodeCall,
    Finish,
    FunctionCallRequest,
    FunctionCalls,
    ModelEvent,
    ModelRequest,
    TextDelta,
    Usage,
)
from live.backends.chat_format import RUN_PYTHON
from live.backends.errors import BackendError
from live.backends.openai_compat import OpenAIBackend, OpenAIUpstreamConfig
from protocol import CodeExecutionResult, Content, ExecutableCode, FunctionDeclaration, GenerationConfig, Part
from tests.llama_upstream import Upstream, free_port, start_upstream

pytest.importorskip("llama_cpp.server")
pytestmark = pytest.mark.llama

GREEDY = GenerationConfig(temperature=0, seed=0, max_output_tokens=200)
WEATHER = FunctionDeclaration(
    name="get_weather",
    description="Current weather in a city",
    parameters={"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]},
)
SECRET = "sk-upstream-secret-123"
STALL_S = 60.0  # no test may take this long: a hang fails instead of blocking CI


def forced(name: str) -> dict[str, Any]:
    """llama_cpp.server's chatml-function-calling picks "message" in auto mode with SmolLM2; an extra_body
    tool_choice forces the call, so the tool-call path is exercised deterministically."""
    return {"tool_choice": {"type": "function", "function": {"name": name}}}


@pytest.fixture(scope="module")
def plain_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    """The GGUF's own chat template and an API key, as a real deployment would have."""
    upstream = start_upstream(tmp_path_factory.mktemp("up") / "plain.log", api_key=SECRET, n_ctx=2048)
    yield upstream
    upstream.kill()


def backend(upstream: Upstream | str, **config: Any) -> OpenAIBackend:
    base_url = upstream if isinstance(upstream, str) else upstream.base_url
    defaults: dict[str, Any] = {"base_url": base_url, "model": "smollm2", "retry_backoff_s": 0.05}
    return OpenAIBackend(OpenAIUpstreamConfig(**(defaults | config)))


def ask(text: str, history: list[Content] | None = None, **kwargs: Any) -> ModelRequest:
    turns = [*(history or []), Content(role="user", parts=[Part(text=text)])]
    return ModelRequest(model="smollm2", history=turns, generation=kwargs.pop("generation", GREEDY), **kwargs)


async def collect(events: AsyncIterator[ModelEvent]) -> list[ModelEvent]:
    async with asyncio.timeout(STALL_S):
        return [event async for event in events]


async def failure(model: OpenAIBackend, request: ModelRequest) -> BackendError:
    try:
        with pytest.raises(BackendError) as caught:
            await collect(model.stream(request))
    finally:
        await model.close()
    error = caught.value
    assert (
        len(error.reason.encode()) <= 123 and SECRET not in error.reason and "Traceback" not in error.reason
    )
    return error


def text_of(events: list[ModelEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def code_turn(prompt_text: str, code: str, output: str) -> list[Content]:
    return [
        Content(role="user", parts=[Part(text=prompt_text)]),
        Content(
            role="model",
            parts=[
                Part(executable_code=ExecutableCode(code=code)),
                Part(code_execution_result=CodeExecutionResult(outcome="OUTCOME_OK", output=output)),
            ],
        ),
    ]


async def test_tool_mode_code_call(tools_upstream: Upstream) -> None:
    """SmolLM2 often breaks the JSON of the arguments: then their raw text is the code, which fails in the
    sandbox and the model sees why. Either way the streamed pieces carry the model's program."""
    model = backend(tools_upstream, extra_body=forced(RUN_PYTHON))
    events = await collect(model.stream(ask("Print 2**100 with Python.", code_execution=True)))
    await model.close()
    assert all(isinstance(e, TextDelta | Usage) for e in events[:-1])
    assert isinstance(events[-1], CodeCall) and "print(2**100)" in events[-1].code


async def test_tool_mode_function_call(tools_upstream: Upstream) -> None:
    model = backend(tools_upstream, extra_body=forced("get_weather"))
    events = await collect(model.stream(ask("What is the weather in Paris?", functions=[WEATHER])))
    await model.close()
    assert isinstance(events[-1], FunctionCalls)
    (call,) = events[-1].calls
    assert call == FunctionCallRequest("get_weather", {"city": "Paris"})  # JSON streamed token by token


async def test_tool_mode_continues_after_the_tool_result(tools_upstream: Upstream) -> None:
    model = backend(tools_upstream)
    history = code_turn("Print 2**100 with Python.", "print(2**100)", f"{2**100}\n")
    events = await collect(model.stream(ask("And what was printed?", history, code_execution=True)))
    await model.close()
    assert text_of(events)
    assert isinstance(events[-1], Finish)  # llama_cpp.server streams no usage; other servers do


async def test_fenced_mode_code_call_and_continuation(plain_upstream: Upstream) -> None:
    model = backend(plain_upstream, api_key=SECRET, code_mode="fenced")
    prompt_text = "What is 2**100? Compute it with Python."
    first = await collect(model.stream(ask(prompt_text, code_execution=True)))
    assert isinstance(first[-1], CodeCall) and first[-1].code.strip()
    assert "```" not in text_of(first)
    history = code_turn(prompt_text, first[-1].code, f"{2**100}\n")
    history[1].parts.insert(0, Part(text=text_of(first)))
    history.append(Content(role="user", parts=[Part(text="Thanks. Say it in one sentence.")]))
    request = ModelRequest(model="smollm2", history=history, code_execution=True, generation=GREEDY)
    events = await collect(model.stream(request))
    await model.close()
    assert any(isinstance(e, TextDelta | CodeCall) for e in events)
    assert isinstance(events[-1], Finish | CodeCall)


async def test_wrong_api_key_is_a_policy_close(plain_upstream: Upstream) -> None:
    error = await failure(backend(plain_upstream, api_key="wrong"), ask("Hi"))
    assert error.code == 1008 and "401" in error.reason


async def test_unknown_path_is_a_policy_close(plain_upstream: Upstream) -> None:
    url = plain_upstream.base_url.replace("/v1", "/nope/v1")
    error = await failure(backend(url, api_key=SECRET), ask("Hi"))
    assert error.code == 1008 and "404" in error.reason


async def test_server_error_is_retried_then_an_internal_close(plain_upstream: Upstream) -> None:
    generation = GenerationConfig(
        presence_penalty=5.0
    )  # llama_cpp.server answers its validation errors with 500
    error = await failure(
        backend(plain_upstream, api_key=SECRET, retries=1), ask("Hi", generation=generation)
    )
    assert error.code == 1011 and "500" in error.reason


async def test_upstream_failing_after_the_stream_started(plain_upstream: Upstream) -> None:
    """llama_cpp.server answers 200, then its generator raises (prompt over n_ctx) and the stream ends
    without a finish_reason: an incomplete answer is an error, not a short reply."""
    error = await failure(backend(plain_upstream, api_key=SECRET), ask("word " * 3000))
    assert error.code == 1011 and "mid-response" in error.reason


async def test_connection_refused_fails_fast_after_retries() -> None:
    started = time.monotonic()
    error = await failure(backend(f"http://127.0.0.1:{free_port()}/v1", retries=2), ask("Hi"))
    assert error.code == 1011 and "unreachable" in error.reason
    assert time.monotonic() - started < 10


async def test_upstream_killed_mid_stream(tmp_path: Path) -> None:
    upstream = start_upstream(tmp_path / "doomed.log")
    model = backend(upstream)
    long_story = ask(
        "Write a very long story about a dragon.", generation=GenerationConfig(max_output_tokens=2000)
    )
    deltas = 0
    try:
        with pytest.raises(BackendError) as caught:
            async with asyncio.timeout(STALL_S):
                async for event in model.stream(long_story):
                    deltas += isinstance(event, TextDelta)
                    if deltas == 3:
                        upstream.kill()
    finally:
        upstream.kill()
        await model.close()
    assert deltas >= 3
    assert caught.value.code == 1011 and "broke off" in caught.value.reason


async def test_stalled_upstream_times_out() -> None:
    """A server that accepts the request and never answers: the backend gives up at its deadline."""
    done = asyncio.Event()

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await done.wait()
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    started = time.monotonic()
    try:
        error = await failure(backend(f"http://127.0.0.1:{port}/v1", timeout_s=1.0), ask("Hi"))
    finally:
        done.set()
        server.close()
        await server.wait_closed()
    assert error.code == 1011 and "timed out" in error.reason
    assert time.monotonic() - started < 10


def test_config_names_and_secret() -> None:
    config = OpenAIUpstreamConfig(base_url="http://x/v1", model="Qwen/Qwen2.5-7B", api_key=SECRET)
    assert config.name == "Qwen/Qwen2.5-7B"
    assert SECRET not in repr(config) and SECRET not in json.dumps(config.model_dump(mode="json"))
    assert OpenAIUpstreamConfig(base_url="http://x/v1", model="m", served_name="fast").name == "fast"
