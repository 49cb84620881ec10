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
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send

from live import api_errors, openapi, tracing
from live.auth import presented_credential
from live.config import Settings
from live.events import NO_EVENTS
from live.files import CallerFiles
from live.files_api import files_router
from live.lifecycle import SHUTDOWN_REASON
from live.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from live.rest import rest_router
from live.rest_common import Caller
from live.services import Services
from live.serving import SEND_FRAMES
from live.session import Session, SessionLimits
from live.tokens import identify, token_router
from live.transport import AsgiTransport, TransportClosed
from live.turns import TurnLimits
from protocol import CountTokensRequest, GenerateContentRequest, ProtocolError

log = logging.getLogger("openlive.app")

WEB_CONSOLE = Path(__file__).resolve().parent.parent / "clients" / "web"

LIVE_PATH = re.compile(
    r"(?:/[^/]+)*?/ws/google\.ai\.generativelanguage\.(?P<version>v1|v1beta|v1alpha)"
    r"\.GenerativeService\.(?P<method>BidiGenerateContent|BidiGenerateContentConstrained)"
)


def tune_gc() -> None:
    """Keeps collections rare: each one stalls every session at once.

    A young collection walks every tracked object made since the last one. Settled history is out of the
    collector's view (`live.settled`), so on a busy server that is mostly what sessions keep between
    turns (about 18 objects each): with 1,000 sessions, 11-30 ms a collection at a threshold of 50,000. A
    high threshold (300,000 allocations that outlive their turn, ~25 s at 1,000 turns/s) lets one such
    stall come every ~25 s instead of every ~4 s (p99 first content 3.8 against 7.0 ms at 50,000 in the
    same probe; `bench/bench_load.py`, BENCHMARKS.md "Load at the targets").
    """
    gc.collect()
    gc.freeze()  # what start-up loaded lives as long as the process: never scan it again
    gc.set_threshold(300_000, 50, 100)


async def collect_old_cycles(interval_s: float) -> None:
    """A full collection every `interval_s`. With `tune_gc`'s thresholds one otherwise comes only after
    about 1.5e9 allocations (hours on a quiet server), and cycles that grew old before they became garbage
    (an ended session's tasks and exceptions) would wait that long; one stall every few minutes costs the
    tail nothing measurable."""
    while True:
        await asyncio.sleep(interval_s)  # a timer: nothing else to wait for
        gc.collect()


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
        collector = asyncio.create_task(collect_old_cycles(settings.gc_full_interval_s))
        stop_tracing = tracing.configure(settings.otlp_endpoint)
        sweeper = asyncio.create_task(services.files.sweep_forever())
        try:
            if on_ready is not None:
                on_ready()
            yield
        finally:
            sweeper.cancel()
            collector.cancel()
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

    def live(scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Every WebSocket comes here (`live.serving`). What the session needs of the handshake is read
        now, so the coroutine that serves it does not hold the scope and its headers (~2 KB each idle
        session would keep: bench/bench_idle.py)."""
        handshake = HTTPConnection(scope)
        match = LIVE_PATH.fullmatch(re.sub("/+", "/", handshake.url.path))
        credential = presented_credential(handshake.headers, handshake.query_params)
        send_frames = SEND_FRAMES if SEND_FRAMES in scope.get("extensions", {}) else None
        return serve_live(LiveRequest.of(match, credential), AsgiTransport(receive, send, send_frames))

    async def serve_live(request: LiveRequest | None, transport: AsgiTransport) -> None:
        try:
            await transport.accept()
        except TransportClosed:
            return
        if request is None:
            await transport.close(1008, "Method not found.")
            return
        s = running()
        try:
            if s.lifecycle.draining:
                raise ProtocolError(1001, SHUTDOWN_REASON)
            caller = await identify(
                request.credential, request.constrained, settings.api_keys, s.lifecycle.store
            )
            async with s.lifecycle.limits.session(caller.owner):
                session_id = uuid.uuid4().hex
                session = Session(
                    transport,
                    s.backends,
                    s.lifecycle.limits.executor(s.executor, caller.owner),
                    limits,
                    session_id=session_id,
                    api_version=request.version,
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

    app.state.live = live
    return app


@dataclass(frozen=True, slots=True)
class LiveRequest:
    """What a Live session needs of its handshake: the API version, the method, the caller's key."""

    version: str
    constrained: bool  # the `...Constrained` method, the only one that takes ephemeral tokens
    credential: str | None

    @classmethod
    def of(cls, match: re.Match[str] | None, credential: str | None) -> LiveRequest | None:
        """None when the path names no Live method."""
        if match is None:
            return None
        return cls(match["version"], match["method"].endswith("Constrained"), credential)
