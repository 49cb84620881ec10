"""The job's view of the file system: a read-only skeleton built once, private writable mounts per job.

The skeleton holds only what Python needs (/usr, the interpreter's prefixes, a few /etc files, five
device nodes), so the server's files, its unix sockets, /home, /var, /run, /sys and the host's /tmp
simply do not exist for a job. Binding the interpreter's prefixes under a world-readable skeleton also
keeps Python importable after the uid drop, although it lives under a 0700 /root here.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sandbox import linux
from sandbox.plan import Mount

SCRATCH = "/scratch"  # the job's cwd
WRITABLE = (SCRATCH, "/tmp", "/dev/shm")

_ETC = (
    "hosts", "nsswitch.conf", "localtime", "timezone", "ld.so.cache", "ld.so.conf", "ld.so.conf.d",
    "ssl", "ca-certificates", "fonts", "mime.types", "alternatives", "matplotlibrc", "os-release",
)  # fmt: skip
_DEVICES = ("null", "zero", "full", "random", "urandom")
_RO = linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV


def skeleton_dir(worker_pid: int) -> str:
    """Where a worker mounts its skeleton, in its private mount namespace. A directory of its own, not
    /tmp itself: mounting over /tmp would hide an interpreter that lives under /tmp (a CI checkout)."""
    return f"/tmp/openlive-root-{worker_pid}"


def remove_skeleton_dir(worker_pid: int) -> None:
    """The host sees an empty directory; remove it once nothing of that worker runs any more."""
    with contextlib.suppress(OSError):
        os.rmdir(skeleton_dir(worker_pid))


@dataclass
class _Built:
    """Set in the worker by build_skeleton; the runners forked from it inherit it."""

    root: str = ""
    # Interpreter paths under /tmp: each job's private /tmp covers them, so they are bound again on top.
    tmp_binds: list[str] = field(default_factory=list)


_built = _Built()


def python_paths(exclude: Path | None) -> list[str]:
    """The interpreter's prefixes and import path, minus `exclude` (the server's source, if not installed)."""
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    candidates = prefixes | {p for p in sys.path if p and os.path.isdir(p) and Path(p).resolve() != exclude}
    paths = {q for p in candidates for q in (os.path.abspath(p), os.path.realpath(p))}
    return sorted(p for p in paths if not any(p != o and p.startswith(o + "/") for o in paths))


def _bind_ro(source: str, target: str) -> None:
    linux.mount(source, target, None, linux.MS_BIND | linux.MS_REC)
    linux.mount("none", target, None, linux.MS_REMOUNT | linux.MS_BIND | _RO)


def _mountpoint(root: str, path: str, like: str) -> str:
    target = root + path
    if os.path.isdir(like):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        Path(target).touch()
    return target


def build_skeleton(binds: list[str], uids: list[int]) -> None:
    """In the worker's own (already unshared) mount namespace: build and seal the skeleton."""
    linux.mount("none", "/", None, linux.MS_REC | linux.MS_PRIVATE)
    root = _built.root = skeleton_dir(os.getpid())
    os.makedirs(root, mode=0o755, exist_ok=True)
    _built.tmp_binds = [p for p in binds if p.startswith("/tmp/")]
    linux.mount("tmpfs", root, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "size=4m,mode=0755")
    for d in ("proc", "tmp", "dev/shm", "scratch", "etc", ".old", "root"):
        os.makedirs(f"{root}/{d}", mode=0o755, exist_ok=True)
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = f"/{name}"
        if os.path.islink(host):
            os.symlink(os.readlink(host), f"{root}{host}")
        elif os.path.isdir(host):
            _bind_ro(host, _mountpoint(root, host, host))
    for path in ["/usr", *binds]:
        _bind_ro(path, _mountpoint(root, path, path))
    for name in _ETC:
        host = f"/etc/{name}"
        if os.path.exists(host):
            _bind_ro(host, _mountpoint(root, host, host))
    # Our own passwd: the host's user list stays hidden and every job uid has a name and a home.
    users = [f"sandbox{i}:x:{uid}:{uid}:sandbox:/tmp:/usr/sbin/nologin" for i, uid in enumerate(uids)]
    Path(f"{root}/etc/passwd").write_text(
        "\n".join(["root:x:0:0:root:/root:/usr/sbin/nologin", *users]) + "\n"
    )
    groups = [f"sandbox{i}:x:{uid}:" for i, uid in enumerate(uids)]
    Path(f"{root}/etc/group").write_text("\n".join(["root:x:0:", *groups]) + "\n")
    for name in _DEVICES:
        target = _mountpoint(root, f"/dev/{name}", f"/dev/{name}")
        linux.mount(f"/dev/{name}", target, None, linux.MS_BIND)
    for name, to in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1")):
        os.symlink(to, f"{root}/dev/{name}")
    os.symlink("/proc/self/fd/2", f"{root}/dev/stderr")
    linux.mount("none", root, None, linux.MS_REMOUNT | linux.MS_BIND | _RO)


def job_mounts(uid: int, scratch_mb: int, tmp_mb: int, shm_mb: int) -> tuple[Mount, ...]:
    """A job's private writable mounts over the skeleton, made in its own mount namespace."""
    root = _built.root
    flags = linux.MS_NOSUID | linux.MS_NODEV
    mounts = [
        Mount("tmpfs", root + SCRATCH, "tmpfs", flags, f"size={scratch_mb}m,mode=0700,uid={uid},gid={uid}"),
        Mount("tmpfs", root + "/tmp", "tmpfs", flags, f"size={tmp_mb}m,mode=1777"),
    ]
    for path in _built.tmp_binds:  # bound again over the job's /tmp, read-only like the skeleton
        create: Literal["dir", "file"] = "dir" if os.path.isdir(path) else "file"
        mounts.append(Mount(path, root + path, None, linux.MS_BIND | linux.MS_REC, create=create))
        mounts.append(Mount("none", root + path, None, linux.MS_REMOUNT | linux.MS_BIND | _RO))
    mounts.append(Mount("tmpfs", root + "/dev/shm", "tmpfs", flags, f"size={shm_mb}m,mode=1777"))
    mounts.append(Mount("proc", root + "/proc", "proc", flags | linux.MS_NOEXEC, "hidepid=2"))
    return tuple(mounts)


def skeleton_root() -> str:
    return _built.root


def enter_job_root(root: str, mounts: tuple[Mount, ...]) -> None:
    """The Python path of a plan's mounts (native/spawn.c does the same): a new mount namespace, the
    job's private mounts, then pivot into the skeleton."""
    linux.unshare(linux.CLONE_NEWNS)
    for m in mounts:
        if m.create == "dir":
            os.makedirs(m.target, exist_ok=True)
        elif m.create == "file":
            os.makedirs(os.path.dirname(m.target), exist_ok=True)
            Path(m.target).touch()
        linux.mount(m.source, m.target, m.fstype, m.flags, m.data)
    os.chdir(root)
    linux.pivot_root(".", ".old")
    os.chdir("/")
    linux.umount2("/.old", linux.MNT_DETACH)
