"""LocalPool: the executor the server uses. Warm, isolated runners; results in milliseconds.

One warm worker process forks a confined runner per runner index ahead of demand (each index has its own
uid, so RLIMIT_NPROC counts per job). A job takes a ready runner, runs in it, and the runner is torn down
and replaced. Jobs wait in a bounded queue served round-robin across sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter, deque
from collections.abc import Coroutine
from typing import Any

from sandbox import rootfs, uids
from sandbox.config import PoolConfig
from sandbox.conversation import ExitStatus, converse
from sandbox.fair_queue import FairQueue
from sandbox.models import HostCall, Job, Outcome, Result
from sandbox.status import LayerStatus, PoolStatus, State
from sandbox.worker import Runner, RunnerFailed, Worker

log = logging.getLogger("openlive.sandbox")

_TEARDOWN_TIMEOUT_S = 10.0
# A used runner's exit costs about 2 ms of CPU (its memory and namespaces). When nothing else is going
# on, it is put off this long, so that on a busy core it does not delay the result on its way (the next
# process to wake: the caller's task here, or the broker and the server for a remote worker).
_RETIRE_AFTER_S = 0.005
_MAX_BACKOFF_S = 30.0


class SandboxUnavailable(RuntimeError):
    """The pool cannot run jobs with the isolation it was configured for (or it is closed)."""


class LocalPool:
    """Runs jobs in warm, confined processes on this machine. `run` never blocks the event loop."""

    def __init__(self, config: PoolConfig | None = None) -> None:
        self.config = config or PoolConfig()
        self._state: State = "stopped"
        self._worker: Worker | None = None
        self._worker_up = asyncio.Event()
        self._layers: dict[str, LayerStatus] = {}
        self._tasks: asyncio.TaskGroup | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._ready: deque[Runner] = deque()
        self._busy: set[Runner] = set()
        self._retiring: set[Runner] = set()  # done with their job; killed in _RETIRE_AFTER_S
        self._queue: FairQueue[Runner] = FairQueue()
        self._session_running: Counter[str] = Counter()
        self._anonymous = itertools.count()
        self._jobs_done = 0
        self._restarts = 0
        self._crashed_workers: list[int] = []  # their skeleton dirs can go once their runners are gone
        self._last_error: str | None = None
        self._started: asyncio.Future[None] | None = None
        self._uid_base: int | None = None  # claimed in start, released in close
        self._change: asyncio.Future[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the worker and fill every runner; SandboxUnavailable if isolation or start-up fails."""
        if self._state != "stopped":
            raise RuntimeError(f"the pool is {self._state}")
        self._state = "starting"
        try:
            base = await asyncio.to_thread(uids.claim, self.config.runners, self.config.uid_base)
        except OSError as e:
            self._state = "closed"
            raise SandboxUnavailable(str(e)) from None
        self._uid_base = base
        self.config = self.config.model_copy(update={"uid_base": base})
        self._started = asyncio.get_running_loop().create_future()
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        try:
            await self._start_worker()
            self._spawn(self._supervise_worker())
            for index in range(self.config.runners):
                self._spawn(self._keep_runner(index))
            async with asyncio.timeout(self.config.start_timeout_s):
                await self._started
        except BaseException as e:
            await self.close()
            if isinstance(e, TimeoutError):
                raise SandboxUnavailable(f"runners not ready after {self.config.start_timeout_s:g} s") from e
            raise
        self._state = "ready"
        log.info("sandbox pool ready: %s", self.status().model_dump_json())

    async def close(self) -> None:
        """Kill every runner and job, stop the worker. Queued jobs fail."""
        self._state = "closed"
        while (ticket := self._queue.pop({}, 1)) is not None:
            ticket.granted.set_exception(SandboxUnavailable("the sandbox pool is shutting down"))
        for runner in [*self._ready, *self._busy, *self._retiring]:
            runner.close()
        self._ready.clear()
        self._retiring.clear()
        for task in self._background:
            task.cancel()
        if self._tasks is not None:
            await self._tasks.__aexit__(None, None, None)
            self._tasks = None
        if self._worker is not None:
            await self._worker.stop()
        for pid in self._crashed_workers:
            rootfs.remove_skeleton_dir(pid)
        self._crashed_workers.clear()
        if self._uid_base is not None:
            uids.release(self._uid_base)
            self._uid_base = None
        self._notify()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._tasks is not None
        task = self._tasks.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _start_worker(self) -> None:
        worker = Worker(self.config)
        try:
            await worker.start()
        except BaseException:
            await worker.stop()
            raise
        self._layers = {name: LayerStatus(**v) for name, v in worker.hello["layers"].items()}
        missing = {name: layer.detail for name, layer in self._layers.items() if not layer.ok}
        problems = []
        if missing and not self.config.allow_weak_isolation:
            problems.append(
                f"isolation layers unavailable: {missing}; set allow_weak_isolation to run anyway"
            )
        if worker.hello["threads"] != 1:
            problems.append(f"the worker has {worker.hello['threads']} threads; forking it is unsafe")
        if worker.hello["preload_errors"]:
            log.warning("sandbox preload failed: %s", worker.hello["preload_errors"])
        if problems:
            await worker.stop()
            raise SandboxUnavailable("; ".join(problems))
        if missing:
            log.warning("sandbox running with WEAK isolation, missing: %s", missing)
        self._worker = worker
        self._worker_up.set()

    async def _supervise_worker(self) -> None:
        """Restart the worker if it dies; runners it already forked keep working meanwhile."""
        backoff = 0.5
        while True:
            assert self._worker is not None
            code = await self._worker.wait()
            if self._worker.pid is not None:
                self._crashed_workers.append(self._worker.pid)
            self._worker_up.clear()
            self._state = "degraded"
            self._last_error = f"sandbox worker exited with {code}; restarting"
            log.error(self._last_error)
            while True:
                try:
                    await self._start_worker()
                    break
                except Exception as e:
                    self._last_error = f"sandbox worker restart failed: {e}"
                    log.error(self._last_error)
                    await asyncio.sleep(backoff)  # back off; nothing to wait for but time
                    backoff = min(2 * backoff, _MAX_BACKOFF_S)
            self._restarts += 1
            self._state = "ready"
            backoff = 0.5

    async def _keep_runner(self, index: int) -> None:
        """Keep one confined runner ready for runner index `index`, forever."""
        backoff = 0.1
        while True:
            await self._worker_up.wait()
            assert self._worker is not None and self._tasks is not None
            try:
                runner = self._worker.fork_runner(index)
                try:
                    async with asyncio.timeout(self.config.start_timeout_s):
                        await runner.wait_ready(self._tasks)
                except BaseException:
                    runner.close()
                    raise
            except (RunnerFailed, TimeoutError, OSError) as e:
                self._last_error = f"runner {index} failed to start: {e}"
                log.error(self._last_error)
                if self._started is not None and not self._started.done():
                    self._started.set_exception(SandboxUnavailable(self._last_error))
                await asyncio.sleep(backoff)  # back off; nothing to wait for but time
                backoff = min(2 * backoff, _MAX_BACKOFF_S)
                continue
            backoff = 0.1
            self._ready.append(runner)
            self._dispatch()
            await asyncio.shield(runner.finished)  # used and torn down, or died while idle
            if runner in self._ready:
                self._ready.remove(runner)
            runner.close()
            self._notify()

    # --- jobs --------------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        if self._started is not None and not self._started.done() and len(self._ready) == self.config.runners:
            self._started.set_result(None)
        while self._ready and len(self._busy) < self.config.slots:
            ticket = self._queue.pop(self._session_running, self.config.per_session_limit)
            if ticket is None:
                break
            runner = self._ready.popleft()
            self._busy.add(runner)
            self._session_running[ticket.session] += 1
            ticket.granted.set_result(runner)
        self._notify()

    def _release(self, runner: Runner, session: str, lingering: bool = False) -> None:
        if lingering and not len(self._queue):
            self._retiring.add(runner)
            asyncio.get_running_loop().call_later(_RETIRE_AFTER_S, self._retire, runner)
        else:
            runner.kill()
        self._busy.discard(runner)
        self._session_running[session] -= 1
        if self._session_running[session] <= 0:
            del self._session_running[session]
        self._dispatch()

    def _retire(self, runner: Runner) -> None:
        self._retiring.discard(runner)
        runner.kill()

    def _notify(self) -> None:
        if self._change is not None and not self._change.done():
            self._change.set_result(None)
        self._change = None

    async def wait_idle(self) -> None:
        """Until nothing runs or waits and every runner is ready again (so every job's processes are gone)."""
        while self._busy or len(self._queue) or len(self._ready) < self.config.runners:
            if self._change is None:
                self._change = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._change)

    def _busy_result(self, why: str) -> Result:
        return Result(outcome=Outcome.FAILED, output=f"[sandbox] {why}; try again later")

    async def run(self, job: Job, host_call: HostCall | None = None) -> Result:
        if self._state not in ("ready", "degraded"):
            raise SandboxUnavailable(f"the sandbox pool is {self._state}")
        # A job without a session is its own session: no per-session cap, first come first served.
        session = job.session or f"\0anonymous-{next(self._anonymous)}"
        queued_at = time.perf_counter()  # not loop.time(): uvloop's clock ticks in whole ms
        ticket = self._queue.push(session)
        self._dispatch()
        if not ticket.granted.done() and len(self._queue) > self.config.queue_limit:
            self._queue.remove(ticket)
            return self._busy_result(f"sandbox busy: {len(self._queue)} jobs are already waiting")
        try:
            async with asyncio.timeout(self.config.queue_timeout_s):
                runner = await asyncio.shield(ticket.granted)
        except TimeoutError:
            self._queue.remove(ticket)
            if not ticket.granted.done():
                busy = self._busy_result(f"no sandbox became free within {self.config.queue_timeout_s:g} s")
                return busy.model_copy(update={"queue_wait_s": self.config.queue_timeout_s})
            runner = ticket.granted.result()
        except SandboxUnavailable as e:
            return Result(outcome=Outcome.FAILED, output=f"[sandbox] {e}")
        except asyncio.CancelledError:
            self._queue.remove(ticket)
            if ticket.granted.done() and not ticket.granted.exception():
                self._release(ticket.granted.result(), session)
            raise
        waited = time.perf_counter() - queued_at
        result = await self._run_on(runner, session, job, host_call)
        return result.model_copy(update={"queue_wait_s": waited})

    async def _run_on(self, runner: Runner, session: str, job: Job, host_call: HostCall | None) -> Result:
        assert runner.reader is not None and runner.writer is not None
        stdout_fd, stderr_fd = runner.take_outputs()

        async def exit_status() -> ExitStatus:
            return await asyncio.shield(runner.finished)

        # When the pool is otherwise at rest (every other runner ready, no job waiting), the runner's exit
        # waits until the result is on its way; in a burst it exits at once, so refills are not delayed.
        linger = len(self._ready) + len(self._busy) == self.config.runners and not len(self._queue)
        result: Result | None = None
        try:
            result = await converse(
                runner.reader,
                runner.writer,
                stdout_fd,
                stderr_fd,
                job,
                host_call,
                self.config,
                exit_status,
                linger,
            )
            return result
        finally:
            self._jobs_done += 1
            succeeded = result is not None and result.outcome == Outcome.OK
            self._release(runner, session, linger and succeeded)
            if not succeeded:
                # Killed, cancelled or failed: return only once its processes are gone.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_TEARDOWN_TIMEOUT_S):
                        await asyncio.shield(runner.finished)

    # --- health ------------------------------------------------------------------------------------

    def status(self) -> PoolStatus:
        missing = [name for name, layer in self._layers.items() if not layer.ok]
        c = self.config
        return PoolStatus(
            state=self._state,
            isolation="unknown" if not self._layers else ("weak" if missing else "full"),
            layers=self._layers,
            memory_bound_mb_per_job=c.memory_mb * c.processes,
            slots=c.slots,
            runners_ready=len(self._ready),
            running=len(self._busy),
            queued=len(self._queue),
            jobs_done=self._jobs_done,
            worker_pid=self._worker.pid if self._worker else None,
            worker_restarts=self._restarts,
            last_error=self._last_error,
        )
