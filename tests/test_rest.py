"""The non-live calls of the same SDK: generate_content, its SSE stream, chats and the model list."""

from __future__ import annotations

import httpx
import pytest
from google import genai
from google.genai import errors, types

from tests.conftest import API_KEY, Server
from tests.live_helpers import SEED_PROMPT

CODE = types.GenerateContentConfig(tools=[types.Tool(code_execution=types.ToolCodeExecution())])


def sync_client(server: Server, api_key: str = API_KEY) -> genai.Client:
    return genai.Client(
        api_key=api_key,
        http_options=types.HttpOptions(base_url=server.url, client_args={"verify": server.ssl_context()}),
    )


def test_generate_content_runs_code(server: Server) -> None:
    client = sync_client(server)  # the SDK closes its HTTP client when the Client is collected
    response = client.models.generate_content(model="gemini-2.5-flash", contents=SEED_PROMPT, config=CODE)
    parts = response.candidates[0].content.parts  # type: ignore[index, union-attr]
    assert parts is not None
    kinds = [
        next(k for k in ("text", "executable_code", "code_execution_result") if getattr(p, k)) for p in parts
    ]
    assert kinds == ["text", "executable_code", "code_execution_result", "text"]
    assert parts[2].code_execution_result.outcome == types.Outcome.OUTCOME_OK  # type: ignore[union-attr]
    assert parts[2].code_execution_result.output.strip() == "5117"  # type: ignore[union-attr]
    assert "5117" in (parts[3].text or "")
    usage = response.usage_metadata
    assert usage and usage.prompt_token_count and usage.candidates_token_count
    assert usage.tool_use_prompt_token_count  # what the code step fed back to the model
    assert usage.total_token_count == (
        usage.prompt_token_count + usage.tool_use_prompt_token_count + usage.candidates_token_count
    )


async def test_stream_generate_content_streams_parts(server: Server) -> None:
    client = genai.Client(
        api_key=API_KEY,
        http_options=types.HttpOptions(
            base_url=server.url, async_client_args={"verify": server.ssl_context()}
        ),
    )
    chunks = [c async for c in await client.aio.models.generate_content_stream(
        model="gemini-2.5-flash", contents="Plot sin and cos", config=CODE)]  # fmt: skip
    parts = [
        p
        for c in chunks
        if c.candidates and c.candidates[0].content
        for p in c.candidates[0].content.parts or []
    ]
    images = [p.inline_data for p in parts if p.inline_data]
    assert len(chunks) > 4 and len(images) == 1 and images[0].mime_type == "image/png"
    assert (images[0].data or b"").startswith(b"\x89PNG")
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP  # type: ignore[index]


def test_chat_keeps_history_and_returns_function_calls(server: Server) -> None:
    weather = types.FunctionDeclaration(name="get_weather", parameters=types.Schema(
        type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)}))  # fmt: skip
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[weather])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    client = sync_client(server)
    chat = client.chats.create(model="gemini-2.5-flash", config=config)
    first = chat.send_message("What is the weather in Oslo?")
    (call,) = first.function_calls or []
    assert call.name == "get_weather" and call.args == {"city": "Oslo"}
    second = chat.send_message(types.Part(function_response=types.FunctionResponse(
        id=call.id, name=call.name, response={"forecast": "snow"})))  # fmt: skip
    assert "snow" in (second.text or "")


def test_bad_key_and_bad_body(server: Server) -> None:
    client = sync_client(server, api_key="wrong")
    with pytest.raises(errors.ClientError) as denied:
        client.models.generate_content(model="m", contents="hi")
    assert denied.value.code == 400
    assert denied.value.message == "API key not valid. Please pass a valid API key."
    response = httpx.post(f"{server.url}/v1beta/models/m:generateContent", content=b"{not json",
                          headers={"x-goog-api-key": API_KEY}, verify=server.ssl_context())  # fmt: skip
    assert response.status_code == 400 and response.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_oversize_body_is_refused(server: Server) -> None:
    big = b'{"contents": [{"parts": [{"text": "' + b"z" * (16 * 1024 * 1024) + b'"}]}]}'
    url = f"{server.url}/v1beta/models/m:generateContent"
    headers = {"x-goog-api-key": API_KEY}
    response = httpx.post(url, content=big, headers=headers, verify=server.ssl_context(), timeout=60)
    assert response.status_code == 400
    assert "exceeds the limit" in response.json()["error"]["message"]


def test_model_list(server: Server) -> None:
    client = sync_client(server)
    names = [m.name for m in client.models.list()]
    assert "models/openlive-scripted" in names
