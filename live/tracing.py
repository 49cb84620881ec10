"""Optional OpenTelemetry spans, exported over OTLP/HTTP: a turn, its model calls and its code executions.

On when an endpoint is configured (`--otlp-endpoint URL`, or OpenTelemetry's own
`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) and the `otel` extra is installed.
Off, `span` hands back one shared no-op context: a turn pays three `with` statements and nothing else.
Spans carry names, the model, outcomes and token counts; never code, text, arguments or keys.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol

log = logging.getLogger("openlive.tracing")

Attribute = str | int | float | bool
_STANDARD_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


class Span(Protocol):
    def set_attribute(self, key: str, value: Attribute) -> None: ...


class _NoSpan:
    def set_attribute(self, key: str, value: Attribute) -> None:
        pass


_NO_SPAN = _NoSpan()
_OFF: AbstractContextManager[Span] = contextlib.nullcontext(_NO_SPAN)
_start: Callable[[str, dict[str, Attribute]], AbstractContextManager[Span]] | None = None


# Each span is a child of the current one (the turn's, inside a turn), named after OpenTelemetry's semantic
# conventions for generative AI where they have a name. Each checks first, so that while off not even the
# attributes are built.
def turn(model: str) -> AbstractContextManager[Span]:
    return _OFF if _start is None else _start("turn", {"gen_ai.request.model": model})


def model_call(model: str) -> AbstractContextManager[Span]:
    if _start is None:
        return _OFF
    return _start(f"chat {model}", {"gen_ai.operation.name": "chat", "gen_ai.request.model": model})


def code_execution() -> AbstractContextManager[Span]:
    return _OFF if _start is None else _start("code_execution", {})


def available() -> bool:
    """Whether the `otel` extra is installed."""
    try:
        return all(
            importlib.util.find_spec(name) is not None
            for name in ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http")
        )
    except ModuleNotFoundError:  # a parent package is missing
        return False


def configure(endpoint: str | None) -> Callable[[], None]:
    """Starts exporting when an endpoint is configured; returns what flushes and stops it (a no-op if off).

    `endpoint` is the collector's base URL (`/v1/traces` is added, as OpenTelemetry does with
    OTEL_EXPORTER_OTLP_ENDPOINT); None falls back to OpenTelemetry's environment variables."""
    global _start
    explicit = endpoint is not None  # the CLI has checked `available()` for it
    if endpoint is None and not any(os.environ.get(name) for name in _STANDARD_ENDPOINTS):
        return lambda: None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        if explicit:
            raise
        log.warning(
            "%s is set, but OpenTelemetry is not installed (pip install 'openlive[otel]'): no spans",
            " or ".join(_STANDARD_ENDPOINTS),
        )
        return lambda: None
    # Without an endpoint of ours, the exporter reads OpenTelemetry's environment variables itself.
    exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces" if endpoint else None)
    # A provider of its own, not OpenTelemetry's global one: an application embedding openlive keeps its own.
    provider = TracerProvider(resource=Resource.create({"service.name": "openlive"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))  # exports off the event loop, in batches
    tracer = provider.get_tracer("openlive")

    @contextlib.contextmanager
    def start(name: str, attributes: dict[str, Attribute]) -> Iterator[Span]:
        with tracer.start_as_current_span(name, attributes=attributes) as current:
            yield current

    _start = start
    log.info("exporting OpenTelemetry spans to %s", endpoint or "the OTEL_EXPORTER_OTLP_* endpoint")

    def stop() -> None:
        global _start
        _start = None
        provider.shutdown()  # exports what is still batched

    return stop
