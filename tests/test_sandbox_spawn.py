"""How runners are made: the native monitor (one copy of the warm image per runner), its fallback, and
the worker's heap on huge pages so that copy is cheap."""

from __future__ import annotations

import asyncio
import os
import platform
import re
from pathlib import Path

import pytest

from sandbox import Job, LocalPool, Outcome, PoolConfig, native


def _proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.strip() for k, _, v in (line.partition(":") for line in f)}


def _children(pid: int) -> list[int]:
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(_proc_status(int(name))["PPid"]) == pid:
                found.append(int(name))
        except (OSError, KeyError):
            continue
    return found


def _kb(value: str) -> int:
    return int(value.split()[0])


async def test_a_ready_runner_is_a_small_init_over_one_copy_of_the_warm_image(small_pool: LocalPool) -> None:
    await asyncio.wait_for(small_pool.wait_idle(), 30)
    worker = small_pool.status().worker_pid
    assert worker is not None
    assert "native monitor" in small_pool.status().layers["pidns"].detail
    monitors = await asyncio.to_thread(_children, worker)
    assert len(monitors) == small_pool.config.runners
    for monitor in monitors:
        status = await asyncio.to_thread(_proc_status, monitor)
        assert status["Name"] == "openlive-init"
        assert _kb(status["VmRSS"]) < 4096  # not a copy of the ~110 MB image
        (job,) = await asyncio.to_thread(_children, monitor)  # the job, waiting for its code
        assert _kb((await asyncio.to_thread(_proc_status, job))["VmRSS"]) > 30_000


async def test_back_to_back_beyond_the_ready_stock_then_all_of_it_ready_again() -> None:
    """The default stock (slots + 6 spare) is made at once; a run three times as long refills it, no leaks."""
    p = LocalPool(PoolConfig(slots=1))
    await p.start()
    try:
        stock = p.config.runners
        assert stock == 7 and p.status().runners_ready == stock
        for i in range(3 * stock):
            r = await p.run(Job(code=f"print({i})"))
            assert (r.outcome, r.output) == (Outcome.OK, f"{i}\n")
        await asyncio.wait_for(p.wait_idle(), 30)
        assert p.status().runners_ready == stock
        worker = p.status().worker_pid
        assert worker is not None
        assert len(await asyncio.to_thread(_children, worker)) == stock  # every used runner is gone
    finally:
        await p.close()


def _huge_pages_on() -> bool:
    """Transparent huge pages not switched off, and MADV_COLLAPSE (Linux 6.1) to collapse onto them."""
    release = tuple(int(n) for n in re.findall(r"\d+", platform.release())[:2])
    try:
        enabled = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False
    return "[never]" not in enabled and release >= (6, 1)


@pytest.mark.skipif(not _huge_pages_on(), reason="no transparent huge pages or MADV_COLLAPSE on this host")
async def test_the_worker_heap_stays_on_huge_pages_while_it_makes_runners(small_pool: LocalPool) -> None:
    """Collapsed after warm-up; the native loop writes none of it, so forks do not split it again
    (a Python loop touched, and so split, more than half of it within the first runners)."""
    for i in range(3 * small_pool.config.runners):
        assert (await small_pool.run(Job(code=f"print({i})"))).output == f"{i}\n"
    worker = small_pool.status().worker_pid
    assert worker is not None
    rollup = await asyncio.to_thread(Path(f"/proc/{worker}/smaps_rollup").read_text)
    huge_kb = int(rollup.split("AnonHugePages:")[1].split()[0])
    anon_kb = _kb((await asyncio.to_thread(_proc_status, worker))["RssAnon"])
    assert huge_kb >= 0.6 * anon_kb, (huge_kb, anon_kb)


async def test_helpers_are_not_trusted_from_a_directory_others_can_write(tmp_path: Path) -> None:
    built = await asyncio.to_thread(native.build, tmp_path)
    assert built.stat().st_mode & 0o777 == 0o700
    built.chmod(0o777)
    with pytest.raises(OSError, match="not private"):
        await asyncio.to_thread(native.build, tmp_path)


async def test_without_the_helpers_the_python_monitor_keeps_every_layer(tmp_path: Path) -> None:
    """The helpers' directory is not private, so they are not used: same isolation, the slower monitor."""
    built = await asyncio.to_thread(native.build, tmp_path)
    built.chmod(0o777)
    p = LocalPool(PoolConfig(slots=1, spare_runners=0, cache_dir=tmp_path))
    await p.start()
    try:
        status = p.status()
        assert status.isolation == "full"
        detail = status.layers["pidns"].detail
        assert "monitor in Python" in detail and "not private" in detail
        r = await p.run(Job(code="import os\nprint(os.getpid(), os.getppid())"))
        assert (r.outcome, r.output) == (Outcome.OK, "2 1\n")
        worker = status.worker_pid
        assert worker is not None
        await asyncio.wait_for(p.wait_idle(), 30)
        (monitor,) = await asyncio.to_thread(_children, worker)
        assert (await asyncio.to_thread(_proc_status, monitor))["Name"] != "openlive-init"
    finally:
        await p.close()


async def test_without_a_mount_namespace_the_python_monitor_makes_runners() -> None:
    """The native job mounts its own root, so a pool whose mount namespace is off keeps the Python one."""
    weak = PoolConfig(slots=1, spare_runners=0, skip_layers=frozenset({"mountns"}), allow_weak_isolation=True)
    p = LocalPool(weak)
    await p.start()
    try:
        detail = p.status().layers["pidns"].detail
        assert detail.endswith("monitor in Python (the native spawn needs the mount namespace)")
        r = await p.run(Job(code="import os\nprint(os.getpid(), os.getppid())"))
        assert (r.outcome, r.output) == (Outcome.OK, "2 1\n")
    finally:
        await p.close()
