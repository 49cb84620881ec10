"""What the pool reports about itself: for start-up logs and the server's /healthz."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class LayerStatus(BaseModel):
    ok: bool
    detail: str


State = Literal["stopped", "starting", "ready", "degraded", "closed"]


class PoolStatus(BaseModel):
    state: State
    isolation: Literal["unknown", "full", "weak"]
    layers: dict[str, LayerStatus]
    memory_bound_mb_per_job: int  # RLIMIT_AS x RLIMIT_NPROC (no memory cgroup is used)
    slots: int
    runners_ready: int
    running: int
    queued: int
    jobs_done: int
    worker_pid: int | None
    worker_restarts: int
    last_error: str | None
