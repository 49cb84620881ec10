"""generateContent over plain HTTP and SSE, on the same turn engine as Live sessions; countTokens, models.

A plain request cannot wait for the client's function results, so a turn that calls a client function
ends there and returns the calls, as the Gemini REST API does. A client that goes away cancels its turn,
and with it any running sandbox job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from live.api_errors import INTERNAL_ERROR, ApiError, invalid_payload
from live.backends.base import ModelBackend, ModelRequest
from live.backends.errors import BackendError
from live.backends.registry import model_id
from live.files import CallerFiles
from live.generation import Unsupported, check
from live.rest_common import VERSION, Caller, json_response, read_body
from live.services import Services
from live.session import SessionLimits
from live.turns import Conversation, FunctionCallsPending, TurnEngine, TurnUsage
from protocol import (
    Candidate,
    Content,
    CountTokensRequest,
    CountTokensResponse,
    ErrorResponse,
    FunctionCall,
    FunctionResponse,
    GenerateContentRequest,
    GenerateContentResponse,
    GenerateContentUsage,
    ModelInfo,
    ModelList,
    ModelText,
    Outbound,
    Part,
)
from protocol.fields import unknown_field

_METHODS = ["generateContent", "streamGenerateContent", "countTokens", "bidiGenerateContent"]
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 413, 429, 500, 503, 504)
}
log = logging.getLogger("openlive.rest")
DISCONNECT_POLL_S = 0.5
_M = TypeVar("_M", bound=BaseModel)


class _Collector:
    """Plays the session's part for one HTTP turn: gathers model parts, ends at function calls."""

    def __init__(self) -> None:
        self.parts: asyncio.Queue[Part | None] = asyncio.Queue()

    async def emit(self, message: Outbound) -> None:
        if isinstance(message, ModelText):
            self.parts.put_nowait(Part(text=message.text))
            return
        content = message.server_content
        if content is not None and content.model_turn is not None:
            for part in content.model_turn.parts:
                self.parts.put_nowait(part)

    async def call_functions(self, calls: list[FunctionCall]) -> list[FunctionResponse]:
        for call in calls:
            self.parts.put_nowait(Part(function_call=call))
        raise FunctionCallsPending


@dataclass
class _Turn:
    collector: _Collector
    engine: TurnEngine
    conv: Conversation
    model: str
    tokens: TurnUsage = field(default_factory=TurnUsage)
    finish: str = "STOP"  # also when the turn ends at function calls

    async def run(self) -> None:
        try:
            with contextlib.suppress(FunctionCallsPending):
                self.finish = await self.engine.run(self.conv, self.tokens)
        finally:  # also when it fails: the reader then finds the error by awaiting this
            self.collector.parts.put_nowait(None)

    def usage(self) -> GenerateContentUsage:
        u = self.tokens.metadata()
        return GenerateContentUsage(
            prompt_token_count=u.prompt_token_count,
            candidates_token_count=u.response_token_count,
            tool_use_prompt_token_count=u.tool_use_prompt_token_count,
            total_token_count=u.total_token_count,
        )


def _merge_text(parts: list[Part]) -> list[Part]:
    merged: list[Part] = []
    for part in parts:
        if part.text is not None and merged and merged[-1].text is not None:
            merged[-1] = Part(text=merged[-1].text + part.text)
        else:
            merged.append(part)
    return merged


def _sse(model: BaseModel) -> str:
    return f"data: {model.model_dump_json(by_alias=True, exclude_none=True)}\r\n\r\n"


async def _cancel_on_disconnect(request: Request, task: asyncio.Future[None]) -> None:
    """Cancels `task` if the client goes away before it ends (its sandbox job is killed with it)."""
    while not task.done():
        if await request.is_disconnected():
            task.cancel()
            break
        await asyncio.wait([task], timeout=DISCONNECT_POLL_S)


