"""OpenTelemetry spans of a code turn, exported by a real server over OTLP/HTTP to a receiver that decodes
them with OpenTelemetry's own protobuf definitions, as a collector does."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.conftest import API_KEY, Server, start_server
from tests.live_helpers import SEED_PROMPT, ask, text_config

pytestmark = pytest.mark.timeout(60)
MODEL = "gemini-live-2.5-flash-preview"


class Collector:
    """An OTLP/HTTP trace receiver on a free port: every span it is sent, with its resource's service."""

    def __init__(self) -> None:
        self.spans: queue.Queue[tuple[str, Span]] = queue.Queue()
        self.paths: list[str] = []
        spans, paths = self.spans, self.paths

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                paths.append(self.path)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    service = next(
                        a.value.string_value
                        for a in resource_spans.resource.attributes
                        if a.key == "service.name"
                    )
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            spans.put((service, span))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def take(self, count: int) -> list[tuple[str, Span]]:
        """The next `count` spans, waiting for the exporter's batches (bounded by the test's timeout)."""
        return [self.spans.get(timeout=30) for _ in range(count)]

    def close(self) -> None:
        self._http.shutdown()


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    made = Collector()
    yield made
    made.close()


@pytest.fixture(scope="module")
def traced_server(
    certs: Path, collector: Collector, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    env = dict(os.environ, OTEL_BSP_SCHEDULE_DELAY="50")  # OpenTelemetry's batch delay, in ms (default 5 s)
    log = tmp_path_factory.mktemp("traced") / "server.log"
    srv = start_server(certs, log, "--backend", "scripted", "--otlp-endpoint", collector.url, env=env)
    yield srv
    srv.stop()


def attributes(span: Span) -> dict[str, object]:
    values: dict[str, object] = {}
    for a in span.attributes:
        kind = a.value.WhichOneof("value")
        values[a.key] = getattr(a.value, kind) if kind else None
    return values


async def test_a_code_turn_exports_its_spans_in_one_trace(
    traced_server: Server, collector: Collector
) -> None:
    async with traced_server.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        turn = await ask(session, SEED_PROMPT)
    assert len(turn.of("code")) == 1
    # The demo script's code turn: a model call that writes code, the code's run, a model call that answers.
    spans = collector.take(4)
    assert collector.paths and set(collector.paths) == {"/v1/traces"}
    assert {service for service, _ in spans} == {"openlive"}
    by_name: dict[str, list[Span]] = {}
    for _, span in spans:
        by_name.setdefault(span.name, []).append(span)
    ((root,),) = [by_name.pop("turn")]
    ((code,),) = [by_name.pop("code_execution")]
    chats = by_name.pop(f"chat {MODEL}")
    assert not by_name and len(chats) == 2
    assert root.parent_span_id == b""
    for child in [code, *chats]:
        assert child.trace_id == root.trace_id and child.parent_span_id == root.span_id
        assert root.start_time_unix_nano <= child.start_time_unix_nano <= child.end_time_unix_nano
        assert child.end_time_unix_nano <= root.end_time_unix_nano
    first, second = sorted(chats, key=lambda s: s.start_time_unix_nano)
    assert first.end_time_unix_nano <= code.start_time_unix_nano <= code.end_time_unix_nano
    assert code.end_time_unix_nano <= second.start_time_unix_nano
    assert attributes(code)["openlive.code.outcome"] == "OUTCOME_OK"
    assert attributes(first) == {"gen_ai.operation.name": "chat", "gen_ai.request.model": MODEL}
    turn_attributes = attributes(root)
    (usage,) = turn.of("turn_complete")
    assert turn_attributes["gen_ai.request.model"] == MODEL
    assert turn_attributes["gen_ai.response.finish_reasons"] == "STOP"
    assert turn_attributes["gen_ai.usage.input_tokens"] == usage.prompt_token_count
    assert turn_attributes["gen_ai.usage.output_tokens"] == usage.response_token_count
    exported = " ".join(str(v) for _, span in spans for v in attributes(span).values())
    assert API_KEY not in exported and "prime" not in exported  # no key, no prompt, no code
