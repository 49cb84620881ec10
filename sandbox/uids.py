"""Choosing the job uids: RLIMIT_NPROC counts per uid, so no two runners anywhere may share one."""

from __future__ import annotations

import os

FIRST = 2_000_000_000  # far above the ranges hosts hand out to users and to subordinate-id maps
STRIDE = 512  # uids per pool: enough for PoolConfig's largest slots + spare_runners
_RANGES = 200_000

_claimed: set[int] = set()  # bases taken by pools of this process


def uids_in_use(uids: range) -> dict[int, int]:
    """{uid: pid} for every running process whose real uid is in `uids`."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/status") as f:
                uid = int(next(line.split()[1] for line in f if line.startswith("Uid:")))
        except (OSError, StopIteration, ValueError):
            continue
        if uid in uids:
            found[uid] = int(pid)
    return found


def claim(count: int, base: int | None) -> int:
    """A base whose `count` uids no process uses. Derived from our pid unless given; raises if taken."""
    if base is not None:
        if base in _claimed or (taken := uids_in_use(range(base, base + count))):
            raise OSError(f"uids from {base} are already in use ({taken or 'by this process'}); set uid_base")
        _claimed.add(base)
        return base
    start = os.getpid() % _RANGES
    for step in range(_RANGES):
        candidate = FIRST + (start + step) % _RANGES * STRIDE
        if candidate not in _claimed and not uids_in_use(range(candidate, candidate + count)):
            _claimed.add(candidate)
            return candidate
    raise OSError("no free uid range for the sandbox")


def release(base: int) -> None:
    _claimed.discard(base)
