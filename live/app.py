"""The ASGI app: the Live WebSocket at every version, plus HTTP on the same port (one base URL for SDKs)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from live import api_errors, openapi, tracing
from live.config import Settings
from live.events import NO_EVENTS
from live.files import CallerFiles
from live.files_api import files_router
from live.lifecycle import SHUTDOWN_REASON
from live.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from live.rest import rest_router
from live.rest_common import Caller
from live.services import Services
from live.session import Session, SessionLimits
from live.tokens import identify, token_router
from live.transport import StarletteTransport, TransportClosed
from live.turns import TurnLimits
from protocol import CountTokensRequest, GenerateContentRequest, ProtocolError

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


def sample_services(services: Services) -> None:
    """What the sandbox pool and the embedded models count themselves, read for /metrics when scraped."""
    m, status = services.metrics, services.executor.status
    m.sample_by("model_tokens_sampled", "Tokens sampled by embedded models, as they happen.", "counter",
                "model", services.backends.tokens_sampled)  # fmt: skip
    m.sample("sandbox_slots", "Jobs the sandbox runs at once.", "gauge", lambda: status().slots)
    m.sample("sandbox_running", "Sandbox jobs running.", "gauge", lambda: status().running)
    m.sample("sandbox_queued", "Sandbox jobs waiting for a slot.", "gauge", lambda: status().queued)
    m.sample("sandbox_runners_ready", "Confined runners ready.", "gauge", lambda: status().runners_ready)
    m.sample("sandbox_jobs", "Sandbox jobs finished.", "counter", lambda: status().jobs_done)
    m.sample("sandbox_worker_restarts", "Sandbox worker restarts.", "counter",
             lambda: status().worker_restarts)  # fmt: skip
    m.sample("sandbox_remote_workers", "Remote sandbox workers online (--executor mqtt://).", "gauge",
             lambda: sum(w.state == "online" for w in status().workers))  # fmt: skip
    if (events := services.events) is not None:
        m.sample("session_events_dropped", "Session events dropped: the broker was slow or away.", "counter",
                 lambda: events.dropped)  # fmt: skip


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
        sample_services(services)
        if services.events is not None:
            await services.events.start()
        tune_gc()
        stop_tracing = tracing.configure(settings.otlp_endpoint)
        sweeper = asyncio.create_task(services.files.sweep_forever())
        try:
            if on_ready is not None:
                on_ready()
            yield
        finally:
            sweeper.cancel()
            stop_tracing()
            if services.events is not None:
                await services.events.close()
            await services.executor.close()
            await services.backends.close()
            await services.voice.close()
            await services.lifecycle.store.close()
            services.files.close()

    app = FastAPI(title="openlive", lifespan=lifespan, docs_url=None, redoc_url=None)
    api_errors.install(app)
    openapi.install(app, [GenerateContentRequest, CountTokensRequest])

    async def drain() -> None:
        if services is not None:
            await services.lifecycle.drain()

    app.state.drain = drain
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
    app.include_router(
        token_router(
            settings.api_keys,
            lambda: running().lifecycle.store,
            lambda: running().lifecycle.tokens_issued.inc(),
        )
    )

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """`ok` only while the sandbox runs with every isolation layer; 503 when it cannot run code."""
        s = running()
        sandbox = s.executor.status()
        status = {"ready": "ok", "degraded": "degraded"}.get(sandbox.state, "unavailable")
        if status == "degraded" and sandbox.runners_ready == 0:
            status = "unavailable"  # the worker is down and its last runner used: no code can start
        if status == "ok" and sandbox.isolation != "full":
            status = "degraded"
        body = {
            "status": status,
            "models": s.backends.names(),
            "sandbox": sandbox.model_dump(),
            "process": os.getpid(),  # with --workers N, which process answered
        }
        return JSONResponse(body, status_code=503 if status == "unavailable" else 200)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(running().metrics.render(), media_type=METRICS_CONTENT_TYPE)

    @app.get("/", include_in_schema=False)
    async def console() -> FileResponse:
        return FileResponse(WEB_CONSOLE / "index.html")

    if WEB_CONSOLE.is_dir():
        app.mount("/console", StaticFiles(directory=WEB_CONSOLE), name="console")

    async def live(websocket: WebSocket) -> None:
        await websocket.accept()
        transport = StarletteTransport(websocket)
        match = LIVE_PATH.fullmatch(re.sub("/+", "/", websocket.url.path))
        if match is None:
            await transport.close(1008, "Method not found.")
            return
        s = running()
        try:
            if s.lifecycle.draining:
                raise ProtocolError(1001, SHUTDOWN_REASON)
            caller = await identify(
                websocket.headers,
                websocket.query_params,
                match["method"].endswith("Constrained"),
                settings.api_keys,
                s.lifecycle.store,
            )
            async with s.lifecycle.limits.session(caller.owner):
                session_id = uuid.uuid4().hex
                session = Session(
                    transport,
                    s.backends,
                    s.lifecycle.limits.executor(s.executor, caller.owner),
                    limits,
                    session_id=session_id,
                    api_version=match["version"],
                    metrics=s.metrics,
                    life=s.lifecycle.open(caller),
                    voice=s.voice,
                    events=s.events.session(session_id) if s.events else NO_EVENTS,
                    files=CallerFiles(s.files, caller.owner),
                )
                await session.serve()
        except ProtocolError as exc:
            # The SDK reports a close only once its setup is sent; a close that beats the setup (as it can
            # on a fast server) makes its send fail with no reason instead.
            with contextlib.suppress(TransportClosed, TimeoutError):
                await asyncio.wait_for(transport.recv(), settings.setup_timeout_s)
            s.metrics.closes.labels(code=exc.code).inc()
            await transport.close(exc.code, exc.reason)

    app.add_middleware(LiveSockets, endpoint=live)
    return app


class LiveSockets:
    """Every WebSocket goes straight to the Live endpoint, past FastAPI's routing, dependency and
    exception wrappers: per request they are cheap, but a Live session holds them for its whole life
    (about 5 KB of an idle session's memory; bench/bench_idle.py). HTTP goes on to the app."""

    def __init__(self, app: ASGIApp, endpoint: Callable[[WebSocket], Awaitable[None]]) -> None:
        self._app = app
        self._endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._endpoint(WebSocket(scope, receive, send))
        else:
            await self._app(scope, receive, send)
