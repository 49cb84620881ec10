"""Time to first token: straight to an OpenAI-compatible upstream versus through openlive's openai backend.

The difference is the backend's own overhead (request conversion, stream parsing, event mapping). Both
paths send the same messages, alternately, so upstream prompt caching favours neither.

    python bench/bench_upstream.py                      # starts llama_cpp.server with SmolLM2
    python bench/bench_upstream.py --base-url http://host:8000/v1 --model NAME
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import openai
from openai.types.chat import ChatCompletionChunk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.llama_upstream

from live.backends.base import ModelRequest, TextDelta
from live.backends.chat_format import sampling, to_chat
from live.backends.openai_compat import OpenAIBackend, OpenAIUpstreamConfig
from protocol import Content, GenerationConfig, Part
from tests.llama_upstream import start_upstream

PROMPT = "Name three colours."


async def direct_ttft(client: openai.AsyncOpenAI, model: str, request: ModelRequest) -> float:
    chat = to_chat(request, "tools")
    started = time.perf_counter()
    stream: openai.AsyncStream[ChatCompletionChunk] = await client.chat.completions.create(
        model=model, messages=cast(Any, chat.messages), stream=True, **sampling(request.generation)
    )
    try:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                return time.perf_counter() - started
    finally:
        await stream.close()
    raise RuntimeError("the upstream sent no text")


async def backend_ttft(backend: OpenAIBackend, request: ModelRequest) -> float:
    started = time.perf_counter()
    events = backend.stream(request)
    try:
        async for event in events:
            if isinstance(event, TextDelta) and event.text:
                return time.perf_counter() - started
    finally:
        await events.aclose()
    raise RuntimeError("the backend yielded no text")


async def run(base_url: str, model: str, api_key: str, runs: int, max_tokens: int) -> None:
    generation = GenerationConfig(temperature=0, max_output_tokens=max_tokens)
    request = ModelRequest(
        model=model, history=[Content(role="user", parts=[Part(text=PROMPT)])], generation=generation
    )
    config = OpenAIUpstreamConfig(base_url=base_url, model=model, api_key=api_key)
    backend = OpenAIBackend(config)
    client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0)
    times: dict[str, list[float]] = {"direct": [], "backend": []}
    try:
        for i in range(runs + 1):  # round 0 warms the upstream's prompt cache and is dropped
            for name in ("direct", "backend") if i % 2 else ("backend", "direct"):
                if name == "direct":
                    value = await direct_ttft(client, model, request)
                else:
                    value = await backend_ttft(backend, request)
                if i:
                    times[name].append(value)
    finally:
        await backend.close()
        await client.close()
    direct, through = (statistics.median(times[k]) * 1000 for k in ("direct", "backend"))
    print(f"time to first token over {runs} runs (p50): upstream direct {direct:.1f} ms, ", end="")
    print(f"through the openai backend {through:.1f} ms, ratio {through / direct:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base-url", help="an upstream to use instead of starting llama_cpp.server")
    parser.add_argument("--model", default="smollm2", help="the upstream's model name")
    parser.add_argument("--api-key", default="unused")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    if args.base_url:
        asyncio.run(run(args.base_url, args.model, args.api_key, args.runs, args.max_tokens))
        return
    with tempfile.TemporaryDirectory() as tmp:
        upstream = start_upstream(Path(tmp) / "upstream.log")
        try:
            asyncio.run(run(upstream.base_url, args.model, args.api_key, args.runs, args.max_tokens))
        finally:
            upstream.kill()


if __name__ == "__main__":
    main()
