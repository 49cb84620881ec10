"""Interruption: how soon a new clientContent stops a turn, measured outside the server.

1. A running 20-second sandbox job (it has started a child process): from sending the interrupting
   clientContent to both processes of the job's tree having exited (pidfds, so no polling), to the
   `interrupted` frame, and to the exit of the job's monitor (the sandbox's PID 1 of the job's
   namespaces, which exits after reaping and reporting: mostly namespace teardown). Limit: 100 ms
   (issue 8). Peer, the floor: SIGKILL of a plain local process group of the same shape (python + a
   python child) and its exit, with no sandbox, socket or session between.
2. Streamed text (the scripted model at 50 ms a chunk): from sending the clientContent to `interrupted`.

    python bench/bench_interrupt.py [--rounds 20]

The server is `openlive serve --backend scripted` without TLS, started by this script.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.live_helpers
from tests.live_helpers import process_chain, wait_exited

BIN = Path(sys.executable).parent
LIMIT_MS = 100.0
PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent?key=bench"
SCRIPT = """
rules:
  - match: "run the long job (\\\\w+)"
    reply:
      - code: |
          import subprocess, sys, time
          child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(20)", "{{match.1}}"])
          default_api.job_started()
          time.sleep(20)
  - match: "story"
    reply:
      - text: "%s"
        pace_s: 0.05
  - match: "echo (.*)"
    reply:
      - text: "echo: {{match.1}}"
""" % ("once upon a time " * 100)
SETUP = {
    "setup": {
        "model": "models/gemini-live-2.5-flash-preview",
        "generationConfig": {"responseModalities": ["TEXT"]},
        "tools": [{"codeExecution": {}}, {"functionDeclarations": [{"name": "job_started"}]}],
    }
}


def say(text: str) -> str:
    return json.dumps(
        {"clientContent": {"turns": [{"role": "user", "parts": [{"text": text}]}], "turnComplete": True}}
    )


async def until(ws: Any, key: str) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = json.loads(await ws.recv())
        if key in message or key in message.get("serverContent", {}):
            return message


async def job_round(url: str) -> tuple[float, float, float]:
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps(SETUP))
        await until(ws, "setupComplete")
        marker = f"m{uuid.uuid4().hex}"
        await ws.send(say(f"run the long job {marker}"))
        call = (await until(ws, "toolCall"))["toolCall"]["functionCalls"][0]
        answer = {"id": call["id"], "name": call["name"], "response": {}}
        await ws.send(json.dumps({"toolResponse": {"functionResponses": [answer]}}))
        *job, monitor = process_chain(marker, 3)  # the job's child, the job, its monitor
        sent = time.perf_counter()
        await ws.send(say("echo after"))
        gone = wait_exited(job)
        await until(ws, "interrupted")
        told = time.perf_counter()
        ended = wait_exited([monitor])
        await until(ws, "turnComplete")
        return (gone - sent) * 1000, (told - sent) * 1000, (ended - sent) * 1000


async def text_round(url: str) -> float:
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps(SETUP))
        await until(ws, "setupComplete")
        await ws.send(say("tell me a story"))
        await until(ws, "modelTurn")
        sent = time.perf_counter()
        await ws.send(say("echo after"))
        await until(ws, "interrupted")
        return (time.perf_counter() - sent) * 1000


def floor_round() -> float:
    """SIGKILL of a local process group shaped like the job (python + a python child) until both exit."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time\n"
         "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(20)'])\n"
         "print(c.pid, flush=True); time.sleep(20)"],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    fds = [os.pidfd_open(proc.pid), os.pidfd_open(child)]
    start = time.perf_counter()
    os.killpg(proc.pid, signal.SIGKILL)
    took = (wait_exited(fds) - start) * 1000
    proc.wait()
    return took


def summary(name: str, samples: list[float]) -> str:
    s = sorted(samples)
    p95 = s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]
    return (
        f"{name:44} p50 {statistics.median(s):7.2f} ms  p95 {p95:7.2f} ms  max {s[-1]:7.2f} ms  "
        f"limit/p95 {LIMIT_MS / p95:6.1f}x"
    )


async def measure(url: str, rounds: int) -> tuple[list[tuple[float, float, float]], list[float]]:
    jobs = [await job_round(url) for _ in range(rounds)]
    texts = [await text_round(url) for _ in range(rounds)]
    return jobs, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "script.yaml"
        script.write_text(SCRIPT)
        argv = [str(BIN / "openlive"), "serve", "--host", "127.0.0.1", "--port", "0", "--api-key", "bench",
                "--backend", "scripted", "--script", str(script)]  # fmt: skip
        server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert server.stdout is not None
            line = server.stdout.readline().strip()
            if " listening on " not in line:
                raise SystemExit(f"server did not start: {line!r}")
            url = line.rsplit(" ", 1)[1].replace("http://", "ws://") + PATH
            jobs, texts = asyncio.run(measure(url, args.rounds))
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(30)
    floor = [floor_round() for _ in range(args.rounds)]
    print(f"{args.rounds} rounds each; load {os.getloadavg()[0]:.2f}")
    print(summary("job tree exited after clientContent", [g for g, _, _ in jobs]))
    print(summary("  `interrupted` received (job)", [t for _, t, _ in jobs]))
    print(summary("  the job's monitor (namespace teardown) exited", [m for _, _, m in jobs]))
    print(summary("`interrupted` received (streamed text)", texts))
    print(summary("floor: killpg of a local python tree", floor))
    ratio = statistics.median(g for g, _, _ in jobs) / statistics.median(floor)
    print(f"job tree exit through openlive / local killpg floor (p50): {ratio:.1f}x")


if __name__ == "__main__":
    main()
