"""Whatever JSON a client sends, the parser answers with a message or a clean 1007, and a real server
stays up and keeps serving."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
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
from protocol.parts import SCHEDULING_VALUES
from tests.conftest import Server
from tests.live_helpers import SEED_PROMPT, ask, scrape, text_config

EXCHANGES = 120  # random valid messages sent to the server, one session each

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

# Valid-shaped messages of the four kinds a client sends after setup, with random values, built directly
# (no filter): every one must parse, and every one reaches the session.
texts = st.text(max_size=40)
blobs = st.fixed_dictionaries(
    {
        "mimeType": st.sampled_from(["text/plain", "text/csv", "image/png", "audio/pcm;rate=16000", "x/y"]),
        "data": st.binary(max_size=48).map(lambda b: base64.b64encode(b).decode()),
    },
    optional={"displayName": texts},
)
calls = st.fixed_dictionaries(
    {"name": texts}, optional={"id": texts, "args": st.dictionaries(texts, scalars, max_size=3)}
)
responses = st.fixed_dictionaries(
    {"name": texts},
    optional={
        "id": texts,
        "response": st.dictionaries(texts, scalars, max_size=3),
        "scheduling": st.sampled_from(sorted(SCHEDULING_VALUES)),
        "willContinue": st.booleans(),
    },
)
parts = st.one_of(
    st.builds(lambda t: {"text": t}, texts),
    st.builds(lambda b: {"inlineData": b}, blobs),
    st.builds(lambda c: {"functionCall": c}, calls),
    st.builds(lambda r: {"functionResponse": r}, responses),
    st.builds(lambda c: {"executableCode": {"language": "PYTHON", "code": c}}, texts),
    st.builds(
        lambda o: {"codeExecutionResult": {"outcome": o, "output": "x"}},
        st.sampled_from(["OUTCOME_OK", "OUTCOME_FAILED", "OUTCOME_DEADLINE_EXCEEDED"]),
    ),
)
contents = st.fixed_dictionaries(
    {"parts": st.lists(parts, max_size=3)}, optional={"role": st.sampled_from(["user", "model"])}
)
tools = st.one_of(
    st.just({"codeExecution": {}}),
    st.builds(
        lambda names: {"functionDeclarations": [{"name": n, "description": "d"} for n in names]},
        st.lists(st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True), max_size=3, unique=True),
    ),
)
session_messages = st.one_of(
    st.builds(
        lambda c: {"clientContent": c},
        st.fixed_dictionaries(
            {}, optional={"turns": st.lists(contents, max_size=3), "turnComplete": st.booleans()}
        ),
    ),
    st.builds(
        lambda r: {"realtimeInput": r},
        st.one_of(
            st.builds(lambda t: {"text": t}, texts),
            st.builds(lambda b: {"audio": b}, blobs),
            st.builds(lambda b: {"video": b}, blobs),
            st.builds(lambda bs: {"mediaChunks": bs}, st.lists(blobs, min_size=1, max_size=2)),
            st.sampled_from([{"audioStreamEnd": True}, {"activityStart": {}}, {"activityEnd": {}}]),
        ),
    ),
    st.builds(lambda rs: {"toolResponse": {"functionResponses": rs}}, st.lists(responses, max_size=3)),
    st.builds(
        lambda u: {"contextUpdate": u},
        st.fixed_dictionaries(
            {}, optional={"systemInstruction": texts | contents, "tools": st.lists(tools, max_size=2)}
        ),
    ),
)


def snake(message: Any) -> Any:
    """The same message with snake_case keys, which the API also accepts."""
    if isinstance(message, dict):
        return {re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower(): snake(v) for k, v in message.items()}
    return [snake(v) for v in message] if isinstance(message, list) else message


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


async def exchange(server: Server, raw: str) -> str:
    """Setup, the random message, then the probe turn: "answered", or "closed" cleanly (1007/1008)."""
    async with server.raw_live() as ws:
        setup = {"model": "models/m", "tools": [{"codeExecution": {}}],
                 "generationConfig": {"responseModalities": ["TEXT"]}}  # the probe reads text
        await ws.send(json.dumps({"setup": setup}))
        await ws.recv()
        await ws.send(raw)
        await ws.send(PROBE)
        try:
            async for frame in ws:
                content = json.loads(frame).get("serverContent", {})
                texts = "".join(p.get("text", "") for p in content.get("modelTurn", {}).get("parts", []))
                if "scripted demo model" in texts:
                    return "answered"
        except ConnectionClosed:
            pass
        assert ws.close_code in (1007, 1008), (ws.close_code, ws.close_reason, raw)
        return "closed"


def test_a_server_survives_random_valid_messages(server: Server) -> None:
    """After a real setup, a random valid message, then a probe turn: the probe is answered, or the
    session is closed cleanly - never an internal error, and the server stays up."""
    outcomes: Counter[str] = Counter()
    before = scrape(server.url, server.ssl_context())["openlive_sessions_total"]

    @settings(max_examples=EXCHANGES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
    @given(session_messages, st.booleans())
    def fuzz(message: dict[str, Any], snake_case: bool) -> None:
        raw = json.dumps(snake(message) if snake_case else message)
        parsed = check(raw)
        assert parsed is not None and parsed.setup is None, raw  # valid-shaped: it must parse
        # The asyncio client on a loop of its own (hypothesis drives plain functions). Not websockets'
        # sync client: it reads and writes one TLS connection from two threads, which now and then loses
        # its request (seen here: both ends idle, nothing queued in the kernel).
        loop = asyncio.new_event_loop()
        try:
            outcomes[loop.run_until_complete(asyncio.wait_for(exchange(server, raw), 60))] += 1
        finally:
            loop.close()
        assert server.proc.poll() is None

    fuzz()
    # Every example reached a session of the server, and most went on to an answered probe.
    reached = sum(outcomes.values())
    assert reached >= EXCHANGES * 0.9, outcomes
    assert scrape(server.url, server.ssl_context())["openlive_sessions_total"] - before == reached
    assert outcomes["answered"] >= reached / 2, outcomes


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
