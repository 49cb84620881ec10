"""`--workers N`: N server processes on one port, each with its own event loop.

Each process binds its own listening socket with SO_REUSEPORT, so the kernel spreads new connections
across them with no process in front. They share nothing in memory: what must be seen by all (session
resumption, ephemeral tokens) lives in a shared store. The parent only supervises: it reports the port
once every process listens, restarts a process that dies, and stops them gracefully on SIGINT/SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

log = logging.getLogger("openlive.processes")

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
RESTART_DELAY_S = 1.0

RunOne = Callable[[socket.socket, Callable[[], None]], None]
"""Serves on a listening socket until told to stop; calls its second argument once it is ready."""


def _bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say so, and without it the
    # second small frame of a turn waits for the client's delayed ACK (40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def listen(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    sock = _bind(host, port, reuse_port)
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _child(host: str, port: int, run_one: RunOne, ready: Connection) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # not the supervisor's handlers
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sock = listen(host, port, reuse_port=True)

    def on_ready() -> None:
        ready.send(os.getpid())
        ready.close()

    with contextlib.suppress(KeyboardInterrupt):
        run_one(sock, on_ready)


def serve_processes(
    host: str, port: int, count: int, run_one: RunOne, on_ready: Callable[[int], None]
) -> int:
    """Runs `count` processes of `run_one` on one port (0 picks one) until SIGINT or SIGTERM."""
    # Bound, never listening (the kernel gives connections only to listening sockets): holds the port.
    reserve = _bind(host, port, reuse_port=True)
    port = reserve.getsockname()[1]
    context = multiprocessing.get_context("fork")  # no loop or thread exists yet in this process
    processes: list[BaseProcess] = []

    def start() -> tuple[BaseProcess, Connection]:
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_child, args=(host, port, run_one, send), daemon=False)
        process.start()
        send.close()
        return process, receive

    stopping = False

    def stop(signum: int, _: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        started = [start() for _ in range(count)]
        for process, receive in started:
            processes.append(process)
            if not receive.poll(START_TIMEOUT_S):
                raise RuntimeError(f"server process {process.pid} did not start")
            receive.recv()
        reserve.close()
        on_ready(port)
        while not stopping:
            for i, process in enumerate(processes):
                if not process.is_alive() and not stopping:
                    log.error(
                        "server process %s exited with %s; restarting it", process.pid, process.exitcode
                    )
                    time.sleep(RESTART_DELAY_S)  # a crash loop must not spin
                    processes[i], _ = start()
            time.sleep(0.2)  # the supervisor's poll period; signals end it early
    except (RuntimeError, EOFError) as e:
        log.error("%s", e)
        return 1
    finally:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)  # graceful; a second SIGINT would force uvicorn out
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
    return 0
