"""`openlive worker`: a local sandbox pool that takes jobs from the broker, shared with other workers.

Workers subscribe to the jobs topic as one MQTT 5 shared-subscription group, so the broker hands each job
to one of them. The worker wraps an unchanged `LocalPool`: only job, accepted, host-call, reply, cancel
and result messages cross the broker. It says it is alive every `heartbeat_s` (with its free capacity),
and its will message says `offline` the moment the broker loses it, so servers fail its jobs at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import uvloop

from sandbox import frames
from sandbox.config import PoolConfig
from sandbox.models import Outcome, Result
from sandbox.mqtt import wire
from sandbox.mqtt.broker import BrokerConfig, PromptClient, backoff, correlation, properties, response_topic
from sandbox.pool import LocalPool, SandboxUnavailable

log = logging.getLogger("openlive.worker")

BODY_TIMEOUT_S = 30.0
MAX_MESSAGE_BYTES = 512 << 20  # a job's input files, reassembled
_REMEMBERED_JOBS = 10_000  # QoS 1 may deliver a job twice: run it once
ACCEPT_AFTER_S = 0.02  # a job still running by then says it is this worker's (quicker ones: their result)


class HostCallFailed(Exception):
    """The server answered a host call with an error; its text reaches the running code."""


@dataclass
class _RunningJob:
    reply_to: str
    replies: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    body: asyncio.Future[wire.Message] | None = None
    task: asyncio.Task[None] | None = None


class RemoteWorker:
    def __init__(self, broker: BrokerConfig, name: str, pool: LocalPool, heartbeat_s: float = 1.0) -> None:
        self.name = wire.check_name(name)
        self._broker = broker
        self._pool = pool
        self._heartbeat_s = heartbeat_s
        self._jobs: dict[str, _RunningJob] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()  # the newest _REMEMBERED_JOBS, O(1) to look up
        self._calls = itertools.count()

    def _status(self, state: str) -> bytes:
        s = self._pool.status()
        return json.dumps(
            {
                "name": self.name,
                "state": state,
                "slots": s.slots,
                "running": s.running,
                "queued": s.queued,
                "free": max(0, s.slots - s.running - s.queued),
                "isolation": s.isolation,
                "jobs_done": s.jobs_done,
                "heartbeat_s": self._heartbeat_s,
            }
        ).encode()

    async def run(self) -> None:
        """Serves jobs forever; a lost broker connection is retried with backoff (jobs running then die)."""
        will = aiomqtt.Will(wire.worker_status(self.name), self._status("offline"), qos=1)
        for attempt in itertools.count():
            client = self._broker.client(f"openlive-worker-{self.name}", will, ack_when_handled=True)
            try:
                async with client:
                    log.info("worker %s connected to %s", self.name, self._broker.display())
                    attempt = 0
                    await client.subscribe(wire.worker_inbox(self.name), qos=1)
                    await client.subscribe(wire.SHARED_JOBS, qos=1)
                    try:
                        async with asyncio.TaskGroup() as tg:
                            tg.create_task(self._heartbeat(client))
                            await self._receive(client, tg)
                    finally:
                        self._jobs.clear()
                        with contextlib.suppress(aiomqtt.MqttError):
                            await client.publish(
                                wire.worker_status(self.name), self._status("offline"), qos=1
                            )
            except* aiomqtt.MqttError as group:
                log.warning(
                    "worker %s: broker connection lost (%s); reconnecting", self.name, group.exceptions[0]
                )
            await backoff(attempt)

    async def _heartbeat(self, client: aiomqtt.Client) -> None:
        while True:
            await client.publish(wire.worker_status(self.name), self._status("online"), qos=0)
            await asyncio.sleep(self._heartbeat_s)  # the heartbeat period itself

    async def _receive(self, client: PromptClient, tg: asyncio.TaskGroup) -> None:
        assembler = wire.Assembler(MAX_MESSAGE_BYTES)
        loop = asyncio.get_running_loop()
        async for message in client.messages:
            job = None
            try:
                job = self._on_message(client, message, assembler, tg)
            finally:
                if job is None:  # a job's message is acknowledged once the job has started
                    loop.call_soon(client.ack, message)

    def _on_message(
        self, client: PromptClient, message: aiomqtt.Message, assembler: wire.Assembler, tg: asyncio.TaskGroup
    ) -> _RunningJob | None:
        """The job this message starts, if it is one."""
        job_id = correlation(message)
        try:
            decoded = assembler.feed(bytes(message.payload))
        except frames.FrameError as e:
            log.warning("worker %s: dropped a malformed message on %s: %s", self.name, message.topic, e)
            return None
        if decoded is None or job_id is None:
            return None
        header = decoded[0]
        if message.topic.matches(wire.JOBS):
            reply_to = response_topic(message)
            if reply_to is None or job_id in self._seen:
                return None
            self._seen[job_id] = None
            if len(self._seen) > _REMEMBERED_JOBS:
                self._seen.popitem(last=False)
            body = asyncio.get_running_loop().create_future() if header.get("deferred") else None
            job = self._jobs[job_id] = _RunningJob(reply_to, body=body)
            job.task = tg.create_task(self._serve(client, job_id, job, decoded, message))
            return job
        running = self._jobs.get(job_id)
        if running is None:
            return None
        if header.get("t") == "cancel" and running.task is not None:
            log.info("worker %s: job %s cancelled by the server", self.name, job_id)
            running.task.cancel()
        elif header.get("t") == "reply":
            future = running.replies.get(header.get("n", -1))
            if future is not None and not future.done():
                future.set_result(header)
        elif header.get("t") == "job" and running.body is not None and not running.body.done():
            running.body.set_result(decoded)
        return None

    async def _serve(
        self,
        client: PromptClient,
        job_id: str,
        job: _RunningJob,
        message: wire.Message,
        offer: aiomqtt.Message,
    ) -> None:
        async def publish(msg: wire.Message) -> None:
            for payload in wire.split(msg, self._broker.max_payload_bytes, f"{job_id}.{next(self._calls)}"):
                await client.publish(job.reply_to, payload, qos=1, properties=properties(job_id))

        accepted = False

        def accept() -> None:
            """Says the job is this worker's, and only then acknowledges the offer.

            Sent only once it matters: before the job's first host call, or once the job has run for
            ACCEPT_AFTER_S. A quicker job's result says it all; until then the job has had no effect
            outside its sandbox, so a worker that dies before accepting cannot make a job act twice (the
            server offers it once more). Each message on loopback wakes the broker and the server, which
            during a short job costs the job more than the message's own work.
            """
            nonlocal accepted
            if accepted:
                return
            accepted = True
            timer.cancel()
            try:
                message = frames.encode({"t": "accepted", "worker": self.name}, [])
                client.publish_now(job.reply_to, message, properties(job_id))
            except aiomqtt.MqttError as e:  # the receive loop meets the lost connection and reconnects
                log.warning("worker %s: could not accept job %s: %s", self.name, job_id, e)
            client.ack(offer)

        async def host_call(name: str, args: dict[str, Any]) -> Any:
            accept()  # the server must know who runs a job that acts outside its sandbox
            n = next(self._calls)
            reply = job.replies[n] = asyncio.get_running_loop().create_future()
            try:
                await publish(({"t": "call", "n": n, "name": name, "args": args}, []))
                answer = await reply  # the job's deadline bounds the wait
            finally:
                job.replies.pop(n, None)
            if answer.get("ok"):
                return answer.get("value")
            raise HostCallFailed(str(answer.get("error") or "the host call failed"))

        timer = asyncio.get_running_loop().call_later(ACCEPT_AFTER_S, accept)
        try:
            try:
                if job.body is not None:  # the server sends a deferred job's body once it knows who took it
                    accept()
                    async with asyncio.timeout(BODY_TIMEOUT_S):
                        message = await job.body
                result = await self._pool.run(wire.parse_job(message), host_call)
            except (frames.FrameError, SandboxUnavailable, TimeoutError) as e:
                result = Result(outcome=Outcome.FAILED, output=f"[sandbox] worker {self.name}: {e}")
            timer.cancel()  # the result names this worker: it accepts the job as well
            await publish(wire.result_message(result, self.name))
            if not accepted:
                accepted = True
                client.ack(offer)
        except asyncio.CancelledError:
            return  # cancelled by the server (it has already answered) or the connection is gone
        finally:
            timer.cancel()
            self._jobs.pop(job_id, None)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="openlive worker", description=__doc__.splitlines()[0])
    p.add_argument("--broker", required=True, help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    p.add_argument("--name", help="unique worker name (default: HOSTNAME-PID)")
    p.add_argument("--broker-username", default=os.environ.get("OPENLIVE_BROKER__USERNAME"))
    p.add_argument(
        "--broker-password",
        default=os.environ.get("OPENLIVE_BROKER__PASSWORD"),
        help="better: the environment variable OPENLIVE_BROKER__PASSWORD",
    )
    p.add_argument("--broker-ca", type=Path, help="TLS: CA file for the broker's certificate")
    p.add_argument("--broker-cert", type=Path, help="TLS: client certificate")
    p.add_argument("--broker-key", type=Path, help="TLS: client key")
    p.add_argument("--slots", type=int, help="jobs running at once (default: CPU count, at least 2)")
    p.add_argument("--heartbeat", type=float, default=1.0, help="seconds between heartbeats (default 1)")
    p.add_argument("--allow-weak-isolation", action="store_true", help="run even if a layer is missing")
    p.add_argument("--log-level", default="info")
    return p


async def _main(args: argparse.Namespace) -> int:
    try:
        broker = BrokerConfig.parse(
            args.broker,
            username=args.broker_username,
            password=args.broker_password,
            ca_file=args.broker_ca,
            cert_file=args.broker_cert,
            key_file=args.broker_key,
        )
        name = wire.check_name(args.name or f"{socket.gethostname()}-{os.getpid()}")
    except ValueError as e:
        print(f"openlive worker: {e}", file=sys.stderr)
        return 2
    pool_fields: dict[str, Any] = {"allow_weak_isolation": args.allow_weak_isolation}
    if args.slots:
        pool_fields["slots"] = args.slots
    pool = LocalPool(PoolConfig(**pool_fields))
    worker = RemoteWorker(broker, name, pool, args.heartbeat)
    try:
        await pool.start()
    except SandboxUnavailable as e:
        print(f"openlive worker: sandbox unavailable: {e}", file=sys.stderr)
        return 2
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    print(f"openlive worker {name} serving jobs from {broker.display()}", flush=True)
    try:
        await worker.run()
    except asyncio.CancelledError:
        log.info("worker %s stopping", name)
    finally:
        await pool.close()
    return 0


def main(argv: list[str]) -> int:
    """Entry point for `openlive worker`; `argv` excludes the program and subcommand names."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return uvloop.run(_main(args))  # as `openlive serve` runs on uvicorn's uvloop: less CPU per message
