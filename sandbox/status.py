"""What the pool reports about itself: for start-up logs and the server's /healthz."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class LayerStatus(BaseModel):
    ok: bool
    detail: str


State = Literal["stopped", "starting", "ready", "degraded", "closed"]


class WorkerSeen(BaseModel):
    """A remote worker as its heartbeats describe it (MqttPool)."""

    name: str
    state: Literal["online", "offline", "lost"]  # lost: heartbeats stopped without a goodbye
    slots: int
    running: int
    queued: int
    free: int
    isolation: str
    jobs_done: int
    seen_s_ago: float


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
    broker: str | None = None  # MqttPool: the broker, without credentials
    workers: list[WorkerSeen] = []  # MqttPool: every worker seen since start