def rest_router(caller: Caller, limits: SessionLimits, services: Callable[[], Services]) -> APIRouter:
    router = APIRouter(dependencies=[Depends(caller)], responses=_ERRORS, tags=["models"])
    body_schema = {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/GenerateContentRequest"}}}
    }

    def backend(request: Request, model: str) -> ModelBackend:
        return services().backends.resolve(model, request.path_params["version"])

    async def parse(request: Request, kind: type[_M]) -> _M:
        """The body as `kind`; fields it does not define are refused by name, as Google's parser does."""
        raw = await read_body(request, limits.max_message_bytes)
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise ApiError(400, "Invalid JSON payload received. The body is not valid JSON.") from None
        unknown = unknown_field(data, kind) if isinstance(data, dict) else None
        if unknown is not None:
            name, where = unknown
            at = f" at '{where}'" if where else ""
            message = f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.'
            raise ApiError(400, message)
        try:
            return kind.model_validate(data)
        except ValidationError as exc:
            raise invalid_payload(exc) from None

    async def start_turn(request: Request, model: str) -> _Turn:
        """Authenticates, parses, checks and routes a request; raises the error to answer instead."""
        body = await parse(request, GenerateContentRequest)
        chosen = backend(request, model)
        running = services()
        files = CallerFiles(running.files, Caller.of(request))
        conv = Conversation(
            model=model,
            system_instruction=body.system_instruction.text() if body.system_instruction else None,
            generation=body.generation_config,
            files=files,
        )
        conv.set_tools(body.tools or [])
        try:
            check(body.generation_config, structured_output=chosen.structured_output,
                  tools=bool(conv.functions) or conv.code_execution, live=False)  # fmt: skip
        except Unsupported as exc:
            raise ApiError(400, str(exc)) from None
        files.resolve(body.contents)
        conv.add(body.contents)
        collector = _Collector()
        executor = running.lifecycle.limits.executor(running.executor, Caller.of(request))  # per-key jobs
        engine = TurnEngine(
            chosen, executor, limits.turn, collector.emit, collector.call_functions, running.metrics
        )
        return _Turn(collector, engine, conv, model)

    @router.post(
        "/{version}/models/{model}:generateContent",
        response_model=GenerateContentResponse,
        openapi_extra={"requestBody": body_schema},
    )
    async def generate(request: Request, version: VERSION, model: str) -> Response:
        turn = await start_turn(request, model)
        task = asyncio.ensure_future(turn.run())
        await _cancel_on_disconnect(request, task)
        await task
        parts: list[Part] = []
        while (part := turn.collector.parts.get_nowait()) is not None:
            parts.append(part)
        content = Content(role="model", parts=_merge_text(parts))
        return json_response(GenerateContentResponse(
            candidates=[Candidate(content=content, finish_reason=turn.finish)],
            usage_metadata=turn.usage(), model_version=model,
        ))  # fmt: skip

    @router.post(
        "/{version}/models/{model}:streamGenerateContent",
        response_model=GenerateContentResponse,
        openapi_extra={"requestBody": body_schema},
        description="Server-sent events (`alt=sse`), one GenerateContentResponse per event.",
    )
    async def stream(request: Request, version: VERSION, model: str) -> Response:
        turn = await start_turn(request, model)

        async def events() -> AsyncIterator[str]:
            task = asyncio.ensure_future(turn.run())
            try:
                while (part := await turn.collector.parts.get()) is not None:
                    content = Content(role="model", parts=[part])
                    yield _sse(
                        GenerateContentResponse(candidates=[Candidate(content=content)], model_version=model)
                    )
                await task
                last = Candidate(content=Content(role="model", parts=[]), finish_reason=turn.finish)
                yield _sse(
                    GenerateContentResponse(
                        candidates=[last], usage_metadata=turn.usage(), model_version=model
                    )
                )
            except BackendError as exc:  # the status is sent: the error goes in the stream, as Google's does
                yield _sse(ApiError.from_backend(exc).body())
            except Exception:
                log.exception("stream failed")
                yield _sse(ApiError(500, INTERNAL_ERROR).body())
            finally:  # also when the client went away: Starlette cancels this generator
                task.cancel()
                await asyncio.wait([task])

        return StreamingResponse(events(), media_type="text/event-stream")

    @router.post(
        "/{version}/models/{model}:countTokens",
        response_model=CountTokensResponse,
        openapi_extra={"requestBody": {"content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/CountTokensRequest"}}}}},
    )  # fmt: skip
    async def count_tokens(request: Request, version: VERSION, model: str) -> Response:
        body = await parse(request, CountTokensRequest)
        chosen = backend(request, model)
        inner = body.generate_content_request
        contents = body.contents if body.contents is not None else (inner.contents if inner else [])
        conv = Conversation(model=model_id(model))
        if inner is not None:
            conv.system_instruction = inner.system_instruction.text() if inner.system_instruction else None
            conv.set_tools(inner.tools or [])
        files = CallerFiles(services().files, Caller.of(request))
        files.resolve(contents)
        conv.add(contents)
        total = await chosen.count_tokens(ModelRequest(
            model=conv.model, history=conv.history, system_instruction=conv.system_instruction,
            functions=conv.functions, code_execution=conv.code_execution,
        ))  # fmt: skip
        return json_response(CountTokensResponse(total_tokens=total))

    def info(name: str) -> ModelInfo:
        return ModelInfo(
            name=f"models/{name}", version="001", display_name=name,
            description=f"{name}, served by openlive", supported_generation_methods=_METHODS,
        )  # fmt: skip

    @router.get("/{version}/models", response_model=ModelList)
    async def models(version: VERSION) -> Response:
        return json_response(ModelList(models=[info(n) for n in services().backends.names()]))

    @router.get("/{version}/models/{model}", response_model=ModelInfo)
    async def get_model(request: Request, version: VERSION, model: str) -> Response:
        name = model_id(model)
        registry = services().backends
        try:
            registry.resolve(name, version)
        except BackendError:
            raise ApiError(404, f"models/{name} is not found for API version {version}.") from None
        return json_response(info(name))

    return router
