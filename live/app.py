"""The ASGI app: the Live WebSocket at every version, plus HTTP on the same port (one base URL for SDKs)."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, WebSocket
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles

from live import api_errors, openapi
from live.auth import UNREGISTERED_CALLER, is_authorized, presented_credential, rest_caller
from live.config import Settings
from live.files import CallerFiles
from live.files_api import files_router
from live.rest import rest_router
from live.rest_common import Caller
from live.services import Services
from live.session import Session, SessionLimits
from live.transport import StarletteTransport
from live.turns import TurnLimits
from protocol import CountTokensRequest, GenerateContentRequest

log = logging.getLogger("openlive.app")

WEB_CONSOLE = Path(__file__).resolve().parent.parent / "clients" / "web"

LIVE_PATH = re.compile(
    r"(?:/[^/]+)*?/ws/google\.ai\.generativelanguage\.(?P<version>v1|v1beta|v1alpha)"
    r"\.GenerativeService\.(?P<method>BidiGenerateContent|BidiGenerateContentConstrained)"
)


def tune_gc() -> None:
    """Keeps full garbage collections rare: each one stalls every session at once.

    With the default young threshold (700 allocations) a busy server collects constantly, promotes
    in-flight turn objects, and so triggers full scans of every session's history: at 1,000 sessions
    they took 50-350 ms each, several a second (p99 first content 904 ms). A high threshold lets turn
    temporaries die by reference count first (p99 39 ms; `bench/bench_load.py`, BENCHMARKS.md).
    """
    gc.collect()
    gc.freeze()  # what start-up loaded lives as long as the process: never scan it again
    gc.set_threshold(50_000, 50, 100)


def create_app(
    settings: Settings,
    make_services: Callable[[Settings], Services],
    on_ready: Callable[[], None] | None = None,
) -> FastAPI:
    services: Services | None = None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nonlocal services
        services = make_services(settings)
        services.files.open()
        await services.executor.start()
        tune_gc()
        sweeper = asyncio.create_task(services.files.sweep_forever())
        try:
            if on_ready is not None:
                on_ready()
            yield
        finally:
            sweeper.cancel()
            await services.executor.close()
            await services.backends.close()
            services.files.close()

    app = FastAPI(title="openlive", lifespan=lifespan, docs_url=None, redoc_url=None)
    api_errors.install(app)
    openapi.install(app, [GenerateContentRequest, CountTokensRequest])
    limits = SessionLimits(
        max_message_bytes=settings.max_message_bytes,
        setup_timeout_s=settings.setup_timeout_s,
        turn=TurnLimits(
            code_deadline_s=settings.code_deadline_s,
            max_code_attempts=settings.max_code_attempts,
            max_code_runs=settings.max_code_runs,
            max_output_chars=settings.max_code_output_chars,
        ),
    )

    def running() -> Services:
        assert services is not None
        return services

    caller = Caller(settings.api_keys)
    app.include_router(rest_router(caller, limits, running))
    app.include_router(files_router(lambda: running().files, caller))

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """`ok` only while the sandbox runs with every isolation layer; 503 when it cannot run code."""
        s = running()
        sandbox = s.executor.status()
        status = {"ready": "ok", "degraded": "degraded"}.get(sandbox.state, "unavailable")
        if status == "ok" and sandbox.isolation != "full":
            status = "degraded"
        body = {"status": status, "models": s.backends.names(), "sandbox": sandbox.model_dump()}
        return JSONResponse(body, status_code=503 if status == "unavailable" else 200)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> PlainTextResponse:
        s = running()
        text = s.metrics.render(s.executor.status(), s.backends.tokens_sampled())
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    @app.get("/", include_in_schema=False)
    async def console() -> FileResponse:
        return FileResponse(WEB_CONSOLE / "index.html")

    if WEB_CONSOLE.is_dir():
        app.mount("/console", StaticFiles(directory=WEB_CONSOLE), name="console")

    @app.websocket("/{path:path}")
    async def live(websocket: WebSocket) -> None:
        await websocket.accept()
        transport = StarletteTransport(websocket)
        match = LIVE_PATH.fullmatch(re.sub("/+", "/", websocket.url.path))
        if match is None:
            await transport.close(1008, "Method not found.")
            return
        credential = presented_credential(websocket.headers, websocket.query_params)
        if not is_authorized(credential, settings.api_keys):
            await transport.close(1008, UNREGISTERED_CALLER)
            return
        assert services is not None
        owner = rest_caller(websocket.headers, websocket.query_params, settings.api_keys)
        session = Session(
            transport,
            services.backends,
            services.executor,
            limits,
            session_id=uuid.uuid4().hex,
            api_version=match["version"],
            metrics=services.metrics,
            files=CallerFiles(services.files, owner),
        )
        await session.serve()

    return app
