"""Voice: from the end of the user's speech to the first audio byte of the answer, at 1 and N concurrent
voice sessions, against openlive's whole pipeline (Silero VAD, pocketsphinx, the model, espeak-ng).

    python bench/bench_voice.py                                   # scripted model, 1 and 20 sessions
    python bench/bench_voice.py --backend llama --sessions 1 20   # the embedded model
    python bench/bench_voice.py --sessions 1 10 20 30 40          # where real time is lost

Each session streams espeak-ng speech ("what is the sum of the first fifty prime numbers", 3.1 s) in
40 ms chunks at real time, then `audioStreamEnd` (the microphone stops: the explicit end of speech), and
times the first `audio/pcm;rate=24000` part of the answer; then waits for turnComplete (playback) and
talks again. A run "keeps real time" when every turn's first audio came within 1 s. The ratio printed is
p50 against the goal of 300 ms (Pipecat and Unmute publish 450-800 ms on GPUs).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.speech import chunks, speak  # noqa: E402

BIN = Path(sys.executable).parent
QUESTION = "what is the sum of the first fifty prime numbers"
GOAL_MS = 300.0
REAL_TIME_MS = 1000.0
PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


def start(backend: str, script: Path) -> tuple[subprocess.Popen[str], str]:
    argv = [str(BIN / "openlive"), "serve", "--port", "0", "--backend", backend]
    argv += ["--script", str(script)] if backend == "scripted" else []
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("openlive listening on "):
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, line.removeprefix("openlive listening on ").replace("http://", "ws://")


async def session(url: str, frames: list[str], turns: int, latencies: list[float], errors: list[str]) -> None:
    try:
        await _talk(url, frames, turns, latencies)
    except (TimeoutError, OSError, websockets.ConnectionClosed) as exc:
        errors.append(type(exc).__name__)


async def _talk(url: str, frames: list[str], turns: int, latencies: list[float]) -> None:
    generation = {"responseModalities": ["AUDIO"], "maxOutputTokens": 40}  # short answers: short playback
    setup = {"setup": {"model": "models/gemini-live-2.5-flash-preview", "generationConfig": generation}}
    async with websockets.connect(url + PATH, max_size=None, open_timeout=60) as ws:
        await ws.send(json.dumps(setup))
        json.loads(await ws.recv())
        for _ in range(turns):
            for frame in frames:
                await ws.send(frame)
                await asyncio.sleep(0.04)  # a live microphone's pace
            await ws.send('{"realtimeInput":{"audioStreamEnd":true}}')
            ended = time.monotonic()
            first: float | None = None
            async with asyncio.timeout(120):
                while True:
                    message: dict[str, Any] = json.loads(await ws.recv())
                    content = message.get("serverContent", {})
                    parts = content.get("modelTurn", {}).get("parts", [])
                    if first is None and any("inlineData" in p for p in parts):
                        first = time.monotonic()
                        latencies.append((first - ended) * 1000)
                    if content.get("turnComplete"):
                        break


async def run(url: str, sessions: int, turns: int) -> tuple[list[float], list[str]]:
    pcm = speak(QUESTION)
    frames = [
        json.dumps({"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": b64}}})
        for b64 in (base64.b64encode(c).decode() for c in chunks(pcm))
    ]
    latencies: list[float] = []
    errors: list[str] = []
    async with asyncio.TaskGroup() as tg:
        for i in range(sessions):
            tg.create_task(_staggered(i * 0.1, session(url, frames, turns, latencies, errors)))
    return latencies, errors


async def _staggered(delay: float, work: Any) -> None:
    await asyncio.sleep(delay)  # spread the sessions' speech over the first two seconds
    await work


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--backend", choices=["scripted", "llama"], default="scripted")
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--turns", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "script.yaml"
        script.write_text('{"rules": [], "fallback": "The sum is five thousand one hundred seventeen."}')
        proc, url = start(args.backend, script)
        try:
            asyncio.run(run(url, 1, 1))  # warm: decoders, VAD models, the model
            load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
            print(f"backend {args.backend}; {load}")
            for n in args.sessions:
                latencies, errors = asyncio.run(run(url, n, args.turns))
                if not latencies:
                    print(f"{n:3d} sessions: no answer within 120 s ({len(errors)} errors)", flush=True)
                    continue
                p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
                keeps = "yes" if max(latencies) <= REAL_TIME_MS and not errors else "no"
                print(
                    f"{n:3d} sessions x {args.turns} turns: end of speech -> first audio "
                    f"p50 {p50:6.0f} ms  p99 {p99:6.0f} ms  "
                    f"mean {statistics.mean(latencies):6.0f} ms  "
                    f"p50/goal(300 ms) {p50 / GOAL_MS:4.2f}  real time (all < 1 s): {keeps}  "
                    f"errors {len(errors)}",
                    flush=True,
                )
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
