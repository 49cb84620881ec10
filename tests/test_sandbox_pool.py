"""The pool as a service: concurrency and fairness, bounded queueing, restarts, shutdown, health."""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sandbox import Job, LocalPool, Outcome, PoolConfig, rootfs


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[LocalPool]:
    p = LocalPool(PoolConfig(slots=2, spare_runners=1, per_session_limit=1))
    await p.start()
    yield p
    await p.close()


@pytest.fixture(scope="module")
async def one_slot() -> AsyncIterator[LocalPool]:
    p = LocalPool(PoolConfig(slots=1, spare_runners=0, queue_limit=2, queue_timeout_s=1.0))
    await p.start()
    yield p
    await p.close()


class Gate:
    """A host function that holds a job until the test opens the gate."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.open = asyncio.Event()
        self.calls: list[str] = []

    async def __call__(self, name: str, args: dict[str, Any]) -> None:
        self.calls.append(args.get("who", name))
        if name == "hold":
            self.entered.set()
            await self.open.wait()


def _held(who: str = "holder") -> Job:
    return Job(code=f"default_api.hold(who={who!r})\nprint('released')", host_functions=["hold"])


async def test_fifty_jobs_from_ten_sessions_complete_in_fair_order(pool: LocalPool) -> None:
    """Submitted session by session; served round-robin, so every session starts before any runs its 3rd."""
    code = "import time\nstart = time.monotonic()\nprint(start, SESSION, K, sum(range(K * 1000)))"
    jobs = [
        Job(code=code.replace("SESSION", str(s)).replace("K", str(k)), session=f"s{s}")
        for s in range(10)
        for k in range(5)
    ]
    results = await asyncio.gather(*(pool.run(job) for job in jobs))
    starts: dict[tuple[int, int], float] = {}
    for job, r in zip(jobs, results, strict=True):
        assert r.outcome == Outcome.OK, r.output
        start, s, k, total = r.output.split()
        assert (f"s{s}", int(total)) == (job.session, sum(range(int(k) * 1000)))
        starts[int(s), int(k)] = float(start)
    assert len(starts) == 50
    latest_first = max(starts[s, 0] for s in range(10))
    earliest_third = min(starts[s, 2] for s in range(10))
    assert latest_first < earliest_third  # FIFO would have run s0's five jobs before s9's first


async def test_per_session_limit_lets_other_sessions_through(pool: LocalPool) -> None:
    gate = Gate()
    first = asyncio.create_task(pool.run(_held("a1").model_copy(update={"session": "a"}), gate))
    await gate.entered.wait()
    second = asyncio.create_task(
        pool.run(Job(code="default_api.mark(who='a2')", host_functions=["mark"], session="a"), gate)
    )
    other = await pool.run(
        Job(code="default_api.mark(who='b1')\nprint('b')", host_functions=["mark"], session="b"), gate
    )
    assert (other.outcome, other.output) == (Outcome.OK, "b\n")
    assert gate.calls == ["a1", "b1"]  # a2 waits for a1 although a slot is free: a is at its limit
    gate.open.set()
    assert (await first).output == "released\n"
    assert (await second).outcome == Outcome.OK
    assert gate.calls == ["a1", "b1", "a2"]


async def test_jobs_without_a_session_are_not_capped_together(pool: LocalPool) -> None:
    gates = [Gate(), Gate()]
    held = [asyncio.create_task(pool.run(_held(), gate)) for gate in gates]
    for gate in gates:  # per_session_limit is 1, yet both hold a slot at once
        await gate.entered.wait()
    for gate in gates:
        gate.open.set()
    assert [(await h).output for h in held] == ["released\n", "released\n"]


async def test_full_queue_fails_fast(one_slot: LocalPool) -> None:
    gate = Gate()
    holder = asyncio.create_task(one_slot.run(_held(), gate))
    await gate.entered.wait()
    waiting = [asyncio.create_task(one_slot.run(Job(code=f"print({i})"))) for i in range(2)]
    await asyncio.sleep(0)  # let them enqueue
    assert one_slot.status().queued == 2
    rejected = await one_slot.run(Job(code="print('never')"))
    assert rejected.outcome == Outcome.FAILED
    assert "sandbox busy: 2 jobs are already waiting" in rejected.output
    gate.open.set()
    assert (await holder).output == "released\n"
    assert [(await w).output for w in waiting] == ["0\n", "1\n"]


async def test_waiting_too_long_fails_with_a_message(one_slot: LocalPool) -> None:
    gate = Gate()
    holder = asyncio.create_task(one_slot.run(_held(), gate))
    await gate.entered.wait()
    late = await one_slot.run(Job(code="print('late')"))
    assert late.outcome == Outcome.FAILED
    assert "no sandbox became free within 1 s" in late.output
    gate.open.set()
    await holder


async def test_cancelling_a_queued_job_frees_its_place(one_slot: LocalPool) -> None:
    gate = Gate()
    holder = asyncio.create_task(one_slot.run(_held(), gate))
    await gate.entered.wait()
    queued = asyncio.create_task(one_slot.run(Job(code="print('queued')")))
    await asyncio.sleep(0)  # let it enqueue
    assert one_slot.status().queued == 1
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert one_slot.status().queued == 0
    gate.open.set()
    await holder
    assert (await one_slot.run(Job(code="print('next')"))).output == "next\n"


async def test_status_for_healthz(pool: LocalPool) -> None:
    await pool.wait_idle()
    status = pool.status().model_dump()
    assert status["state"] == "ready" and status["isolation"] == "full"
    assert set(status["layers"]) == {"netns", "pidns", "mountns", "uid", "seccomp", "landlock"}
    assert all(layer["ok"] for layer in status["layers"].values())
    assert (status["slots"], status["runners_ready"], status["running"], status["queued"]) == (2, 3, 0, 0)
    assert status["memory_bound_mb_per_job"] == pool.config.memory_mb * pool.config.processes
    assert status["worker_pid"] and status["last_error"] is None


async def test_a_job_can_ask_what_is_installed(pool: LocalPool) -> None:
    code = """
        import importlib.metadata as md
        names = {d.metadata['Name'].lower() for d in md.distributions()}
        print(sorted(names & {'numpy', 'sympy', 'matplotlib'}))
        """
    r = await pool.run(Job(code=textwrap.dedent(code)))
    assert (r.outcome, r.output) == (Outcome.OK, "['matplotlib', 'numpy', 'sympy']\n")


async def test_worker_is_replaced_when_it_dies() -> None:
    p = LocalPool(PoolConfig(slots=1, spare_runners=1))
    await p.start()
    try:
        old = p.status().worker_pid
        assert old is not None
        os.kill(old, signal.SIGKILL)
        for _ in range(p.config.runners):  # runners forked earlier still serve jobs meanwhile
            assert (await p.run(Job(code="print(1)"))).output == "1\n"
        await asyncio.wait_for(p.wait_idle(), 60)  # new runners need the new worker
        status = p.status()
        assert (status.state, status.worker_restarts) == ("ready", 1)
        assert status.worker_pid not in (None, old)
        assert (await p.run(Job(code="print(2)"))).output == "2\n"
        new = status.worker_pid
    finally:
        await p.close()
    # Both workers' skeleton mount points are gone from the host once the pool is closed.
    for pid in (old, new):
        assert not await asyncio.to_thread(os.path.exists, rootfs.skeleton_dir(pid))


async def test_close_fails_queued_and_running_jobs() -> None:
    p = LocalPool(PoolConfig(slots=1, spare_runners=0))
    await p.start()
    gate = Gate()
    running = asyncio.create_task(p.run(_held(), gate))
    await gate.entered.wait()
    queued = asyncio.create_task(p.run(Job(code="print('queued')")))
    await asyncio.sleep(0)  # let it enqueue
    await p.close()
    r_running, r_queued = await running, await queued
    assert r_running.outcome == Outcome.FAILED
    assert (r_queued.outcome, r_queued.output) == (
        Outcome.FAILED,
        "[sandbox] the sandbox pool is shutting down",
    )
    assert p.status().state == "closed"
    with pytest.raises(RuntimeError):
        await p.run(Job(code="print(1)"))
