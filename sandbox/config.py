"""The pool's knobs, validated once at the boundary (CLI flags, env, TOML all end up here)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

MiB = 1 << 20


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "openlive"


class PoolConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Output returned to the model.
    output_cap_bytes: int = Field(1 * MiB, ge=1024, description="stdout and stderr are each cut here, noted")
    output_drain_bytes: int = Field(
        64 * MiB, ge=1024, description="after this much output the pipe is closed and the job gets EPIPE"
    )
    figure_dpi: int = Field(100, ge=10, le=600, description="DPI of returned figures (640x480 px at 100)")
    max_figures: int = Field(20, ge=0)
    max_output_files: int = Field(50, ge=0, description="files the job wrote that come back")
    max_output_file_bytes: int = Field(32 * MiB, ge=0, description="their total size")

    # Where the warm worker keeps its pre-built matplotlib font cache (rebuilding it costs seconds).
    cache_dir: Path = Field(default_factory=_default_cache_dir)
