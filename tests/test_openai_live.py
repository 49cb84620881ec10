"""`openlive serve --backend openai` against a real upstream (llama_cpp.server with SmolLM2), through the
google-genai SDK: code execution in `tools` and `fenced` mode, a function call, and an upstream killed
mid-stream.

SmolLM2 never chooses a tool by itself, so the tool-mode upstreams are configured (`extra_body`, sent as
is) to force one; `max_code_runs = 1` then ends a forced code turn with a plain answer. The tiny model
writes wrong code often, so these tests assert structure and that every result is the real output of the
code shown, not the model's arithmetic.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from google.genai import errors, types

from tests.conftest import Server, start_server
from tests.live_helpers import SEED_PROMPT, Turn, ask, assert_real_result, record
from tests.llama_upstream import Upstream, free_port, start_upstream

pytestmark = pytest.mark.llama

WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Current weather in a city",
    parameters=types.Schema(
        type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)}, required=["city"]
    ),
)


class Recorder(ThreadingHTTPServer):
    """Forwards each request to the upstream and keeps its JSON body, so a test can read what openlive
    asked the model (the answer is buffered, then sent whole: no test here needs it streamed)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removesuffix("/v1")
        self.bodies: list[dict[str, Any]] = []
        super().__init__(("127.0.0.1", 0), _Forward)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/v1"


class _Forward(BaseHTTPRequestHandler):
    server: Recorder

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.bodies.append(json.loads(body))
        request = urllib.request.Request(
            self.server.upstream + self.path, body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as answer:
            data, kind = answer.read(), answer.headers["Content-Type"]
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def recorder(tools_upstream: Upstream) -> Iterator[Recorder]:
    proxy = Recorder(tools_upstream.base_url)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()
    thread.join(10)


@pytest.fixture(scope="module")
def doomed_port() -> int:
    """Where the upstream that the kill test starts (and kills) will listen."""
    return free_port()


@pytest.fixture(scope="module")
def openai_server(
    certs: Path,
    tools_upstream: Upstream,
    recorder: Recorder,
    doomed_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("openai")
    up = tools_upstream.base_url
    tool_choice = '{type = "function", function = {name = "%s"}}'
    toml = f"""
max_code_runs = 1
[[upstreams]]
base_url = "{up}"
model = "smollm2"
served_name = "smollm2-tools"
extra_body = {{tool_choice = {tool_choice % "run_python"}}}
[[upstreams]]
base_url = "{recorder.base_url}"
model = "smollm2"
served_name = "smollm2-weather"
extra_body = {{tool_choice = {tool_choice % "get_weather"}}}
[[upstreams]]
base_url = "http://127.0.0.1:{doomed_port}/v1"
model = "smollm2"
served_name = "smollm2-doomed"
retries = 0
"""
    (directory / "openlive.toml").write_text(toml)
    srv = start_server(
        certs,
        directory / "server.log",
        "--backend", "openai",
        "--upstream-url", tools_upstream.base_url,
        "--upstream-model", "smollm2",
        "--upstream-code-mode", "fenced",
        "--config", str(directory / "openlive.toml"),
    )  # fmt: skip
    yield srv
    srv.stop()


def config(*tools: Any, max_tokens: int = 128) -> types.LiveConnectConfig:
    return types.LiveConnectConfig(
        response_modalities=[types.Modality.TEXT],
        tools=list(tools),
        temperature=0.0,
        seed=0,
        max_output_tokens=max_tokens,
    )


def assert_one_real_run(turn: Turn) -> None:
    """One code block, then its real result, then the model's answer to the end of the turn."""
    kinds = turn.kinds()
    assert kinds.count("code") == 1 and kinds[kinds.index("code") + 1] == "result", turn.events
    assert kinds[-2:] == ["generation_complete", "turn_complete"]
    ((code,), ((outcome, output),)) = turn.of("code"), turn.of("result")
    assert_real_result(code, outcome, output)


@pytest.mark.parametrize("model", ["smollm2-tools", "smollm2"], ids=["tools-mode", "fenced-mode"])
async def test_seed_example_runs_real_code(openai_server: Server, model: str) -> None:
    async with openai_server.client().aio.live.connect(
        model=model, config=config({"code_execution": {}})
    ) as session:
        turn = await ask(session, SEED_PROMPT)
    assert_one_real_run(turn)
    before_code = turn.events[: turn.kinds().index("code")]
    assert not any("```" in str(value) for _, value in before_code)  # a fenced block became executableCode


async def test_function_call_goes_to_the_client_and_its_answer_back_upstream(
    openai_server: Server, recorder: Recorder
) -> None:
    asked = len(recorder.bodies)
    async with openai_server.client().aio.live.connect(
        model="smollm2-weather", config=config(types.Tool(function_declarations=[WEATHER]))
    ) as session:
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="What is the weather in Paris?")])
        )
        calls: list[types.FunctionCall] = []
        async for msg in session.receive():
            if msg.tool_call and msg.tool_call.function_calls:
                calls.extend(msg.tool_call.function_calls)
                if len(calls) == 2:
                    break  # the upstream, forced to call get_weather, calls again: enough
                (call,) = calls
                assert call.name == "get_weather" and call.args == {"city": "Paris"} and call.id
                answer = types.FunctionResponse(id=call.id, name=call.name, response={"forecast": "sunny"})
                await session.send_tool_response(function_responses=[answer])
    first, second = recorder.bodies[asked:]
    assert [t["function"]["name"] for t in first["tools"]] == ["get_weather"]
    assert first["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}  # extra_body
    # The second request carries the model's call and the client's answer, linked by the call's id.
    (assistant,) = [m for m in second["messages"] if m.get("tool_calls")]
    (tool_call,) = assistant["tool_calls"]
    assert tool_call["function"]["name"] == "get_weather"
    assert json.loads(tool_call["function"]["arguments"]) == {"city": "Paris"}
    (result,) = [m for m in second["messages"] if m["role"] == "tool"]
    assert result["tool_call_id"] == tool_call["id"]
    assert json.loads(result["content"]) == {"forecast": "sunny"}


async def test_upstream_killed_mid_stream(openai_server: Server, doomed_port: int, tmp_path: Path) -> None:
    doomed = start_upstream(tmp_path / "doomed.log", port=doomed_port)
    turn = Turn()
    try:
        with pytest.raises(errors.APIError) as closed:
            async with openai_server.client().aio.live.connect(
                model="smollm2-doomed", config=config(max_tokens=2000)
            ) as session:
                await session.send_client_content(
                    turns=types.Content(
                        role="user", parts=[types.Part(text="Write a very long story about a dragon.")]
                    )
                )
                async for msg in session.receive():
                    record(turn, msg)
                    if len(turn.of("text")) == 3:
                        doomed.kill()
    finally:
        doomed.kill()
    assert len(turn.of("text")) >= 3 and "turn_complete" not in turn.kinds()
    assert closed.value.code == 1011 and "broke off" in str(closed.value)
    # The server still serves, the same upstream name included (it is simply down).
    assert openai_server.proc.poll() is None
    client = openai_server.client()
    async with client.aio.live.connect(model="smollm2", config=config(max_tokens=8)) as session:
        assert (await ask(session, "Hi")).kinds()[-2:] == ["generation_complete", "turn_complete"]
    with pytest.raises(errors.APIError) as refused:
        async with client.aio.live.connect(model="smollm2-doomed", config=config()) as session:
            await ask(session, "Hi")
    assert refused.value.code == 1011 and "unreachable" in str(refused.value)
