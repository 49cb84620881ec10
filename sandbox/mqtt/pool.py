"""MqttPool: an `Executor` whose jobs run on remote `openlive worker`s behind an MQTT broker.

One aiomqtt client lives as long as the pool; one receive task reads every message and resolves the
pending job it names (correlation data = job id). A job is published at QoS 1 with this server's inbox as
its response topic; the worker that takes it answers with the result, after `accepted` if the job makes
host calls or runs for more than a moment (a quick job's result is its acceptance). Messages are
acknowledged (PUBACK) once handled, so the acknowledgement's send is not on the way of the work it follows.
Failures end a job with OUTCOME_FAILED and say why, never by hanging or running it twice:
  nobody accepts within accept_timeout_s   -> published once more, then failed
  its worker goes offline or stops beating -> failed (not retried: it may have had effects)
  the broker connection drops              -> failed; the pool reconnects with backoff
  no worker seen at all                    -> failed at once
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
import uuid
from asyncio import FIRST_COMPLETED
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from sandbox import frames
from sandbox.conversation import answer_host_call
from sandbox.models import HostCall, Job, Outcome, Result
from sandbox.mqtt import wire
from sandbox.mqtt.broker import BrokerConfig, PromptClient, backoff, correlation, properties
from sandbox.pool import SandboxUnavailable
from sandbox.status import PoolStatus, WorkerSeen

log = logging.getLogger("openlive.mqtt")

HEARTBEAT_MISSES = 5  # a worker silent for this many of its heartbeat periods is lost
WATCH_PERIOD_S = 0.25
RESULT_GRACE_S = 10.0  # beyond the job's deadline, for the worker's teardown and the trip back
MAX_MESSAGE_BYTES = 256 << 20  # a result's figures and files, reassembled


@dataclass
class _Worker:
    status: dict[str, Any]
    last_seen: float
    state: str = "online"

    def alive(self, now: float) -> bool:
        return self.state == "online" and now - self.last_seen < HEARTBEAT_MISSES * self.heartbeat_s

    @property
    def heartbeat_s(self) -> float:
        value = self.status.get("heartbeat_s")
        return float(value) if isinstance(value, int | float) and value > 0 else 1.0

    def count(self, key: str) -> int:
        value = self.status.get(key)
        return value if isinstance(value, int) and value >= 0 else 0


@dataclass
class _Pending:
    job: Job
    host_call: HostCall | None
    accepted: asyncio.Future[str]
    result: asyncio.Future[Result]
    worker: str | None = None
    calls: set[asyncio.Task[None]] = field(default_factory=set)

    def fail(self, why: str) -> None:
        if not self.result.done():
            self.result.set_result(Result(outcome=Outcome.FAILED, output=f"[sandbox] {why}"))


class MqttPool:
    """Runs jobs on remote workers. `run` never blocks the loop; cancelling it kills the remote job."""

    def __init__(
        self, broker: BrokerConfig, accept_timeout_s: float = 3.0, connect_timeout_s: float = 5.0
    ) -> None:
        self.broker = broker
        self._accept_timeout_s = accept_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._id = uuid.uuid4().hex[:16]
        self._inbox = wire.server_inbox(self._id)
        self._client: PromptClient | None = None
        self._connected = asyncio.Event()
        self._closed = False
        self._pending: dict[str, _Pending] = {}
        self._workers: dict[str, _Worker] = {}
        self._messages = itertools.count()
        self._jobs_done = 0
        self._last_error: str | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._background: set[asyncio.Task[None]] = set()

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connects (or keeps trying in the background: the server starts even while the broker is down)."""
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._spawn(self._stay_connected())
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await self._connected.wait()
        except TimeoutError:
            log.warning("MQTT broker %s not reachable yet; retrying in the background", self.broker.display())

    async def close(self) -> None:
        self._closed = True
        for pending in self._pending.values():
            pending.fail("the server is shutting down")
        for task in self._background:
            task.cancel()
        if self._tasks is not None:
            await self._tasks.__aexit__(None, None, None)
            self._tasks = None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        assert self._tasks is not None
        task = self._tasks.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _stay_connected(self) -> None:
        for attempt in itertools.count():
            try:
                async with self.broker.client(f"openlive-server-{self._id}", ack_when_handled=True) as client:
                    await client.subscribe(self._inbox, qos=1)
                    await client.subscribe(wire.WORKER_STATUS_ALL, qos=1)
                    attempt = 0
                    self._workers.clear()  # only workers heard on this connection are known to be there
                    self._client = client
                    self._connected.set()
                    self._last_error = None
                    log.info("connected to MQTT broker %s as server %s", self.broker.display(), self._id)
                    try:
                        async with asyncio.TaskGroup() as tg:
                            tg.create_task(self._watch_heartbeats())
                            await self._receive(client)
                    finally:
                        self._client = None
                        self._connected.clear()
                        for pending in self._pending.values():
                            pending.fail("lost the connection to the MQTT broker while the job ran")
            except* aiomqtt.MqttError as group:
                self._last_error = f"MQTT broker {self.broker.display()}: {group.exceptions[0]}"
                log.warning("%s; reconnecting", self._last_error)
            except* Exception:
                self._last_error = "MQTT receive loop failed; reconnecting"
                log.exception(self._last_error)
            await backoff(attempt)

    # --- jobs --------------------------------------------------------------------------------------

    def _failed(self, why: str) -> Result:
        return Result(outcome=Outcome.FAILED, output=f"[sandbox] {why}")

    async def run(self, job: Job, host_call: HostCall | None = None) -> Result:
        if self._closed or self._tasks is None:
            raise SandboxUnavailable("the MQTT executor is closed")
        if not self._connected.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._connect_timeout_s):
                    await self._connected.wait()
            if not self._connected.is_set():
                return self._failed(
                    f"the MQTT broker {self.broker.display()} is unreachable; try again later"
                )
        if not any(w.alive(time.monotonic()) for w in self._workers.values()):
            return self._failed(f"no sandbox worker is connected to {self.broker.display()}; try again later")
        loop = asyncio.get_running_loop()
        job_id = uuid.uuid4().hex
        pending = _Pending(job, host_call, loop.create_future(), loop.create_future())
        self._pending[job_id] = pending
        try:
            return await self._dispatch(job_id, pending)
        except asyncio.CancelledError:
            if pending.worker is not None:  # publish the cancel without waiting for it: interruption is fast
                self._spawn(self._send(wire.worker_inbox(pending.worker), job_id, ({"t": "cancel"}, [])))
            raise
        finally:
            self._jobs_done += 1
            del self._pending[job_id]
            for task in pending.calls:
                task.cancel()

    async def _dispatch(self, job_id: str, pending: _Pending) -> Result:
        job = wire.job_message(job_id, pending.job)
        body = wire.split(job, self.broker.max_payload_bytes, job_id)
        offer = body[0] if len(body) == 1 else frames.encode(*wire.deferred_job(job_id))
        for attempt in (1, 2):
            try:
                await self._publish(wire.JOBS, offer, properties(job_id, self._inbox))
                async with asyncio.timeout(self._accept_timeout_s):  # `wait` leaves both futures be
                    await asyncio.wait((pending.accepted, pending.result), return_when=FIRST_COMPLETED)
                break
            except TimeoutError:
                log.warning(
                    "job %s: no worker accepted it within %g s (try %d)",
                    job_id,
                    self._accept_timeout_s,
                    attempt,
                )
            except aiomqtt.MqttError as e:
                return self._failed(f"could not send the job to the MQTT broker: {e}")
        else:
            return self._failed(f"no sandbox worker took the job within {self._accept_timeout_s:g} s, twice")
        if pending.result.done():  # a quick job's result (it names its worker), or a failure, came first
            return pending.result.result()
        worker = pending.accepted.result()
        if len(body) > 1:
            for payload in body:
                await self._publish(wire.worker_inbox(worker), payload, properties(job_id))
        try:
            async with asyncio.timeout(pending.job.deadline_s + RESULT_GRACE_S):
                return await asyncio.shield(pending.result)
        except TimeoutError:
            return self._failed(
                f"worker {worker} gave no result within the deadline and {RESULT_GRACE_S:g} s"
            )

    async def _publish(self, topic: str, payload: bytes, props: Any) -> None:
        client = self._client
        if client is None:
            raise aiomqtt.MqttError("not connected to the broker")
        await client.publish(topic, payload, qos=1, properties=props)

    async def _send(self, topic: str, job_id: str, message: wire.Message) -> None:
        """Publishes a message about a job, chunked if needed; a lost connection just drops it."""
        try:
            for payload in wire.split(
                message, self.broker.max_payload_bytes, f"{self._id}.{next(self._messages)}"
            ):
                await self._publish(topic, payload, properties(job_id))
        except aiomqtt.MqttError as e:
            log.warning("job %s: message to %s lost: %s", job_id, topic, e)

    # --- receiving ---------------------------------------------------------------------------------

    async def _receive(self, client: PromptClient) -> None:
        assembler = wire.Assembler(MAX_MESSAGE_BYTES)
        loop = asyncio.get_running_loop()
        async for message in client.messages:
            try:
                self._on_message(message, assembler)
            finally:  # acknowledged once the job's waiting task has taken its result, not before
                loop.call_soon(client.ack, message)

    def _on_message(self, message: aiomqtt.Message, assembler: wire.Assembler) -> None:
        payload = bytes(message.payload)
        name = wire.worker_of_status_topic(message.topic.value)
        if name is not None:
            self._on_status(name, payload)
            return
        job_id = correlation(message)
        pending = self._pending.get(job_id or "")
        try:
            decoded = assembler.feed(payload)
        except frames.FrameError as e:
            log.warning("job %s: malformed message from a worker: %s", job_id, e)
            if pending is not None:
                pending.fail(f"worker {pending.worker} sent a malformed message: {e}")
            return
        if decoded is not None and job_id is not None:
            self._on_job_message(job_id, pending, decoded)

    def _on_job_message(self, job_id: str, pending: _Pending | None, message: wire.Message) -> None:
        header = message[0]
        kind, worker = header.get("t"), header.get("worker")
        if kind == "accepted" and isinstance(worker, str):
            if pending is not None and not pending.accepted.done():
                pending.worker = worker
                pending.accepted.set_result(worker)
            elif pending is None or pending.worker != worker:
                # Taken twice, or over before its worker said so (cancelled meanwhile): stop it.
                with contextlib.suppress(ValueError):
                    self._spawn(
                        self._send(wire.worker_inbox(wire.check_name(worker)), job_id, ({"t": "cancel"}, []))
                    )
        if pending is None:
            return
        if kind == "call" and pending.worker is not None:
            task = self._spawn(self._answer(job_id, pending, header))
            pending.calls.add(task)
            task.add_done_callback(pending.calls.discard)
        elif kind == "result" and not pending.result.done():
            try:
                pending.result.set_result(wire.parse_result(message))
            except frames.FrameError as e:
                name = pending.worker or (worker if isinstance(worker, str) else None)
                pending.fail(f"{f'worker {name}' if name else 'a worker'} sent a malformed result: {e}")

    async def _answer(self, job_id: str, pending: _Pending, call: dict[str, Any]) -> None:
        """A host call from the running code: ask the session's callback, send its answer to the worker."""
        reply = await answer_host_call(call, pending.job, pending.host_call)
        assert pending.worker is not None
        await self._send(
            wire.worker_inbox(pending.worker), job_id, ({"t": "reply", "n": call.get("n"), **reply}, [])
        )

    def _on_status(self, name: str, payload: bytes) -> None:
        try:
            status = json.loads(payload)
        except ValueError:
            return
        if not isinstance(status, dict):
            return
        state = "offline" if status.get("state") == "offline" else "online"
        self._workers[name] = _Worker(status, time.monotonic(), state)
        if state == "offline":
            self._worker_gone(name, "went offline")

    async def _watch_heartbeats(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(WATCH_PERIOD_S)
            now = time.monotonic()
            stalled, last = now - last > 4 * WATCH_PERIOD_S, now
            if stalled:  # this process was not running: heartbeats may be waiting unread in the socket
                continue
            for name, worker in self._workers.items():
                if worker.state == "online" and not worker.alive(now):
                    worker.state = "lost"
                    self._worker_gone(name, f"stopped sending heartbeats ({now - worker.last_seen:.1f} s)")

    def _worker_gone(self, name: str, how: str) -> None:
        log.warning("sandbox worker %s %s", name, how)
        for pending in self._pending.values():
            if pending.worker == name:
                pending.fail(
                    f"worker {name} {how} while running this job; not retried, since it may have had effects"
                )

    # --- health ------------------------------------------------------------------------------------

    def status(self) -> PoolStatus:
        now = time.monotonic()
        seen = [
            WorkerSeen(
                name=name,
                state="online" if w.alive(now) else ("offline" if w.state == "offline" else "lost"),
                slots=w.count("slots"),
                running=w.count("running"),
                queued=w.count("queued"),
                free=w.count("free"),
                isolation=str(w.status.get("isolation", "unknown")),
                jobs_done=w.count("jobs_done"),
                seen_s_ago=round(now - w.last_seen, 3),
            )
            for name, w in sorted(self._workers.items())
        ]
        live = [w for w in seen if w.state == "online"]
        isolation = {w.isolation for w in live}
        error = self._last_error
        if self._connected.is_set() and not live:
            error = f"no sandbox worker is connected to {self.broker.display()}"
        return PoolStatus(
            state="closed"
            if self._closed
            else ("ready" if self._connected.is_set() and live else "degraded"),
            isolation="full" if isolation == {"full"} else ("weak" if "weak" in isolation else "unknown"),
            layers={},
            memory_bound_mb_per_job=0,
            slots=sum(w.slots for w in live),
            runners_ready=sum(w.free for w in live),
            running=sum(w.running for w in live),
            queued=sum(w.queued for w in live) + sum(not p.accepted.done() for p in self._pending.values()),
            jobs_done=self._jobs_done,
            worker_pid=None,
            worker_restarts=0,
            last_error=error,
            broker=self.broker.display(),
            workers=seen,
        )
