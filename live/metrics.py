"""`GET /metrics`: one prometheus_client registry per server, and a small interface to add metrics to it.

Add a metric where it is measured, through the server's `Metrics` (never prometheus_client's global
registry, so several servers in one process, as in tests, keep their own counts):

    self.vad_seconds = metrics.histogram("vad_seconds", "Time the VAD took per frame.")
    self.mqtt_jobs = metrics.counter("mqtt_jobs", "Jobs sent over MQTT, by outcome.", ["outcome"])
    metrics.sample("store_sessions", "Resumable sessions stored.", "gauge", store.__len__)

Every name gets the `openlive_` prefix; counters are exposed with `_total` (pass the name without it);
`sample` reads state something else already keeps, only when scraped. Histograms use seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

PREFIX = "openlive_"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Latency buckets in seconds, from a scripted turn on loopback (~1 ms) to the 30 s code deadline.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Kind = Literal["counter", "gauge"]

# `*_created` series double every counter and histogram for a timestamp no dashboard here reads.
disable_created_metrics()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class _Sampled:
    name: str
    documentation: str
    kind: Kind
    label: str | None
    read: Callable[[], float | Mapping[str, float]]


class _SampledCollector(Collector):
    """Values read at scrape time from state kept elsewhere (the sandbox pool, the model backends)."""

    def __init__(self) -> None:
        self.sampled: list[_Sampled] = []

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        for s in self.sampled:
            family_type = CounterMetricFamily if s.kind == "counter" else GaugeMetricFamily
            value = s.read()
            if s.label is None:
                assert not isinstance(value, Mapping)
                yield family_type(s.name, s.documentation, value=value)
            else:
                assert isinstance(value, Mapping)
                family = family_type(s.name, s.documentation, labels=[s.label])
                for key, v in sorted(value.items()):
                    family.add_metric([key], v)
                yield family


class Metrics:
    """The server's metrics; the attributes below are the ones the core server updates."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._sampled = _SampledCollector()
        self.registry.register(self._sampled)
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, process_resident_memory_bytes
        GCCollector(registry=self.registry)  # python_gc_collections_total{generation}: the loop's stalls
        self.sessions_active = self.gauge("sessions_active", "Live sessions open now.")
        self.sessions = self.counter("sessions", "Live sessions set up.")
        self.turns = self.counter("turns", "Model turns started.")
        self.interruptions = self.counter("interruptions", "Turns interrupted.")
        self.interruption = self.histogram(
            "interruption_seconds",
            "From an interruption to its turn stopped: model stream closed, code job's processes gone.",
        )
        self.code_runs = self.counter("code_runs", "Code blocks run, by outcome.", ["outcome"])
        self.closes = self.counter(
            "session_closes", "Sessions closed by the server, by close code.", ["code"]
        )
        self.response_tokens = self.counter("response_tokens", "Tokens the models reported.")
        self.first_content = self.histogram(
            "time_to_first_content_seconds",
            "From the start of a turn to its first model content (text or code) handed to the writer.",
        )
        self.turn_duration = self.histogram(
            "turn_duration_seconds", "From the start of a turn to its turnComplete (turns not interrupted)."
        )
        self.code_execution = self.histogram(
            "code_execution_seconds", "Wall time of a code block in the sandbox, from start to result."
        )
        self.sandbox_queue_wait = self.histogram(
            "sandbox_queue_wait_seconds", "Time a code block waited for a free sandbox runner."
        )

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(PREFIX + name, documentation, labels, registry=self.registry)

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(PREFIX + name, documentation, labels, registry=self.registry)

    def histogram(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Histogram:
        return Histogram(PREFIX + name, documentation, labels, registry=self.registry, buckets=buckets)

    def sample(self, name: str, documentation: str, kind: Kind, read: Callable[[], float]) -> None:
        """A value read when scraped, from state something else keeps."""
        self._sampled.sampled.append(_Sampled(PREFIX + name, documentation, kind, None, read))

    def sample_by(
        self, name: str, documentation: str, kind: Kind, label: str, read: Callable[[], Mapping[str, float]]
    ) -> None:
        """Like `sample`, one series per key of the mapping `read` returns, under the label `label`."""
        self._sampled.sampled.append(_Sampled(PREFIX + name, documentation, kind, label, read))

    def render(self) -> bytes:
        """The Prometheus text format (`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
