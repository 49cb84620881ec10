"""The warm worker process: exec'd once with a clean environment, prepares everything shared, forks runners.

Start-up, once: no network (its own network namespace, inherited by every job), a private mount namespace
holding the read-only skeleton, the seccomp filter compiled to BPF, the libraries imported and a warm-up
figure drawn. Then it only forks: one monitor per runner request, handing over four descriptors. It never
reads a job's data, so no job's code or files can linger in its memory for the next fork.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from sandbox import confine, landlock, linux, native, rootfs, runner, seccomp_filter
from sandbox.config import LAYERS, Layer, PoolConfig

SOURCE_ROOT = Path(__file__).resolve().parent.parent
_WARM_UP_FIGURES = 3
BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from sandbox.zygote import main; main(int(sys.argv[2]))"


def _pidns_works() -> None:
    """The worker can clone a child into a new PID namespace, where it is PID 1."""
    pid = linux.fork_into(linux.CLONE_NEWPID)
    if pid == 0:
        os._exit(0 if os.getpid() == 1 else 1)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if code:
        raise OSError(f"probe child exited with {code}")


def _bind_paths(config: PoolConfig) -> list[str]:
    prefixes = [Path(p) for p in (sys.prefix, sys.base_prefix)]
    installed = any(p == SOURCE_ROOT or p in SOURCE_ROOT.parents for p in prefixes)
    paths = rootfs.python_paths(exclude=None if installed else SOURCE_ROOT)
    if config.cache_dir.is_dir():
        paths.append(str(config.cache_dir.resolve()))
    return paths


def _probe(
    config: PoolConfig,
) -> tuple[dict[Layer, tuple[bool, str]], bytes | None, int, native.Spawner | None]:
    """Set up each layer the host allows; say why for each one that it does not."""
    results: dict[Layer, tuple[bool, str]] = {}
    bpf: bytes | None = None
    abi = 0
    spawner: native.Spawner | None = None
    spawn_error = ""
    assert config.uid_base is not None
    uids = [config.uid_base + i for i in range(config.runners)]

    def step(layer: Layer) -> str:
        nonlocal bpf, abi, spawner, spawn_error
        if layer == "uid":
            if os.geteuid() != 0:
                raise OSError("not root: cannot switch to per-runner uids")
            return f"jobs run as uids {uids[0]}..{uids[-1]}, one per runner"
        if layer == "netns":
            linux.unshare(linux.CLONE_NEWNET)
            return "no network interfaces but a down loopback"
        if layer == "mountns":
            linux.unshare(linux.CLONE_NEWNS)
            rootfs.build_skeleton(_bind_paths(config), uids)
            return "read-only skeleton root; private /scratch, /tmp, /dev/shm and /proc per job"
        if layer == "seccomp":
            bpf = seccomp_filter.build()
            return f"{len(bpf) // 8} BPF instructions, blocked calls fail with EPERM"
        if layer == "landlock":
            abi = landlock.abi_version()
            if abi < 1:
                raise OSError("kernel has no Landlock")
            scoping = "" if abi >= 6 else "; no abstract-socket/signal scoping before ABI 6"
            return f"ABI {abi}: read-only outside the writable dirs, no TCP{scoping}"
        _pidns_works()
        try:
            spawner = native.load(config.cache_dir)
        except OSError as e:
            spawn_error = f"native helpers unavailable: {e}"
        return "one per job, with the monitor as its init: the whole tree dies with the job"

    for layer in LAYERS:
        if layer in config.skip_layers:
            results[layer] = (False, "skipped by configuration")
            continue
        try:
            results[layer] = (True, step(layer))
        except Exception as e:
            results[layer] = (False, f"{type(e).__name__}: {e}")
    if spawner is not None and not results["mountns"][0]:
        spawner = None  # the native job mounts its own root
        spawn_error = "the native spawn needs the mount namespace"
    ok, detail = results["pidns"]
    if ok:
        how = (
            f"monitor in Python ({spawn_error})"
            if spawner is None
            else "native monitor: one copy of the warm image per runner"
        )
        results["pidns"] = (ok, f"{detail}; {how}")
    return results, bpf, abi, spawner


def _warm_up(modules: list[str], dpi: int) -> dict[str, str]:
    errors = {}
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as e:
            errors[name] = f"{type(e).__name__}: {e}"
    plt: Any = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        # The first figures of a process pay for fonts, glyphs, canvas set-up and the interpreter's
        # specialisation of every drawing function: pay here, through the runner's own capture, so
        # that every runner inherits it warm.
        for _ in range(_WARM_UP_FIGURES):
            plt.plot(range(-5, 6), [x * x - 10 for x in range(-5, 6)], label="warm-up")
            plt.title("warm-up: y = x\N{SUPERSCRIPT TWO} - 10")
            plt.xlabel("x")
            plt.ylabel("y")
            plt.legend()
            runner.figures_as_png(dpi, 1)
            plt.close("all")
        # matplotlib empties its font cache in every forked child (open fonts would share one file
        # offset between processes); emptied here, no runner spends its start freeing them.
        font_manager: Any = sys.modules.get("matplotlib.font_manager")
        if font_manager is not None:
            font_manager._get_font.cache_clear()
    np: Any = sys.modules.get("numpy")
    if np is not None:
        np.random.seed()  # imports `secrets` & co. now rather than in every job
    return errors


def main(control_fd: int) -> None:
    linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    control = socket.socket(fileno=control_fd)
    config = PoolConfig.model_validate_json(control.recv(1 << 20))
    layers, bpf, abi, spawner = _probe(config)
    usable = frozenset(layer for layer, (ok, _) in layers.items() if ok)
    setup = confine.Setup(config=config, layers=usable, seccomp_bpf=bpf, landlock_abi=abi, spawner=spawner)
    preload_errors = _warm_up(config.preload, config.figure_dpi)
    hello = {
        "pid": os.getpid(),
        "layers": {layer: {"ok": ok, "detail": detail} for layer, (ok, detail) in layers.items()},
        "preload_errors": preload_errors,
        "threads": len(os.listdir("/proc/self/task")),  # forking is only safe from a single thread
    }
    control.send(json.dumps(hello).encode())
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # monitors are reaped by the kernel
    gc.collect()
    gc.freeze()  # keeps the collector from touching (and so copying) the warm heap in every fork
    linux.collapse_to_huge_pages()  # a fork copies, and an exit frees, 512 times fewer page table entries
    if confine.uses_native_spawn(setup):
        assert setup.spawner is not None and config.uid_base is not None
        plans = [confine.plan_for(setup, i, rootfs.SCRATCH) for i in range(config.runners)]
        if setup.spawner.serve(control.fileno(), confine.NAMESPACES, plans) is not None:
            confine.native_job()  # in a job, confined
        return  # the server is gone
    while True:
        message, fds, _, _ = socket.recv_fds(control, 1024, 4)
        if not message:
            return  # the server is gone
        try:
            if len(fds) == 4:
                confine.start(setup, int(message), confine.RunnerFds(*fds))
        except OSError as e:  # the server sees the runner's channel close and retries later
            print(f"openlive sandbox worker: cannot start a runner: {e}", file=sys.stderr)
        finally:
            for fd in fds:
                os.close(fd)
