"""generateContent over plain HTTP and SSE, on the same turn engine as Live sessions.

A plain request cannot wait for the client's function results, so a turn that calls a client function
ends there and returns the calls, as the Gemini REST API does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from live.auth import UNREGISTERED_CALLER, is_authorized, presented_credential
from live.backends.errors import BackendError
from live.services import Services
from live.session import SessionLimits
from live.turns import Conversation, FunctionCallsPending, TurnEngine
from protocol import (
    Candidate,
    Content,
    ErrorBody,
    ErrorResponse,
    FunctionCall,
    FunctionResponse,
    GenerateContentRequest,
    GenerateContentResponse,
    GenerateContentUsage,
    ModelInfo,
    ModelList,
    Part,
    ServerMessage,
)

_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 500: "INTERNAL"}
_HTTP_FOR_CLOSE = {1007: 400, 1008: 404, 1011: 500}
_METHODS = ["generateContent", "streamGenerateContent", "bidiGenerateContent"]


def error(code: int, message: str) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, status=_STATUS[code]))
    return JSONResponse(body.model_dump(by_alias=True), status_code=code)


def backend_error(exc: BackendError) -> JSONResponse:
    return error(_HTTP_FOR_CLOSE.get(exc.code, 500), exc.reason)


def _json(model: GenerateContentResponse | ModelList) -> Response:
    return Response(model.model_dump_json(by_alias=True, exclude_none=True), media_type="application/json")


class _Collector:
    """Plays the session's part for one HTTP turn: gathers model parts and usage, ends at function calls."""

    def __init__(self) -> None:
        self.parts: asyncio.Queue[Part | None] = asyncio.Queue()
        self.usage = GenerateContentUsage()

    async def emit(self, message: ServerMessage) -> None:
        content = message.server_content
        if content is not None and content.model_turn is not None:
            for part in content.model_turn.parts:
                self.parts.put_nowait(part)
        if message.usage_metadata is not None:
            u = message.usage_metadata
            self.usage = GenerateContentUsage(
                prompt_token_count=u.prompt_token_count,
                candidates_token_count=u.response_token_count,
                tool_use_prompt_token_count=u.tool_use_prompt_token_count,
                total_token_count=u.total_token_count,
            )

    async def call_functions(self, calls: list[FunctionCall]) -> list[FunctionResponse]:
        for call in calls:
            self.parts.put_nowait(Part(function_call=call))
        raise FunctionCallsPending


def _merge_text(parts: list[Part]) -> list[Part]:
    merged: list[Part] = []
    for part in parts:
        if part.text is not None and merged and merged[-1].text is not None:
            merged[-1] = Part(text=merged[-1].text + part.text)
        else:
            merged.append(part)
    return merged


def rest_router(api_keys: list[str], limits: SessionLimits, services: Callable[[], Services]) -> APIRouter:
    router = APIRouter()

    def start_turn(request: Request, model: str, body: GenerateContentRequest) -> tuple[_Collector, Any]:
        running = services()
        backend = running.backends.resolve(model, request.path_params["version"])
        conv = Conversation(
            model=model,
            system_instruction=body.system_instruction.text() if body.system_instruction else None,
            generation=body.generation_config,
        )
        conv.add(body.contents)
        conv.set_tools(body.tools or [])
        collector = _Collector()
        engine = TurnEngine(
            backend, running.executor, limits.turn, collector.emit, collector.call_functions, running.metrics
        )

        async def run() -> None:
            with contextlib.suppress(FunctionCallsPending):
                await engine.run(conv)
            collector.parts.put_nowait(None)

        return collector, run

    async def prepare(request: Request, model: str) -> tuple[_Collector, Any] | JSONResponse:
        """Authenticates, parses and routes a request; or the error response to send instead."""
        if not is_authorized(presented_credential(request.headers, request.query_params), api_keys):
            return error(403, UNREGISTERED_CALLER)
        try:
            raw = bytearray()
            async for chunk in request.stream():  # stop reading at the limit, whatever Content-Length says
                raw += chunk
                if len(raw) > limits.max_message_bytes:
                    return error(
                        400, f"Request payload size exceeds the limit: {limits.max_message_bytes} bytes."
                    )
            body = GenerateContentRequest.model_validate_json(raw)
            return start_turn(request, model, body)
        except ValidationError as exc:
            return error(400, f"Invalid JSON payload received. {exc.errors()[0]['msg']}")
        except BackendError as exc:
            return backend_error(exc)

    @router.post("/{version}/models/{model}:generateContent", response_model=None)
    async def generate(request: Request, model: str) -> Response:
        prepared = await prepare(request, model)
        if isinstance(prepared, JSONResponse):
            return prepared
        collector, run = prepared
        try:
            await run()
        except BackendError as exc:
            return backend_error(exc)
        parts: list[Part] = []
        while (part := collector.parts.get_nowait()) is not None:
            parts.append(part)
        content = Content(role="model", parts=_merge_text(parts))
        return _json(GenerateContentResponse(
            candidates=[Candidate(content=content, finish_reason="STOP")],
            usage_metadata=collector.usage, model_version=model,
        ))  # fmt: skip

    @router.post("/{version}/models/{model}:streamGenerateContent", response_model=None)
    async def stream(request: Request, model: str) -> Response:
        prepared = await prepare(request, model)
        if isinstance(prepared, JSONResponse):
            return prepared
        collector, run = prepared

        async def events() -> AsyncIterator[str]:
            task = asyncio.ensure_future(run())
            try:
                while (part := await collector.parts.get()) is not None:
                    chunk = GenerateContentResponse(
                        candidates=[Candidate(content=Content(role="model", parts=[part]))],
                        model_version=model,
                    )
                    yield f"data: {chunk.model_dump_json(by_alias=True, exclude_none=True)}\r\n\r\n"
                await task
                last = GenerateContentResponse(
                    candidates=[Candidate(content=Content(role="model", parts=[]), finish_reason="STOP")],
                    usage_metadata=collector.usage, model_version=model,
                )  # fmt: skip
                yield f"data: {last.model_dump_json(by_alias=True, exclude_none=True)}\r\n\r\n"
            finally:
                task.cancel()
                await asyncio.wait([task])

        return StreamingResponse(events(), media_type="text/event-stream")

    @router.get("/{version}/models", response_model=None)
    async def models(request: Request) -> Response:
        if not is_authorized(presented_credential(request.headers, request.query_params), api_keys):
            return error(403, UNREGISTERED_CALLER)
        return _json(ModelList(models=[
            ModelInfo(name=f"models/{n}", display_name=n, supported_generation_methods=_METHODS)
            for n in services().backends.names()
        ]))  # fmt: skip

    return router
