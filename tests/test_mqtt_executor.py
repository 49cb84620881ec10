"""MqttPool against a real mosquitto and real `openlive worker` processes (each a real sandbox pool)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from sandbox import File, Job, Outcome, frames
from sandbox.mqtt import BrokerConfig, MqttPool, wire
from sandbox.mqtt.broker import correlation, properties, response_topic
from tests.mqtt_helpers import Broker, Worker, until

SLEEPER = "import time\nprint('started', flush=True)\ntime.sleep(60)\n"


async def wait_online(pool: MqttPool, names: set[str], timeout_s: float = 30.0) -> None:
    """Until the pool has heard heartbeats from exactly these workers (polling its status)."""
    await until(
        lambda: {w.name for w in pool.status().workers if w.state == "online"} == names, timeout_s, f"{names}"
    )


@pytest.fixture(scope="module")
async def pool(broker: Broker, mqtt_workers: dict[str, Any]) -> AsyncIterator[MqttPool]:
    p = MqttPool(BrokerConfig.parse(broker.url, max_payload_bytes=64 * 1024))
    await p.start()
    await wait_online(p, set(mqtt_workers))
    yield p
    await p.close()


def jobs_done_since(pool: MqttPool, moment: float) -> int | None:
    """Jobs the workers report done, once every worker has sent a heartbeat after `moment`."""
    now = time.monotonic()
    workers = pool.status().workers
    if any(now - w.seen_s_ago <= moment for w in workers):
        return None
    return sum(w.jobs_done for w in workers)


async def test_two_workers_share_forty_jobs(pool: MqttPool) -> None:
    moment = time.monotonic()
    before = await until(lambda: jobs_done_since(pool, moment), 10, "a heartbeat")
    results = await asyncio.gather(*(pool.run(Job(code=f"print({n} * {n})")) for n in range(40)))
    assert [r.output for r in results] == [f"{n * n}\n" for n in range(40)]
    assert all(r.outcome == Outcome.OK for r in results)
    by_worker = Counter(r.worker for r in results)
    assert set(by_worker) == {"w1", "w2"}, by_worker
    finished = time.monotonic()
    done = await until(lambda: jobs_done_since(pool, finished), 10, "a heartbeat after the jobs")
    assert done - before == 40  # each job ran once, on one worker


async def test_large_files_and_figures_travel_in_chunks(pool: MqttPool) -> None:
    """Input and output far beyond the 64 KiB broker limit set here, byte for byte."""
    data = bytes(range(256)) * 4096  # 1 MiB
    code = (
        "import hashlib, matplotlib.pyplot as plt\n"
        "blob = open('blob.bin', 'rb').read()\n"
        "print(len(blob), hashlib.sha256(blob).hexdigest())\n"
        "open('copy.bin', 'wb').write(blob[::-1])\n"
        "plt.plot(range(100))\n"
    )
    result = await pool.run(Job(code=code, files=[File(name="blob.bin", data=data)]))
    import hashlib

    assert result.outcome == Outcome.OK, result.output
    assert result.output == f"{len(data)} {hashlib.sha256(data).hexdigest()}\n"
    assert [f.name for f in result.files] == ["copy.bin"] and result.files[0].data == data[::-1]
    assert len(result.images) == 1 and result.images[0].startswith(b"\x89PNG")


async def test_host_calls_reach_the_caller_and_return(pool: MqttPool) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    async def host_call(name: str, args: dict[str, Any]) -> Any:
        calls.append((name, args))
        if args.get("fail"):
            raise ValueError("the client refused")
        return {"doubled": args["x"] * 2}

    code = (
        "print(default_api.double(x=21))\n"
        "try:\n    default_api.double(x=1, fail=True)\nexcept Exception as e:\n    print('error:', e)\n"
    )
    result = await pool.run(Job(code=code, host_functions=["double"]), host_call)
    assert result.outcome == Outcome.OK, result.output
    assert result.output == "{'doubled': 42}\nerror: default_api.double: the client refused\n"
    assert calls == [("double", {"x": 21}), ("double", {"x": 1, "fail": True})]


async def test_cancelling_run_kills_the_remote_job(pool: MqttPool) -> None:
    task = asyncio.create_task(pool.run(Job(code=SLEEPER, deadline_s=60)))
    await until(lambda: sum(w.running for w in pool.status().workers) == 1, 30, "the job to run")
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 2.0  # the cancel is published, not waited for (the job sleeps 60 s)
    # The workers' heartbeats show the job gone, long before its 60 s.
    await until(lambda: sum(w.running for w in pool.status().workers) == 0, 10, "the job to be killed")


async def test_a_job_cancelled_before_its_worker_spoke_is_killed_there(
    broker: Broker, pool: MqttPool
) -> None:
    """Cancelled the moment it is published, before any worker has said it took the job (a worker says
    so only once a job has run a moment): the worker's late `accepted` finds the server no longer
    waiting, and the server tells it to stop. The job sleeps 60 s; it must be gone long before."""
    moment = time.monotonic()
    before = await until(lambda: jobs_done_since(pool, moment), 10, "a heartbeat")
    async with aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as watcher:
        await watcher.subscribe(wire.JOBS, qos=0)  # a copy of every job, outside the workers' group
        task = asyncio.create_task(pool.run(Job(code=SLEEPER, deadline_s=60)))
        async with asyncio.timeout(10):
            await anext(aiter(watcher.messages))
        task.cancel()  # as the broker acknowledges the job to the server: a cancellation must not be lost
        with pytest.raises(asyncio.CancelledError):
            await task
    cancelled = time.monotonic()

    def idle_after_one_more_job() -> bool:
        done = jobs_done_since(pool, cancelled)
        return done == before + 1 and not any(w.running for w in pool.status().workers)

    await until(idle_after_one_more_job, 15, "the job to be killed on its worker")


async def test_killed_worker_fails_its_job_and_the_next_go_to_the_other(
    pool: MqttPool, mqtt_workers: dict[str, Any]
) -> None:
    task = asyncio.create_task(pool.run(Job(code=SLEEPER, deadline_s=60)))
    busy = await until(lambda: [w.name for w in pool.status().workers if w.running], 30, "the job to run")
    (victim,) = busy
    survivor = ({"w1", "w2"} - {victim}).pop()
    mqtt_workers[victim].kill()
    try:
        async with asyncio.timeout(10):
            result = await task
        assert result.outcome == Outcome.FAILED
        assert f"worker {victim} went offline while running this job" in result.output
        assert "not retried" in result.output
        after = await asyncio.gather(*(pool.run(Job(code="print('ok')")) for _ in range(6)))
        assert [(r.outcome, r.worker) for r in after] == [(Outcome.OK, survivor)] * 6
    finally:
        mqtt_workers[victim].start()
        await wait_online(pool, {"w1", "w2"})


async def test_no_worker_fails_fast_and_clearly(tmp_path: Path) -> None:
    empty = Broker(tmp_path)
    empty.start()
    lonely = MqttPool(BrokerConfig.parse(empty.url))
    try:
        await lonely.start()
        started = time.monotonic()
        result = await lonely.run(Job(code="print(1)"))
        assert time.monotonic() - started < 2.0  # not the 3 s accept timeout, nor a connect wait
        assert result.outcome == Outcome.FAILED
        assert result.output == f"[sandbox] no sandbox worker is connected to {empty.url}; try again later"
        assert lonely.status().state == "degraded"
    finally:
        await lonely.close()
        empty.stop()


async def test_a_malformed_quick_result_fails_its_job_at_once(tmp_path: Path) -> None:
    """A worker that answers a job at once, as a quick job's result comes (no `accepted` before it), with
    a result the server cannot read: the job fails with a clear message, without waiting for an
    acceptance that will not come, and is not offered again."""
    lone = Broker(tmp_path)
    lone.start()
    pool = MqttPool(BrokerConfig.parse(lone.url), accept_timeout_s=5.0)
    offers: list[aiomqtt.Message] = []
    try:
        async with aiomqtt.Client("127.0.0.1", lone.port, protocol=aiomqtt.ProtocolVersion.V5) as fake:
            await fake.subscribe(wire.SHARED_JOBS, qos=1)
            await pool.start()
            status = {"name": "fake", "state": "online", "heartbeat_s": 60}
            await fake.publish(wire.worker_status("fake"), json.dumps(status).encode(), qos=1)
            await wait_online(pool, {"fake"})

            async def answer() -> None:
                async for offer in fake.messages:
                    offers.append(offer)
                    reply_to, job_id = response_topic(offer), correlation(offer)
                    assert reply_to is not None and job_id is not None
                    unreadable = frames.encode({"t": "result"}, [])  # no outcome, no worker
                    await fake.publish(reply_to, unreadable, qos=1, properties=properties(job_id))

            answering = asyncio.create_task(answer())
            started = time.monotonic()
            result = await pool.run(Job(code="print(1)"))
            took = time.monotonic() - started
            answering.cancel()
    finally:
        await pool.close()
        lone.stop()
    assert result.outcome == Outcome.FAILED
    assert result.output.startswith("[sandbox] a worker sent a malformed result"), result.output
    assert took < 5.0  # not the accept timeout
    assert len(offers) == 1


async def test_a_job_delivered_twice_runs_once(tmp_path: Path) -> None:
    """QoS 1 may deliver a job to a worker twice (a redelivery after a lost acknowledgement): it runs
    once. A one-slot worker runs its jobs in order, so a second run of the twice-delivered job would
    report before the job sent after it."""
    lone = Broker(tmp_path)
    lone.start()
    worker = Worker("w-once", lone, tmp_path / "worker.log", args=["--slots", "1"])
    worker.start()
    results: list[tuple[str | None, str]] = []
    try:
        async with aiomqtt.Client("127.0.0.1", lone.port, protocol=aiomqtt.ProtocolVersion.V5) as server:
            await server.subscribe("test/replies", qos=1)
            await server.subscribe(wire.worker_status("w-once"), qos=1)
            async with asyncio.timeout(30):  # its first heartbeat follows its subscriptions
                async for message in server.messages:
                    if json.loads(message.payload)["state"] == "online":
                        break
            twice, after = "job-twice", "job-after"
            for job_id, code in ((twice, "print('twice')"), (twice, "print('twice')"), (after, "print(1)")):
                payload = frames.encode(*wire.job_message(job_id, Job(code=code, session="s")))
                await server.publish(wire.JOBS, payload, qos=1, properties=properties(job_id, "test/replies"))
            async with asyncio.timeout(30):
                async for message in server.messages:
                    if message.topic.value != "test/replies":
                        continue  # a heartbeat
                    header, _ = frames.decode(bytes(message.payload))
                    if header.get("t") == "result":
                        results.append((correlation(message), header["output"]))
                        if correlation(message) == after:
                            break
    finally:
        worker.stop()
        lone.stop()
    assert results == [("job-twice", "twice\n"), ("job-after", "1\n")]


async def test_broker_login_is_used_and_never_shown(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    await asyncio.to_thread(
        subprocess.run, ["mosquitto_passwd", "-c", "-b", str(passwd), "openlive", "s3cret-pw"], check=True
    )
    guarded = Broker(tmp_path, password_file=passwd)
    guarded.start()
    login = {"OPENLIVE_BROKER__USERNAME": "openlive", "OPENLIVE_BROKER__PASSWORD": "s3cret-pw"}
    worker = Worker("w-login", guarded, tmp_path / "worker.log", env=login)
    good = MqttPool(BrokerConfig.parse(guarded.url, username="openlive", password="s3cret-pw"))
    bad = MqttPool(
        BrokerConfig.parse(guarded.url, username="openlive", password="wrong-pw"), connect_timeout_s=1
    )
    try:
        worker.start()
        await good.start()
        await wait_online(good, {"w-login"})
        result = await good.run(Job(code="print('in')"))
        assert (result.outcome, result.output, result.worker) == (Outcome.OK, "in\n", "w-login")
        await bad.start()
        refused = await bad.run(Job(code="print('in')"))
        assert refused.outcome == Outcome.FAILED
        assert refused.output == f"[sandbox] the MQTT broker {guarded.url} is unreachable; try again later"
        status = bad.status()
        assert status.state == "degraded" and "Not authorized" in (status.last_error or "")
        shown = status.model_dump_json() + good.status().model_dump_json()
        assert "s3cret-pw" not in shown and "wrong-pw" not in shown
    finally:
        await bad.close()
        await good.close()
        worker.stop()
        guarded.stop()


async def test_a_job_its_worker_never_took_goes_to_another_once(
    broker: Broker, pool: MqttPool, mqtt_workers: dict[str, Any]
) -> None:
    """A member of the workers' group that receives jobs and dies before answering (here: a client that
    joins the shared subscription and stays silent). Its job is published once more and runs elsewhere."""
    swallowed: list[bytes] = []
    quick = MqttPool(BrokerConfig.parse(broker.url), accept_timeout_s=1.0)
    await quick.start()
    async with aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as silent:
        await silent.subscribe(wire.SHARED_JOBS, qos=1)

        async def swallow() -> None:
            async for message in silent.messages:
                swallowed.append(bytes(message.payload))

        task = asyncio.create_task(swallow())
        try:
            await wait_online(quick, set(mqtt_workers))
            results = [await quick.run(Job(code=f"print({n})")) for n in range(6)]
        finally:
            task.cancel()
            await quick.close()
    assert [(r.outcome, r.output) for r in results] == [(Outcome.OK, f"{n}\n") for n in range(6)]
    assert {r.worker for r in results} <= {"w1", "w2"}
    assert 1 <= len(swallowed) <= 6  # the broker's round robin gave the silent member some jobs


async def test_tls_to_the_broker(tmp_path: Path, certs: Path) -> None:
    """mqtts:// with the CA that signed the broker's certificate; without it the broker is not trusted."""
    secure = Broker(tmp_path, certs=certs)
    secure.start()
    worker = Worker("w-tls", secure, tmp_path / "worker.log", args=["--broker-ca", str(certs / "ca.pem")])
    trusted = MqttPool(BrokerConfig.parse(secure.url, ca_file=certs / "ca.pem"))
    untrusted = MqttPool(BrokerConfig.parse(secure.url), connect_timeout_s=1)
    try:
        worker.start()
        await trusted.start()
        await wait_online(trusted, {"w-tls"})
        result = await trusted.run(Job(code="print('sealed')"))
        assert (result.outcome, result.output, result.worker) == (Outcome.OK, "sealed\n", "w-tls")
        await untrusted.start()
        assert "CERTIFICATE_VERIFY_FAILED" in (untrusted.status().last_error or "")
        assert (await untrusted.run(Job(code="print(1)"))).outcome == Outcome.FAILED
    finally:
        await untrusted.close()
        await trusted.close()
        worker.stop()
        secure.stop()
