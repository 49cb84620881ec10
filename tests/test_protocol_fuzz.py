"""Whatever JSON a client sends, the parser answers with a message or a clean 1007, and a real server
stays up and keeps serving."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from protocol import (
    ClientMessage,
    ModelText,
    ProtocolError,
    dump_server_message,
    parse_client_message,
    parse_server_message,
)
from tests.conftest import API_KEY, Server
from tests.live_helpers import SEED_PROMPT, ask, text_config

# Real field names, in both casings, so generated messages get deep into the models.
NAMES = [
    "setup", "clientContent", "client_content", "realtimeInput", "realtime_input", "toolResponse",
    "tool_response", "contextUpdate", "turns", "turnComplete", "turn_complete", "parts", "role", "text",
    "inlineData", "inline_data", "data", "mimeType", "mime_type", "functionResponses", "id", "name",
    "response", "scheduling", "willContinue", "audio", "video", "mediaChunks", "activityStart",
    "audioStreamEnd", "executableCode", "code", "functionCall", "args", "model", "tools",
    "functionDeclarations", "codeExecution", "systemInstruction", "generationConfig", "topK", "seed",
]  # fmt: skip
scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text()
keys = st.sampled_from(NAMES) | st.text(max_size=8)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25,
)
messages = st.dictionaries(st.sampled_from(NAMES[:9]) | keys, json_values, min_size=0, max_size=2)
# One real top-level key over real field names: most of these parse, so they reach the session.
session_messages = st.builds(
    lambda key, value: {key: value},
    st.sampled_from(NAMES[1:9]),
    st.dictionaries(st.sampled_from(NAMES), json_values, max_size=4),
)


def check(raw: str | bytes) -> ClientMessage | None:
    try:
        return parse_client_message(raw)
    except ProtocolError as exc:
        assert exc.code == 1007
        assert 0 < len(exc.reason.encode()) <= 123 and "Traceback" not in exc.reason
        return None


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_any_json_object_parses_or_is_rejected_cleanly(message: dict[str, Any]) -> None:
    check(json.dumps(message))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64) | st.text(max_size=64))
def test_any_bytes_parse_or_are_rejected_cleanly(raw: bytes | str) -> None:
    check(raw)


PROBE = json.dumps({"clientContent": {"turns": [{"parts": [{"text": "hello"}]}], "turnComplete": True}})


async def exchange(server: Server, raw: str) -> None:
    """Setup, the random message, then the probe turn: answered, or closed cleanly (1007/1008)."""
    async with websockets.connect(server.live_url(), ssl=server.ssl_context(),
                                  additional_headers={"x-goog-api-key": API_KEY}) as ws:  # fmt: skip
        await ws.send(json.dumps({"setup": {"model": "models/m", "tools": [{"codeExecution": {}}]}}))
        await ws.recv()
        await ws.send(raw)
        await ws.send(PROBE)
        try:
            async for frame in ws:
                content = json.loads(frame).get("serverContent", {})
                texts = "".join(p.get("text", "") for p in content.get("modelTurn", {}).get("parts", []))
                if "scripted demo model" in texts:
                    return
        except ConnectionClosed:
            pass
        assert ws.close_code in (1007, 1008), (ws.close_code, ws.close_reason, raw)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(session_messages)
def test_a_server_survives_random_valid_messages(server: Server, message: dict[str, Any]) -> None:
    """After a real setup, a random message that parses, then a probe turn: the probe is answered, or the
    session is closed cleanly - never an internal error, and the server stays up."""
    raw = json.dumps(message)
    parsed = check(raw)
    assume(parsed is not None and parsed.setup is None)
    # The asyncio client on a loop of its own (hypothesis drives plain functions). Not websockets' sync
    # client: it reads and writes one TLS connection from two threads, which now and then loses its
    # request (seen here: both ends idle, nothing queued in the kernel).
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(exchange(server, raw), 60))
    finally:
        loop.close()
    assert server.proc.poll() is None


async def test_the_server_still_serves_after_the_fuzzing(server: Server) -> None:
    async with server.client().aio.live.connect(model="m", config=text_config()) as session:
        assert (await ask(session, SEED_PROMPT)).of("result")[0][1].strip() == "5117"


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=["Cs"])))
def test_model_text_fast_path_writes_the_bytes_of_the_model_dump(text: str) -> None:
    """`ModelText` skips pydantic for streamed deltas; its bytes are those of the message it stands for."""
    fast = dump_server_message(ModelText(text))
    assert fast == dump_server_message(ModelText(text).message())
    assert parse_server_message(fast).server_content.model_turn.parts[0].text == text  # type: ignore[union-attr]
