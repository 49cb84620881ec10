"""What a running server holds: the models, the sandbox and the counters, shared by every session."""

from __future__ import annotations

from dataclasses import dataclass, field

from live.backends.registry import Backends
from live.events import EventBus
from live.files import FileLimits, FileStore
from live.lifecycle import Lifecycle
from live.metrics import Metrics
from live.voice import VoiceEngines
from sandbox import Executor


@dataclass
class Services:
    backends: Backends
    executor: Executor
    lifecycle: Lifecycle
    voice: VoiceEngines
    metrics: Metrics = field(default_factory=Metrics)
    events: EventBus | None = None  # --events: session events to an MQTT broker
    files: FileStore = field(default_factory=lambda: FileStore(FileLimits()))
