"""One confined runner, made by the warm worker ahead of demand: a monitor and its job process.

monitor (root, PID 1 of new PID/IPC/UTS namespaces): waits for the job to end or for a kill request
    from the server. Then it kills and reaps everything left in the namespace (setsid, double forks and
    fork bombs included) and only then reports the job's exit status. It never reads job data.
    Made by native/spawn.c, it shares the worker's memory only while it forks the job, then becomes
    native/init.c: the warm image is copied once per runner, for the job. Without the native helpers it
    is a Python fork of the worker that forks the job itself.
job (PID 2, a per-runner uid): its private file system (mounted and pivoted into while still root),
    rlimits, no_new_privs, Landlock, seccomp; then says "ready" and waits for its one job.
Without a PID namespace (weak mode) the monitor is a plain child and a subreaper, and kills every
descendant itself.
"""

from __future__ import annotations

import contextlib
import os
import resource
import select
import shutil
import signal
import socket
import sys
import tempfile
import traceback
from dataclasses import dataclass
from typing import NoReturn

from sandbox import frames, landlock, linux, native, plan, rootfs, runner, seccomp_filter
from sandbox.config import Layer, PoolConfig
from sandbox.plan import JobPlan

JOB_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "MPLBACKEND": "Agg",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


@dataclass(frozen=True)
class Setup:
    """What the worker prepared once and every runner uses."""

    config: PoolConfig
    layers: frozenset[Layer]
    seccomp_bpf: bytes | None
    landlock_abi: int
    spawner: native.Spawner | None  # the native monitor; None: the Python one


@dataclass(frozen=True)
class RunnerFds:
    channel: int  # job <-> server: the job, host calls, the report
    stdout: int
    stderr: int
    monitor: int  # monitor <-> server: kill requests in, the exit report out


def _close_all_but(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


NAMESPACES = linux.CLONE_NEWPID | linux.CLONE_NEWIPC | linux.CLONE_NEWUTS  # the monitor is their PID 1


def uses_native_spawn(setup: Setup) -> bool:
    """Whether runners come from the native spawn (sandbox/native/spawn.c); else from `start`."""
    return setup.spawner is not None and {"pidns", "mountns"} <= setup.layers  # zygote._probe ensures both


def start(setup: Setup, index: int, fds: RunnerFds) -> None:
    """In the worker, without the native spawn: fork the Python monitor of one runner (the worker
    closes its copies of `fds`)."""
    assert setup.config.uid_base is not None
    pidns = "pidns" in setup.layers
    pid = linux.fork_into(NAMESPACES) if pidns else os.fork()
    if pid != 0:
        return
    code = 1
    try:
        _monitor(setup, index, fds)
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def plan_for(setup: Setup, index: int, scratch: str) -> JobPlan:
    """Runner `index`'s confinement, for either path. With the mount namespace its root is the skeleton
    and `scratch` is /scratch; without, `scratch` is a host directory of its own."""
    c = setup.config
    assert c.uid_base is not None
    uid = c.uid_base + index
    mounted = "mountns" in setup.layers
    rules = None
    if "landlock" in setup.layers:
        writable = [*(rootfs.WRITABLE if mounted else (scratch,)), "/dev/null"]
        rules = landlock.rules(setup.landlock_abi, writable)
    return JobPlan(
        root=rootfs.skeleton_root() if mounted else None,
        mounts=rootfs.job_mounts(uid, c.scratch_mb, c.tmp_mb, c.shm_mb) if mounted else (),
        hostname=plan.HOSTNAME if "pidns" in setup.layers else None,
        cwd=scratch,
        rlimits=plan.rlimits(c),
        uid=uid if "uid" in setup.layers else None,
        landlock=rules,
        seccomp_bpf=setup.seccomp_bpf,
    )


def native_job() -> NoReturn:
    """The job under the native init (PID 2), already confined by native/spawn.c to its plan."""
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the worker ignores it (spawn.c reset it already)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    _serve_when_ready()


def _monitor(setup: Setup, index: int, fds: RunnerFds) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the worker ignores it to auto-reap monitors
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _close_all_but({0, 1, 2, fds.channel, fds.stdout, fds.stderr, fds.monitor})
    os.setsid()
    pidns = "pidns" in setup.layers
    if not pidns:
        linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)  # orphans of the job come back to us
    host_scratch = None
    if "mountns" not in setup.layers:
        host_scratch = tempfile.mkdtemp(prefix="openlive-job-")
    job = plan_for(setup, index, host_scratch or rootfs.SCRATCH)
    if host_scratch and job.uid is not None:
        os.chown(host_scratch, job.uid, job.uid)
    if job.root is not None:
        rootfs.enter_job_root(job.root, job.mounts)
    if job.hostname is not None:
        linux.sethostname(job.hostname)
    pid = os.fork()
    if pid == 0:
        os.close(fds.monitor)
        _job(job, fds)
    for fd in (fds.channel, fds.stdout, fds.stderr):
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    readable, _, _ = select.select([fds.monitor, pidfd], [], [])
    if fds.monitor in readable:  # a kill request, or the server went away
        os.kill(pid, signal.SIGKILL)
    _, wait_status, usage = os.wait4(pid, 0)
    _kill_the_rest(pidns)
    if host_scratch:
        shutil.rmtree(host_scratch, ignore_errors=True)
    report = {"t": "exit", "status": wait_status, "cpu": usage.ru_utime + usage.ru_stime}
    with contextlib.suppress(OSError):
        frames.send(socket.socket(fileno=fds.monitor), report)


def _kill_the_rest(pidns: bool) -> None:
    """Kill and reap everything the job left behind (orphans keep arriving here) until nothing is left.

    As PID 1, kill(-1) reaches every other process of the namespace; as a subreaper, our children.
    """
    while True:
        if pidns:
            with contextlib.suppress(ProcessLookupError):
                os.kill(-1, signal.SIGKILL)
        else:
            for task in os.listdir("/proc/self/task"):
                with open(f"/proc/self/task/{task}/children") as f:
                    for child in f.read().split():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(child), signal.SIGKILL)
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _job(job: JobPlan, fds: RunnerFds) -> NoReturn:
    """The Python path of the job's side of its plan (native/spawn.c does the same in C)."""
    try:
        devnull = os.open("/dev/null", os.O_RDWR)
        for fd, target in ((devnull, 0), (fds.stdout, 1), (fds.stderr, 2), (fds.channel, 3)):
            os.dup2(fd, target)
        os.closerange(4, 1 << 16)
        os.chdir(job.cwd)
        os.setsid()
        for limit, soft, hard in job.rlimits:
            resource.setrlimit(limit, (soft, hard))
        if job.uid is not None:
            os.setgroups([])
            os.setresgid(job.uid, job.uid, job.uid)
            os.setresuid(job.uid, job.uid, job.uid)
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)  # a uid change clears it
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
        if job.landlock is not None:
            landlock.restrict(job.landlock)
        if job.seccomp_bpf is not None:
            seccomp_filter.load(job.seccomp_bpf)
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    _serve_when_ready()


def _serve_when_ready() -> NoReturn:
    """In the confined job: a clean environment, the job's streams, "ready", then its one job."""
    try:
        os.environ.clear()
        os.environ.update(JOB_ENV)
        sys.argv = [""]
        channel = socket.socket(fileno=3)
        streams = runner.prepare()
        frames.send(channel, {"t": "ready"})
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    runner.serve(channel, streams)
