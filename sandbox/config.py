"""The pool's knobs, validated once at the boundary (CLI flags, env, TOML all end up here)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MiB = 1 << 20

Layer = Literal["netns", "pidns", "mountns", "uid", "seccomp", "landlock"]
LAYERS: tuple[Layer, ...] = ("netns", "pidns", "mountns", "uid", "seccomp", "landlock")


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "openlive"


def _default_slots() -> int:
    return max(2, os.cpu_count() or 2)


class PoolConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Capacity and fairness.
    slots: int = Field(default_factory=_default_slots, ge=1, le=256, description="jobs running at once")
    spare_runners: int = Field(
        6, ge=0, le=64, description="confined runners kept ready beyond `slots` (each a few MB of its own)"
    )
    queue_limit: int = Field(100, ge=0, description="jobs waiting beyond that fail at once")
    queue_timeout_s: float = Field(30.0, gt=0, description="a job that waited this long for a slot fails")
    per_session_limit: int = Field(2, ge=1, description="jobs of one session running at once")

    # Limits of one job. Without a memory cgroup a job's memory is bounded by memory_mb x processes.
    memory_mb: int = Field(1024, ge=128, description="address space per process (RLIMIT_AS)")
    processes: int = Field(8, ge=1, description="processes + threads per job (RLIMIT_NPROC, per-slot uid)")
    cpu_s: int = Field(30, ge=1, description="CPU seconds per process (RLIMIT_CPU; SIGKILL 1 s later)")
    file_size_mb: int = Field(64, ge=1, description="largest file a job can write (RLIMIT_FSIZE)")
    open_files: int = Field(256, ge=16, description="RLIMIT_NOFILE")
    scratch_mb: int = Field(256, ge=1, description="size of the job's scratch dir (its cwd; a tmpfs)")
    tmp_mb: int = Field(64, ge=1, description="size of the job's private /tmp")
    shm_mb: int = Field(64, ge=1, description="size of the job's private /dev/shm")

    # Output returned to the model.
    output_cap_bytes: int = Field(1 * MiB, ge=1024, description="stdout and stderr are each cut here, noted")
    output_drain_bytes: int = Field(
        64 * MiB, ge=1024, description="after this much output the pipe is closed and the job gets EPIPE"
    )
    figure_dpi: int = Field(100, ge=10, le=600, description="DPI of returned figures (640x480 px at 100)")
    max_figures: int = Field(20, ge=0)
    max_output_files: int = Field(50, ge=0, description="files the job wrote that come back")
    max_output_file_bytes: int = Field(32 * MiB, ge=0, description="their total size")

    # The warm worker.
    preload: list[str] = Field(
        default_factory=lambda: ["numpy", "sympy", "matplotlib.pyplot"],
        description="modules imported once by the worker so no job pays for them",
    )
    uid_base: int | None = Field(
        None, ge=1000, description="job uids are uid_base + runner index; None: a free range is chosen"
    )
    start_timeout_s: float = Field(60.0, gt=0)
    cache_dir: Path = Field(default_factory=_default_cache_dir, description="keeps matplotlib's font cache")

    # Isolation. Every layer is required unless the operator accepts a weaker sandbox.
    skip_layers: frozenset[Layer] = Field(
        frozenset(), description="layers not to use (treated as missing), e.g. netns to give jobs a network"
    )
    allow_weak_isolation: bool = Field(False, description="start even if some isolation layer is missing")

    @property
    def runners(self) -> int:
        return self.slots + self.spare_runners
