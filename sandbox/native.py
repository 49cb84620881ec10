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

SOURCES = Path(__file__).resolve().parent / "native"
_BUILD_TIMEOUT_S = 60.0
_LIBRARY = "libopenlive-spawn.so"
_INIT = "openlive-init"
# No _FORTIFY_SOURCE: its longjmp check refuses the job's jump from the monitor's stack back to the worker's.
_LIBRARY_FLAGS = ["-U_FORTIFY_SOURCE", "-fPIC", "-shared"]
_INIT_FLAGS = ["-static"]  # a static init execs in a fraction of the time; dynamic if no static libc


@dataclass(frozen=True)
class Spawner:
    """spawn.c loaded in the worker, and the init program its monitors become."""

    library: ctypes.PyDLL
    init: bytes

    def serve(self, control_fd: int, namespaces: int) -> tuple[int, tuple[int, int, int, int]] | None:
        """The worker's loop from now on. Returns in each job (PID 2 of `namespaces`, child of the init):
        its runner index and descriptors (channel, stdout, stderr, monitor). None once the server is gone.
        """
        index = ctypes.c_int(0)
        fds = (ctypes.c_int * 4)()
        if self.library.openlive_serve(control_fd, namespaces, self.init, ctypes.byref(index), fds) != 0:
            return None
        ctypes.pythonapi.PyOS_AfterFork_Child()
        return index.value, (fds[0], fds[1], fds[2], fds[3])


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
    int_p = ctypes.POINTER(ctypes.c_int)
    serve.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, int_p, int_p]
    serve.restype = ctypes.c_int
    return Spawner(library=library, init=str(out / _INIT).encode())
