"""Counters for `GET /metrics`, in Prometheus' text format (no client library needed for a few lines)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sandbox import PoolStatus


@dataclass
class Metrics:
    sessions_active: int = 0
    sessions_total: int = 0
    turns_total: int = 0
    interruptions_total: int = 0
    code_runs: Counter[str] = field(default_factory=Counter)  # by outcome
    closes: Counter[int] = field(default_factory=Counter)  # by close code, server-initiated
    response_tokens_total: int = 0

    def render(self, sandbox: PoolStatus, tokens_sampled: dict[str, int]) -> str:
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: dict[str, float]) -> None:
            lines.extend((f"# HELP openlive_{name} {help_text}", f"# TYPE openlive_{name} {kind}"))
            lines.extend(f"openlive_{name}{labels} {value:g}" for labels, value in samples.items())

        metric("sessions_active", "gauge", "Live sessions open now.", {"": self.sessions_active})
        metric("sessions_total", "counter", "Live sessions set up.", {"": self.sessions_total})
        metric("turns_total", "counter", "Model turns started.", {"": self.turns_total})
        metric("interruptions_total", "counter", "Turns interrupted.", {"": self.interruptions_total})
        metric("code_runs_total", "counter", "Code blocks run, by outcome.",
               {f'{{outcome="{k}"}}': v for k, v in sorted(self.code_runs.items())})  # fmt: skip
        metric("session_closes_total", "counter", "Sessions closed by the server, by close code.",
               {f'{{code="{k}"}}': v for k, v in sorted(self.closes.items())})  # fmt: skip
        metric(
            "response_tokens_total",
            "counter",
            "Tokens the models reported.",
            {"": self.response_tokens_total},
        )
        metric("model_tokens_sampled_total", "counter", "Tokens sampled by embedded models, as they happen.",
               {f'{{model="{k}"}}': v for k, v in sorted(tokens_sampled.items())})  # fmt: skip
        metric("sandbox_slots", "gauge", "Jobs the sandbox runs at once.", {"": sandbox.slots})
        metric("sandbox_running", "gauge", "Sandbox jobs running.", {"": sandbox.running})
        metric("sandbox_queued", "gauge", "Sandbox jobs waiting for a slot.", {"": sandbox.queued})
        metric("sandbox_runners_ready", "gauge", "Confined runners ready.", {"": sandbox.runners_ready})
        metric("sandbox_jobs_total", "counter", "Sandbox jobs finished.", {"": sandbox.jobs_done})
        metric(
            "sandbox_worker_restarts_total",
            "counter",
            "Sandbox worker restarts.",
            {"": sandbox.worker_restarts},
        )
        return "\n".join(lines) + "\n"
