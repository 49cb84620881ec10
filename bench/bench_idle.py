"""Idle sessions: server memory per connected, set-up, silent Live session, openlive against a bare
`websockets` server (the floor), with and without permessage-deflate, in one run.

    python bench/bench_idle.py                     # 10,000 sessions per server and setting
    python bench/bench_idle.py --sessions 2000

Sessions are SDK-like: they offer permessage-deflate as google-genai does and send the SDK's kind of
setup, then stay silent. The server accepts compression only in the "on" runs (openlive
`--ws-compression`, websockets `compression="deflate"`). Memory is the server process's RSS (openlive's
sandbox workers are separate processes and not counted) after every session is set up, less its RSS
before. Loopback only; every step has a timeout. Results go to bench/results/idle.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_load import ROOT, load_average, raise_fd_limit, servers, start

LIVE_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
SETUP = json.dumps(
    {
        "setup": {
            "model": "models/gemini-live-2.5-flash-preview",
            "generationConfig": {"responseModalities": ["TEXT"], "temperature": 0.7},
            "systemInstruction": {"parts": [{"text": "You are a helpful assistant."}], "role": "user"},
            "tools": [{"codeExecution": {}}],
        }
    }
)
HEADERS = {"x-goog-api-key": "bench", "user-agent": "google-genai-sdk/3.4.0 gl-python/3.11.7"}
CONNECT_AT_ONCE = 200
SETTLE_S = 2.0


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def open_session(url: str, limit_s: float) -> Any:
    async with asyncio.timeout(limit_s):
        ws = await websockets.connect(url, additional_headers=HEADERS, max_size=None, open_timeout=None)
        await ws.send(SETUP)
        reply = json.loads(await ws.recv())
    if "setupComplete" not in reply:
        raise RuntimeError(f"no setupComplete: {reply}")
    return ws


async def measure(url: str, pid: int, sessions: int, limit_s: float) -> dict[str, Any]:
    """RSS before and after `sessions` idle sessions are set up; closes them all afterwards."""
    warm = [await open_session(url, limit_s) for _ in range(20)]  # first-use imports and caches
    await asyncio.gather(*(ws.close() for ws in warm))
    await asyncio.sleep(SETTLE_S)  # let the server finish closing them: nothing to wait on from here
    before = rss_bytes(pid)
    gate = asyncio.Semaphore(CONNECT_AT_ONCE)

    async def one() -> Any:
        async with gate:
            return await open_session(url, limit_s)

    started = time.monotonic()
    opened = await asyncio.gather(*(one() for _ in range(sessions)))
    connect_s = time.monotonic() - started
    await asyncio.sleep(SETTLE_S)  # idle: what a silent session costs once its set-up is done
    after = rss_bytes(pid)
    deflate = sum(1 for ws in opened if ws.protocol.extensions)
    await asyncio.gather(*(ws.close() for ws in opened))
    return {
        "sessions": sessions,
        "compressed_sessions": deflate,
        "rss_mb_before": round(before / 2**20, 1),
        "rss_mb_after": round(after / 2**20, 1),
        "kb_per_session": round((after - before) / sessions / 1024, 1),
        "connect_s": round(connect_s, 1),
    }


def run(name: str, argv: list[str], sessions: int, timeout: float) -> dict[str, Any]:
    proc, url = start(argv)
    try:
        ws_url = url.replace("http://", "ws://") + LIVE_PATH
        bounded = asyncio.wait_for(measure(ws_url, proc.pid, sessions, timeout), 30 + sessions / 20)
        result = asyncio.run(bounded)
    finally:
        proc.terminate()
        proc.wait(60)
    print(
        f"{name:<9} compression {'on ' if result['compressed_sessions'] else 'off'}  "
        f"{result['kb_per_session']:>6.1f} KB/session   RSS {result['rss_mb_before']} -> "
        f"{result['rss_mb_after']} MB   ({result['sessions']} set up in {result['connect_s']} s)",
        flush=True,
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to set up one session")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "idle.json")
    args = parser.parse_args()
    raise_fd_limit()
    print(f"{args.sessions} idle sessions per run; load average {load_average()}", flush=True)
    results: dict[str, dict[str, Any]] = {}
    for compression in (False, True):
        for name, argv in servers(compression).items():
            results[f"{name}-{'on' if compression else 'off'}"] = run(name, argv, args.sessions, args.timeout)
    print("\nper idle session, openlive / floor at the same compression (target <= 1.5x):")
    for setting in ("off", "on"):
        ours, floor = results[f"openlive-{setting}"], results[f"echo-{setting}"]
        a, b = ours["kb_per_session"], floor["kb_per_session"]
        print(f"  compression {setting}: {a} / {b} KB = {a / b if b > 0 else float('nan'):.2f}x")
    default = results["openlive-off"]
    print(
        f"openlive as shipped (compression off): {default['sessions']} SDK-like sessions in "
        f"{default['rss_mb_after']} MB server RSS (target < 512 MB); load average {load_average()}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
