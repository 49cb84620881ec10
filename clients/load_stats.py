"""What `openlive bench` measures and reports: latency percentiles, errors, and the server's RSS/CPU."""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


class Percentiles(BaseModel):
    """Milliseconds; nearest-rank percentiles."""

    count: int
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None
    mean: float | None = None

    @classmethod
    def of(cls, seconds: list[float]) -> Percentiles:
        if not seconds:
            return cls(count=0)
        ordered = sorted(seconds)

        def rank(q: float) -> float:
            return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000, 2)

        return cls(
            count=len(ordered),
            p50=rank(0.50),
            p95=rank(0.95),
            p99=rank(0.99),
            max=round(ordered[-1] * 1000, 2),
            mean=round(sum(ordered) / len(ordered) * 1000, 2),
        )


class ServerUsage(BaseModel):
    """The server process and its descendants (sandbox workers) as /proc saw them during the run."""

    pid: int
    processes: int
    rss_mb_start: float
    rss_mb_max: float
    rss_mb_end: float
    cpu_s: float
    cpu_percent: float  # of one core, averaged over the run


class BenchResult(BaseModel):
    scenario: str
    url: str
    sessions: int
    duration_s: float
    think_s: float
    sessions_connected: int
    turns_sent: int = 0
    turns_completed: int
    turns_per_s: float
    errors: dict[str, int]
    error_total: int
    connect_ms: Percentiles
    first_content_ms: Percentiles
    turn_complete_ms: Percentiles
    code_execution_ms: Percentiles
    server: ServerUsage | None = None
    client_cpu_s: float


@dataclass
class Samples:
    """Raw observations from every session, appended as they happen (one event loop, no locks)."""

    connect: list[float] = field(default_factory=list)
    first_content: list[float] = field(default_factory=list)
    turn_complete: list[float] = field(default_factory=list)
    code_execution: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    connected: int = 0
    active: int = 0
    turns_sent: int = 0

    def error(self, kind: str) -> None:
        self.errors[kind] += 1


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def _cpu_and_rss(pid: int) -> tuple[float, int]:
    """CPU seconds (user + system) and resident bytes of one process; zeros once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except OSError:
        return 0.0, 0
    return (int(fields[11]) + int(fields[12])) / _TICKS, pages * _PAGE


class ProcessWatch:
    """Samples a server's tree: RSS now and then, CPU as the difference between start and end."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu: dict[int, float] = {}
        self.cpu_start = 0.0
        self.rss: list[int] = []
        self.processes = 0

    def sample(self) -> None:
        rss = 0
        pids = _descendants(self.pid)
        for pid in pids:
            cpu, resident = _cpu_and_rss(pid)
            self.cpu[pid] = max(cpu, self.cpu.get(pid, 0.0))  # a process that exits keeps what it used
            rss += resident
        self.rss.append(rss)
        self.processes = max(self.processes, len(pids))

    def start(self) -> None:
        self.sample()
        self.cpu_start = sum(self.cpu.values())

    def usage(self, wall_s: float) -> ServerUsage:
        self.sample()
        cpu = sum(self.cpu.values()) - self.cpu_start
        mb = 1024 * 1024
        return ServerUsage(
            pid=self.pid,
            processes=self.processes,
            rss_mb_start=round(self.rss[0] / mb, 1),
            rss_mb_max=round(max(self.rss) / mb, 1),
            rss_mb_end=round(self.rss[-1] / mb, 1),
            cpu_s=round(cpu, 2),
            cpu_percent=round(100 * cpu / wall_s, 1) if wall_s > 0 else 0.0,
        )
