"""Any OpenAI-compatible chat-completions server (vLLM, SGLang, llama.cpp server, Ollama, hosted APIs).

Streaming through the official `openai` client. Every upstream failure ends as a BackendError with a
close code and a short reason the client may see: refused connections, 5xx and 429 are retried while
nothing has been streamed yet (a retry after that would repeat output), and every wait has a deadline,
so a stalled upstream never hangs a session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, cast

import openai
from openai.types.chat import ChatCompletionChunk
from pydantic import BaseModel, ConfigDict, Field, SecretStr

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
from live.backends.chat_format import RUN_PYTHON, CodeMode, sampling, to_chat
from live.backends.errors import BackendError
from live.backends.fenced import FencedStream
from live.generation import output_schema

FINISH_REASONS = {"stop": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY"}
_RETRYABLE = (openai.APIConnectionError, openai.InternalServerError, openai.RateLimitError)


class OpenAIUpstreamConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str  # e.g. http://127.0.0.1:8000/v1
    model: str  # the upstream's name for the model
    served_name: str | None = None  # the name clients put in setup.model; None: `model`
    api_key: SecretStr | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    extra_body: dict[str, Any] = Field(default_factory=dict)  # upstream-specific request fields, sent as is
    code_mode: CodeMode = "tools"
    # JSON mode: OpenAI's `json_schema` (vLLM, SGLang, hosted APIs), or `json_object` with a `schema` key
    # (llama-cpp-python's server and llama.cpp's accept that form)
    json_mode: Literal["json_schema", "json_object"] = "json_schema"
    system_role: bool = True  # False for templates that reject system messages (Gemma)
    max_tokens: int | None = None  # per model step, when the client sets no maxOutputTokens
    connect_timeout_s: float = 5.0
    timeout_s: float = 120.0  # until the response starts (prompt processing included)
    idle_timeout_s: float = 60.0  # longest silence between two streamed chunks
    retries: int = Field(2, ge=0)
    retry_backoff_s: float = 0.5
    context_window: int = Field(32768, ge=1)  # the upstream model's; the API cannot tell us

    @property
    def name(self) -> str:
        return self.served_name or self.model


@dataclass
class _ToolCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


class OpenAIBackend:
    structured_output = True  # JSON mode as the upstream's `response_format`

    def __init__(self, config: OpenAIUpstreamConfig) -> None:
        self.config = config
        self._client = openai.AsyncOpenAI(
            base_url=config.base_url,
            api_key=config.api_key.get_secret_value() if config.api_key else "unused",
            default_headers=config.headers,
            timeout=openai.Timeout(config.timeout_s, connect=config.connect_timeout_s),
            max_retries=0,  # retried here, where it is known whether output was already streamed
        )

    def models(self) -> list[str]:
        return [self.config.name]

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ModelEvent]:
        config = self.config
        chat = to_chat(request, config.code_mode, config.system_role)
        params = sampling(request.generation)
        schema = output_schema(request.generation)
        if schema is not None:
            params["response_format"] = response_format(schema, config.json_mode)
        extra = dict(config.extra_body)
        if "top_k" in params:  # not an OpenAI parameter, but vLLM, SGLang, llama.cpp and Ollama take it
            extra["top_k"] = params.pop("top_k")
        if config.max_tokens is not None:
            params.setdefault("max_tokens", config.max_tokens)
        if chat.tools:
            params["tools"] = chat.tools
        fences = None
        if config.code_mode == "fenced" and (request.code_execution or request.functions):
            fences = FencedStream(request.code_execution, {f.name for f in request.functions})

        upstream = await self._open(chat.messages, params, extra)
        calls: dict[int, _ToolCall] = {}
        usage: Usage | None = None
        finish: str | None = None
        try:
            async for chunk in self._chunks(upstream):
                if chunk.usage is not None:
                    usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                for choice in chunk.choices[:1]:
                    finish = choice.finish_reason or finish
                    for delta in choice.delta.tool_calls or []:
                        call = calls.setdefault(delta.index, _ToolCall())
                        call.id = delta.id or call.id
                        if delta.function is not None:
                            call.name = delta.function.name or call.name  # some servers repeat it
                            call.arguments += delta.function.arguments or ""
                    text = choice.delta.content
                    if not text:
                        continue
                    for event in fences.feed(text) if fences else [TextDelta(text)]:
                        yield event
                        if isinstance(event, CodeCall | FunctionCalls):
                            return  # stops generation upstream at the closing fence (closed below)
            if finish is None:
                raise BackendError(1011, "the upstream model server ended the stream mid-response")
            for event in fences.finish() if fences else []:
                yield event
                if isinstance(event, CodeCall | FunctionCalls):
                    return
            if usage is not None:
                yield usage
            if calls and finish != "length":  # a call cut off by max_tokens cannot be made
                yield _tool_event([calls[i] for i in sorted(calls)], request)
            else:
                yield Finish(FINISH_REASONS.get(finish, "OTHER"))
        finally:
            with contextlib.suppress(openai.OpenAIError, OSError):
                await upstream.close()

    async def _open(
        self, messages: list[dict[str, Any]], params: dict[str, Any], extra: dict[str, Any]
    ) -> openai.AsyncStream[ChatCompletionChunk]:
        """Starts the completion; only this step is retried, since nothing has reached the client yet."""
        attempt = 0
        while True:
            try:
                stream: openai.AsyncStream[ChatCompletionChunk] = await self._client.chat.completions.create(
                    model=self.config.model,
                    messages=cast(Any, messages),
                    stream=True,
                    stream_options={"include_usage": True},
                    extra_body=extra or None,
                    **params,
                )
                return stream
            except _RETRYABLE as exc:
                if attempt == self.config.retries or isinstance(exc, openai.APITimeoutError):
                    raise upstream_error(exc) from exc
            except openai.OpenAIError as exc:
                raise upstream_error(exc) from exc
            await asyncio.sleep(self.config.retry_backoff_s * 2**attempt)
            attempt += 1

    async def _chunks(
        self, upstream: openai.AsyncStream[ChatCompletionChunk]
    ) -> AsyncIterator[ChatCompletionChunk]:
        """The upstream's chunks, each awaited under the idle deadline; failures become BackendErrors."""
        iterator = upstream.__aiter__()
        while True:
            try:
                async with asyncio.timeout(self.config.idle_timeout_s):
                    chunk = await anext(iterator)
            except StopAsyncIteration:
                return
            except openai.APITimeoutError as exc:
                raise upstream_error(exc) from exc
            except openai.APIConnectionError as exc:
                raise BackendError(1011, "the upstream model server broke off the stream") from exc
            except (openai.OpenAIError, TimeoutError) as exc:
                raise upstream_error(exc) from exc
            yield chunk

    async def count_tokens(self, request: ModelRequest) -> int:
        """An estimate, four characters a token: an OpenAI-compatible server has no counting endpoint."""
        chat = to_chat(request, self.config.code_mode, self.config.system_role)
        return len(json.dumps([chat.messages, chat.tools])) // 4

    def context_window(self) -> int:
        return self.config.context_window

    async def close(self) -> None:
        await self._client.close()


