"""Running untrusted Python: the job/result models and the executors that run jobs."""

from sandbox.config import PoolConfig
from sandbox.models import DEFAULT_DEADLINE_S, Executor, File, HostCall, Job, Outcome, Result
from sandbox.subprocess_executor import SubprocessExecutor

__all__ = [
    "DEFAULT_DEADLINE_S",
    "Executor",
    "File",
    "HostCall",
    "Job",
    "Outcome",
    "PoolConfig",
    "Result",
    "SubprocessExecutor",
]
