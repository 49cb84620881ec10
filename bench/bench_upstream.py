"""Time to first token: straight to an OpenAI-compatible upstream, through openlive's openai backend, and
through a running openlive server over a Live WebSocket (time to the first `serverContent` with text).

The differences are the backend's own overhead (request conversion, stream parsing, event mapping) and
the server's (frame parsing, session, engine, serialising). All paths send the same messages, in rotating
order, so upstream prompt caching favours none.

    python bench/bench_upstream.py                      # starts llama_cpp.server with SmolLM2
    python bench/bench_upstream.py --base-url http://host:8000/v1 --model NAME
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import openai
import websockets
from openai.types.chat import ChatCompletionChunk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.llama_upstream

from live.backends.base import ModelRequest, TextDelta
from live.backends.chat_format import sampling, to_chat
from live.backends.openai_compat import OpenAIBackend, OpenAIUpstreamConfig
from protocol import Content, GenerationConfig, Part
from tests.conftest import API_KEY, start_server
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


async def live_ttft(live_url: str, model: str, max_tokens: int) -> float:
    """A fresh session per run, so every path sends the same single-turn prompt."""
    setup = {"setup": {"model": f"models/{model}",
                       "generationConfig": {"temperature": 0, "maxOutputTokens": max_tokens}}}  # fmt: skip
    turn = {"clientContent": {"turns": [{"role": "user", "parts": [{"text": PROMPT}]}], "turnComplete": True}}
    async with websockets.connect(live_url, additional_headers={"x-goog-api-key": API_KEY}) as ws:
        await ws.send(json.dumps(setup))
        await ws.recv()  # setupComplete
        started = time.perf_counter()
        await ws.send(json.dumps(turn))
        async for raw in ws:
            content = json.loads(raw).get("serverContent", {})
            if any(p.get("text") for p in content.get("modelTurn", {}).get("parts", [])):
                return time.perf_counter() - started
    raise RuntimeError("openlive sent no text")


async def run(base_url: str, model: str, api_key: str, runs: int, max_tokens: int, live_url: str) -> None:
    generation = GenerationConfig(temperature=0, max_output_tokens=max_tokens)
    request = ModelRequest(
        model=model, history=[Content(role="user", parts=[Part(text=PROMPT)])], generation=generation
    )
    config = OpenAIUpstreamConfig(base_url=base_url, model=model, api_key=api_key)
    backend = OpenAIBackend(config)
    client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0)
    paths = ["direct", "backend", "openlive"]
    times: dict[str, list[float]] = {name: [] for name in paths}
    try:
        for i in range(runs + 1):  # round 0 warms the upstream's prompt cache and is dropped
            for name in paths[i % 3 :] + paths[: i % 3]:
                if name == "direct":
                    value = await direct_ttft(client, model, request)
                elif name == "backend":
                    value = await backend_ttft(backend, request)
                else:
                    value = await live_ttft(live_url, model, max_tokens)
                if i:
                    times[name].append(value)
    finally:
        await backend.close()
        await client.close()
    direct, through, live = (statistics.median(times[k]) * 1000 for k in paths)
    print(f"time to first token over {runs} runs (p50): upstream direct {direct:.1f} ms")
    for label, value in (("through the openai backend", through), ("through openlive (WebSocket)", live)):
        print(f"  {label:<30} {value:.1f} ms ({value / direct:.2f}x, {value - direct:+.1f} ms)")


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
    with tempfile.TemporaryDirectory() as tmp:
        upstream = None if args.base_url else start_upstream(Path(tmp) / "upstream.log")
        base_url = args.base_url or (upstream.base_url if upstream else "")
        server = start_server(
            None, Path(tmp) / "openlive.log", "--backend", "openai", "--upstream-url", base_url,
            "--upstream-model", args.model, "--upstream-key", args.api_key,
        )  # fmt: skip
        try:
            live_url = server.live_url()
            asyncio.run(run(base_url, args.model, args.api_key, args.runs, args.max_tokens, live_url))
        finally:
            server.stop()
            if upstream:
                upstream.kill()


if __name__ == "__main__":
    main()
