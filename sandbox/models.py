"""What a sandbox job is and what it gives back: the boundary between the server and any executor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, Field

from sandbox.status import PoolStatus

DEFAULT_DEADLINE_S = 30.0


class Outcome(StrEnum):
    """Mirrors the Gemini `Outcome` enum, so results map to the wire without translation."""

    OK = "OUTCOME_OK"
    FAILED = "OUTCOME_FAILED"
    DEADLINE_EXCEEDED = "OUTCOME_DEADLINE_EXCEEDED"


class File(BaseModel):
    """A file placed in the job's scratch directory, or one the job wrote there."""

    name: str
    data: bytes
    mime_type: str = "application/octet-stream"


class Job(BaseModel):
    code: str
    files: list[File] = Field(default_factory=list)
    deadline_s: float = DEFAULT_DEADLINE_S
    # Names the code may call as `default_api.<name>(**kwargs)`; each call goes to the host callback.
    host_functions: list[str] = Field(default_factory=list)
    # Who submitted it: the pool queues round-robin across sessions and caps each one's concurrency.
    session: str = ""


class Result(BaseModel):
    outcome: Outcome
    # OK: stdout. FAILED: stdout then stderr (the traceback, or which limit killed the job).
    # DEADLINE_EXCEEDED: what was produced before the deadline.
    output: str = ""
    images: list[bytes] = Field(default_factory=list)  # PNG, one per open matplotlib figure
    files: list[File] = Field(default_factory=list)  # files the code wrote to its scratch dir
    duration_s: float = 0.0  # from the job's start in its runner to its result
    queue_wait_s: float = 0.0  # how long the job waited for a free runner before that
    worker: str = ""  # the remote worker that ran it (MqttPool); "" for this machine's pool


HostCall = Callable[[str, dict[str, Any]], Awaitable[Any]]
"""Resolves `default_api.<name>(**args)` from running code; its return value goes back into the code."""


class Executor(Protocol):
    """Runs untrusted code. `run` never blocks the event loop; cancelling it kills the job's process tree."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def run(self, job: Job, host_call: HostCall | None = None) -> Result: ...

    def status(self) -> PoolStatus:
        """Health for /healthz: isolation layers, capacity, load."""
        ...
