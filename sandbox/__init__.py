"""Running untrusted Python: the job/result models and the executors that run jobs."""

from sandbox.config import LAYERS, Layer, PoolConfig
from sandbox.models import DEFAULT_DEADLINE_S, Executor, File, HostCall, Job, Outcome, Result
from sandbox.pool import LocalPool, SandboxUnavailable
from sandbox.status import LayerStatus, PoolStatus

__all__ = [
    "DEFAULT_DEADLINE_S",
    "LAYERS",
    "Executor",
    "File",
    "HostCall",
    "Job",
    "Layer",
    "LayerStatus",
    "LocalPool",
    "Outcome",
    "PoolConfig",
    "PoolStatus",
    "Result",
    "SandboxUnavailable",
]
