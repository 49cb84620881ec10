"""What a running server holds: the models, the sandbox and the counters, shared by every session."""

from __future__ import annotations

from dataclasses import dataclass, field

from live.backends.registry import Backends
from live.files import FileLimits, FileStore
from live.metrics import Metrics
from sandbox import Executor


@dataclass
class Services:
    backends: Backends
    executor: Executor
    metrics: Metrics = field(default_factory=Metrics)
    files: FileStore = field(default_factory=lambda: FileStore(FileLimits()))