def response_format(schema: dict[str, Any], mode: str = "json_schema") -> dict[str, Any]:
    """JSON mode as the upstream's `response_format`: the schema in the form it takes; `{}`: any JSON."""
    if not schema:
        return {"type": "json_object"}
    if mode == "json_object":
        return {"type": "json_object", "schema": schema}
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema, "strict": True}}


def _tool_event(calls: list[_ToolCall], request: ModelRequest) -> CodeCall | FunctionCalls | Finish:
    """The model's tool calls as one event: code first (the model sees its result before anything else).

    Calls to functions the client did not declare never reach it; if nothing else is left the step ends
    as Gemini's MALFORMED_FUNCTION_CALL.
    """
    code = next((c for c in calls if c.name == RUN_PYTHON), None)
    if code is not None and request.code_execution:
        return CodeCall(_code_argument(code.arguments))
    declared = {f.name for f in request.functions}
    known = [FunctionCallRequest(c.name, _arguments(c.arguments)) for c in calls if c.name in declared]
    return FunctionCalls(known) if known else Finish("MALFORMED_FUNCTION_CALL")


def _code_argument(arguments: str) -> str:
    """The `code` argument; small models sometimes send the bare program instead of JSON, which runs as is."""
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        return arguments
    return str(value.get("code", "")) if isinstance(value, dict) else arguments


def _arguments(arguments: str) -> dict[str, Any]:
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        raise BackendError(1011, "the upstream model sent malformed function-call arguments") from None
    if not isinstance(value, dict):
        raise BackendError(1011, "the upstream model sent function-call arguments that are not an object")
    return value


def upstream_error(exc: BaseException, server: str = "the upstream model server") -> BackendError:
    """Maps an upstream failure to a close code and a reason without secrets or upstream internals."""
    if isinstance(exc, openai.APITimeoutError | TimeoutError):
        return BackendError(1011, f"{server} timed out", 504)
    if isinstance(exc, openai.APIConnectionError):
        return BackendError(1011, f"{server} is unreachable", 503)
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return BackendError(1008, f"{server} refused the credentials ({exc.status_code})")
    if isinstance(exc, openai.NotFoundError):
        return BackendError(1008, f"{server} does not serve this model (404)")
    if isinstance(exc, openai.RateLimitError):
        return BackendError(1011, f"{server} is rate limiting (429)", 429)
    if isinstance(exc, openai.APIStatusError):
        if 400 <= exc.status_code < 500:
            return BackendError(1007, f"{server} rejected the request ({exc.status_code})")
        return BackendError(1011, f"{server} failed ({exc.status_code})")
    return BackendError(1011, f"{server} reported an error")
