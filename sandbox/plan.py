"""What confines one runner's job: one description, decided in the worker, carried out by either path.

The native path (native/spawn.c) carries it out in C in the freshly forked job, before the job runs any
Python: no ctypes call and no Python object touched (each touched page of the warm image is a
copy-on-write fault). The Python path (confine.py) carries out the same plan where there is no C
compiler or no mount namespace (weak modes). Both apply it in the order of the fields below.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import Literal

from sandbox.config import PoolConfig

HOSTNAME = "sandbox"


@dataclass(frozen=True)
class Mount:
    """One mount(2) call; `create` makes the mount point first (it may lie in a tmpfs mounted just before)."""

    source: str
    target: str
    fstype: str | None
    flags: int
    data: str | None = None
    create: Literal["", "dir", "file"] = ""


@dataclass(frozen=True)
class LandlockRules:
    """A Landlock ruleset: rights handled, and what each path (with what lies beneath it) keeps of them.

    A rule on a path that is not a directory keeps only `file_only` of its rights (the kernel refuses the
    others); each path is looked at when the rule is added, in the job's own root.
    """

    fs: int
    net: int
    scoped: int
    attr_size: int  # bytes of the ruleset attribute the kernel's ABI knows (no `scoped` before ABI 6)
    file_only: int
    rules: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class JobPlan:
    """The job's confinement, applied in the job before it says "ready" (uid and root still privileged).

    mounts: in a new mount namespace, then pivot_root into `root` (None: no mount namespace, stays put);
    hostname (None: no UTS namespace); stdio on /dev/null, stdout, stderr, the channel as fd 3, every
    other descriptor closed; cwd; a session of its own; rlimits; the uid (None: unchanged); parent-death
    signal and no_new_privs; Landlock; seccomp.
    """

    root: str | None
    mounts: tuple[Mount, ...]
    hostname: str | None
    cwd: str
    rlimits: tuple[tuple[int, int, int], ...]
    uid: int | None
    landlock: LandlockRules | None
    seccomp_bpf: bytes | None


def rlimits(c: PoolConfig) -> tuple[tuple[int, int, int], ...]:
    mib = 1 << 20
    return (
        (resource.RLIMIT_AS, c.memory_mb * mib, c.memory_mb * mib),
        (resource.RLIMIT_CPU, c.cpu_s, c.cpu_s + 1),  # SIGXCPU, then SIGKILL for a job that ignores it
        (resource.RLIMIT_FSIZE, c.file_size_mb * mib, c.file_size_mb * mib),
        (resource.RLIMIT_NOFILE, c.open_files, c.open_files),
        (resource.RLIMIT_NPROC, c.processes, c.processes),
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_MEMLOCK, 0, 0),
        (resource.RLIMIT_MSGQUEUE, 0, 0),
    )
