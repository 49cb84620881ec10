"""Session events as JSON on `openlive/sessions/<session id>/<event>`, for dashboards and audit.

The session reports through four small hooks (`opened`, `turn_started`, `sent`, `closed`); code runs are
seen by wrapping the session's executor, which knows the outcome, the duration and the worker. Events
carry `session`, `seq` (1, 2, ... per session), `time` and `event`. Never a key or a header; code, output
and function arguments only with `events_content`. Publishing never blocks a session: events queue in
memory (bounded; the overflow is dropped and counted) and one task sends them at QoS 1 in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import time
import uuid
from typing import Any, Protocol

import aiomqtt

from protocol import ModelText, Outbound, Setup
from sandbox import Executor, HostCall, Job, PoolStatus, Result
from sandbox.mqtt import BrokerConfig
from sandbox.mqtt.broker import backoff

log = logging.getLogger("openlive.events")

QUEUE_LIMIT = 10_000
MAX_IN_FLIGHT = 256


class SessionEvents(Protocol):
    """What a session reports. Every method returns at once."""

    def opened(self, setup: Setup) -> None: ...

    def turn_started(self) -> None: ...

    def sent(self, message: Outbound) -> None: ...

    def closed(self) -> None: ...

    def observe(self, executor: Executor) -> Executor:
        """The executor the session should use, so its code runs are reported."""
        ...


class NoEvents:
    """Events switched off: every hook does nothing."""

    def opened(self, setup: Setup) -> None:
        pass

    def turn_started(self) -> None:
        pass

    def sent(self, message: Outbound) -> None:
        pass

    def closed(self) -> None:
        pass

    def observe(self, executor: Executor) -> Executor:
        return executor


NO_EVENTS = NoEvents()


class EventBus:
    """One per server process: a bounded queue and one publisher that reconnects with backoff."""

    def __init__(self, broker: BrokerConfig, include_content: bool = False) -> None:
        self.broker = broker
        self.include_content = include_content
        self.dropped = 0
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(QUEUE_LIMIT)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._pump(), name="session-events")

    async def close(self) -> None:
        """Sends what is queued (briefly), then disconnects."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await self._queue.join()
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])

    def session(self, session_id: str) -> SessionEventLog:
        return SessionEventLog(self, session_id)

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait((topic, json.dumps(payload, default=str).encode()))
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("session events dropped: %d (broker slow or unreachable)", self.dropped)

    async def _pump(self) -> None:
        limit = asyncio.Semaphore(MAX_IN_FLIGHT)
        for attempt in itertools.count():
            try:
                async with self.broker.client(f"openlive-events-{uuid.uuid4().hex[:16]}") as client:
                    attempt = 0
                    async with asyncio.TaskGroup() as tg:
                        while True:
                            topic, payload = await self._queue.get()
                            await limit.acquire()
                            # Tasks start in creation order and publish before their first await: in order.
                            tg.create_task(self._send(client, topic, payload, limit))
            except* aiomqtt.MqttError as group:
                log.warning("events broker %s: %s; reconnecting", self.broker.display(), group.exceptions[0])
            await backoff(attempt)

    async def _send(
        self, client: aiomqtt.Client, topic: str, payload: bytes, limit: asyncio.Semaphore
    ) -> None:
        try:
            await client.publish(topic, payload, qos=1)
        finally:
            limit.release()
            self._queue.task_done()


class SessionEventLog:
    """The events of one session, numbered in the order they happened."""

    def __init__(self, bus: EventBus, session_id: str) -> None:
        self._bus = bus
        self._id = session_id
        self._seq = itertools.count(1)
        self._content = bus.include_content

    def emit(self, event: str, **data: Any) -> None:
        payload = {"session": self._id, "seq": next(self._seq), "time": time.time(), "event": event, **data}
        self._bus.publish(f"openlive/sessions/{self._id}/{event}", payload)

    def opened(self, setup: Setup) -> None:
        tools = setup.tools or []
        self.emit(
            "session_started",
            process=os.getpid(),  # which server process serves it (--workers N)
            model=setup.model,
            code_execution=any(t.code_execution is not None for t in tools),
            functions=[f.name for t in tools for f in t.function_declarations or []],
        )

    def turn_started(self) -> None:
        self.emit("turn_started")

    def sent(self, message: Outbound) -> None:
        if isinstance(message, ModelText):
            return  # text deltas are not published
        if message.tool_call is not None:
            calls = message.tool_call.function_calls
            self.emit(
                "tool_call",
                calls=[
                    {"id": c.id, "name": c.name, **({"args": c.args} if self._content else {})} for c in calls
                ],
            )
        if message.tool_call_cancellation is not None:
            self.emit("tool_call_cancelled", ids=message.tool_call_cancellation.ids)
        content = message.server_content
        if content is not None and content.interrupted:
            self.emit("interrupted")
        if content is not None and content.turn_complete:
            self.emit("turn_complete")
        usage = message.usage_metadata
        if usage is not None:
            self.emit(
                "usage",
                prompt_tokens=usage.prompt_token_count,
                response_tokens=usage.response_token_count,
                total_tokens=usage.total_token_count,
            )

    def closed(self) -> None:
        self.emit("session_ended")

    def observe(self, executor: Executor) -> Executor:
        return _ObservedExecutor(executor, self)

    def code_ran(self, job: Job, result: Result) -> None:
        self.emit(
            "code_execution",
            outcome=result.outcome.value,
            duration_ms=round(result.duration_s * 1000, 3),
            worker=result.worker or "local",
            images=len(result.images),
            files=len(result.files),
            **({"code": job.code, "output": result.output} if self._content else {}),
        )


class _ObservedExecutor:
    """The server's executor as one session sees it: the same jobs, each run reported."""

    def __init__(self, executor: Executor, events: SessionEventLog) -> None:
        self._executor = executor
        self._events = events

    async def start(self) -> None:
        await self._executor.start()

    async def close(self) -> None:
        await self._executor.close()

    async def run(self, job: Job, host_call: HostCall | None = None) -> Result:
        result = await self._executor.run(job, host_call)
        self._events.code_ran(job, result)
        return result

    def status(self) -> PoolStatus:
        return self._executor.status()
