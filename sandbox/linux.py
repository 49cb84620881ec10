"""The few Linux system calls Python 3.11's `os` lacks (namespaces, mounts, prctl), through ctypes."""

from __future__ import annotations

import ctypes
import os
import platform

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 0x2

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NAME = 15
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
SECCOMP_MODE_FILTER = 2

_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(platform.machine())
_SYS_CLONE = {"x86_64": 56, "aarch64": 220}.get(platform.machine())
_SIGCHLD = 17
_pylibc = ctypes.PyDLL(None, use_errno=True)  # keeps the GIL across the call, as os.fork() does


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def fork_into(namespaces: int) -> int:
    """os.fork(), but the child starts in new `namespaces` (with CLONE_NEWPID it is that namespace's PID 1).

    unshare(CLONE_NEWPID) works once per process; a raw clone() works every time, so the warm worker
    can put each runner in its own PID namespace without an extra fork of its large image.
    """
    if _SYS_CLONE is None:
        raise OSError(38, f"clone: unknown syscall number on {platform.machine()}")
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    args = (namespaces | _SIGCHLD, 0, 0, 0, 0)  # flags, no new stack (fork-like), no tid/tls pointers
    pid = _pylibc.syscall(ctypes.c_long(_SYS_CLONE), *(ctypes.c_long(a) for a in args))
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone: {os.strerror(err)}")
    return int(pid)


_MADV_HUGEPAGE = 14
_MADV_COLLAPSE = 25  # Linux 6.1
_HUGE = 2 << 20


def collapse_to_huge_pages() -> int:
    """Back this process's private anonymous memory (the heap, Python's arenas) with 2 MiB pages, now.

    Where a region holds whole aligned 2 MiB spans. fork() then shares one entry per 2 MiB instead of
    copying 512, and the child's exit frees as few; a child's write still copies only the 4 KiB it
    touches. Returns the bytes collapsed; kernels without transparent huge pages collapse nothing.
    """
    madvise = _libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    collapsed = 0
    with open("/proc/self/maps") as f:
        regions = [line.split() for line in f]
    for fields in regions:
        path = fields[5] if len(fields) > 5 else ""
        if path not in ("", "[heap]") or fields[1][1] != "w" or fields[1][3] != "p":
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        start, end = -(-start // _HUGE) * _HUGE, end // _HUGE * _HUGE
        if (
            end > start
            and madvise(start, end - start, _MADV_HUGEPAGE) == 0
            and madvise(start, end - start, _MADV_COLLAPSE) == 0
        ):
            collapsed += end - start
    return collapsed


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode(), target.encode(), fstype and fstype.encode(), flags, data and data.encode()
        ),
        f"mount {target}",
    )


def umount2(target: str, flags: int) -> None:
    _check(_libc.umount2(target.encode(), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    if _SYS_PIVOT_ROOT is None:
        raise OSError(38, f"pivot_root: unknown syscall number on {platform.machine()}")
    _check(_libc.syscall(_SYS_PIVOT_ROOT, new_root.encode(), put_old.encode()), "pivot_root")


def prctl(option: int, arg2: int | bytes = 0, arg3: int | ctypes.c_void_p = 0) -> None:
    _check(_libc.prctl(option, arg2, arg3, 0, 0), f"prctl {option}")


def sethostname(name: str) -> None:
    _check(_libc.sethostname(name.encode(), len(name)), "sethostname")


def syscall(number: int, *args: int | ctypes.c_void_p | None) -> int:
    return _check(_libc.syscall(number, *args), f"syscall {number}")
