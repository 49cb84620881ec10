"""The two small C helpers of the runner spawn (native/spawn.c, native/init.c), built once per source.

Why C: a runner is a monitor that is PID 1 of new namespaces with the job as its child. Forked in
Python, the monitor is a second copy of the worker's ~110 MB warm image: its page tables copied, its
pages faulted copy-on-write, torn down at exit, for every job. spawn.c makes the monitor share the
worker's memory just long enough to fork the job, then become init.c, a static program of a few pages;
and it is the worker's loop, so the worker runs no Python between runners and its heap stays on huge
pages.

They are compiled with the system C compiler into the cache directory (private to this user), keyed by
a hash of their sources, the first time a worker starts; without a compiler the pool falls back to the
Python monitor (same isolation, slower) and says so in the pidns layer's status.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sandbox.plan import JobPlan

SOURCES = Path(__file__).resolve().parent / "native"
_BUILD_TIMEOUT_S = 60.0
_LIBRARY = "libopenlive-spawn.so"
_INIT = "openlive-init"
# No _FORTIFY_SOURCE: its longjmp check refuses the job's jump from the monitor's stack back to the worker's.
_LIBRARY_FLAGS = ["-U_FORTIFY_SOURCE", "-fPIC", "-shared"]
_INIT_FLAGS = ["-static"]  # a static init execs in a fraction of the time; dynamic if no static libc


class _Mount(ctypes.Structure):
    _fields_ = (
        ("source", ctypes.c_char_p), ("target", ctypes.c_char_p), ("fstype", ctypes.c_char_p),
        ("data", ctypes.c_char_p), ("flags", ctypes.c_ulong), ("create", ctypes.c_int),
    )  # fmt: skip


class _Limit(ctypes.Structure):
    _fields_ = (("resource", ctypes.c_int), ("soft", ctypes.c_ulonglong), ("hard", ctypes.c_ulonglong))


class _LandlockRule(ctypes.Structure):
    _fields_ = (("path", ctypes.c_char_p), ("allowed", ctypes.c_uint64))


class _Plan(ctypes.Structure):
    """spawn.c's struct plan."""

    _fields_ = (
        ("root", ctypes.c_char_p), ("mounts", ctypes.POINTER(_Mount)), ("n_mounts", ctypes.c_int),
        ("hostname", ctypes.c_char_p), ("cwd", ctypes.c_char_p),
        ("limits", ctypes.POINTER(_Limit)), ("n_limits", ctypes.c_int),
        ("uid", ctypes.c_int), ("landlock", ctypes.c_int),
        ("ll_fs", ctypes.c_uint64), ("ll_net", ctypes.c_uint64), ("ll_scoped", ctypes.c_uint64),
        ("ll_file_only", ctypes.c_uint64), ("ll_attr_size", ctypes.c_int),
        ("ll_rules", ctypes.POINTER(_LandlockRule)), ("n_ll_rules", ctypes.c_int),
        ("bpf", ctypes.c_char_p), ("bpf_len", ctypes.c_int),
    )  # fmt: skip


def _c_string(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def _c_plan(plan: JobPlan) -> _Plan:
    """The plan as spawn.c reads it. Its arrays are owned by the returned structure (ctypes keeps them)."""
    if plan.root is None:
        raise ValueError("the native spawn confines jobs in a mount namespace of their own")
    create = {"": 0, "dir": 1, "file": 2}
    mounts = (_Mount * len(plan.mounts))(
        *(
            _Mount(m.source.encode(), m.target.encode(), _c_string(m.fstype), _c_string(m.data), m.flags,
                   create[m.create])
            for m in plan.mounts
        )
    )  # fmt: skip
    limits = (_Limit * len(plan.rlimits))(*(_Limit(*limit) for limit in plan.rlimits))
    ll = plan.landlock
    rules = (_LandlockRule * len(ll.rules if ll else ()))(
        *(_LandlockRule(path.encode(), allowed) for path, allowed in (ll.rules if ll else ()))
    )
    bpf = plan.seccomp_bpf
    return _Plan(
        plan.root.encode(), mounts, len(mounts), _c_string(plan.hostname), plan.cwd.encode(),
        limits, len(limits), -1 if plan.uid is None else plan.uid, ll is not None,
        ll.fs if ll else 0, ll.net if ll else 0, ll.scoped if ll else 0, ll.file_only if ll else 0,
        ll.attr_size if ll else 0, rules, len(rules), bpf, len(bpf) // 8 if bpf else 0,
    )  # fmt: skip


@dataclass(frozen=True)
class Spawner:
    """spawn.c loaded in the worker, and the init program its monitors become."""

    library: ctypes.PyDLL
    init: bytes

    def serve(self, control_fd: int, namespaces: int, plans: list[JobPlan]) -> int | None:
        """The worker's loop from now on. Returns in each job (PID 2 of `namespaces`, child of the init),
        already confined to plans[its runner index], with that index; None once the server is gone."""
        c_plans = (_Plan * len(plans))(*(_c_plan(p) for p in plans))
        index = ctypes.c_int(0)
        serve = self.library.openlive_serve
        if serve(control_fd, namespaces, self.init, c_plans, len(plans), ctypes.byref(index)) != 0:
            return None
        ctypes.pythonapi.PyOS_AfterFork_Child()
        return index.value


def _private_dir(path: Path) -> None:
    """Ours alone: what is built here runs as root, so nobody else may have written it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise OSError(f"{path} is not private to uid {os.geteuid()}")


def _compile(cc: str, args: list[str], target: Path) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        try:
            done = subprocess.run(
                [cc, "-O2", "-Wall", *args, "-o", str(out)],
                capture_output=True, text=True, timeout=_BUILD_TIMEOUT_S, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise OSError(f"{cc} took over {_BUILD_TIMEOUT_S:g} s") from None
        if done.returncode != 0:
            raise OSError(f"{cc} failed: {done.stderr.strip()[-500:]}")
        out.rename(target)  # atomic: workers starting together may build at once


def build(cache_dir: Path) -> Path:
    """The directory holding both helpers for the current sources, compiled now if need be."""
    sources = sorted(SOURCES.glob("*.c"))
    key = [repr([_LIBRARY_FLAGS, _INIT_FLAGS]).encode(), *(p.name.encode() + p.read_bytes() for p in sources)]
    digest = hashlib.sha256(b"".join(key)).hexdigest()[:16]
    out = cache_dir / "native" / digest
    if (out / _LIBRARY).exists() and (out / _INIT).exists():
        _private_dir(out)
        return out
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise OSError("no C compiler (cc) to build the runner spawn helpers")
    _private_dir(out)
    _compile(cc, [*_LIBRARY_FLAGS, str(SOURCES / "spawn.c")], out / _LIBRARY)
    init = str(SOURCES / "init.c")
    try:
        _compile(cc, [*_INIT_FLAGS, init], out / _INIT)
    except OSError:
        _compile(cc, [init], out / _INIT)
    return out


def load(cache_dir: Path) -> Spawner:
    """Build if needed and load; OSError says why the helpers cannot be used here."""
    out = build(cache_dir)
    library = ctypes.PyDLL(str(out / _LIBRARY), use_errno=True)
    try:
        serve = library.openlive_serve
    except AttributeError as e:
        raise OSError(str(e)) from None
    serve.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_Plan), ctypes.c_int,
                      ctypes.POINTER(ctypes.c_int)]  # fmt: skip
    serve.restype = ctypes.c_int
    return Spawner(library=library, init=str(out / _INIT).encode())
