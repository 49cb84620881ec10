"""What the session lifecycle costs per message and per turn, against the work it sits beside.

1. Refusals: every client frame is parsed (`parse_client_message`, which now also looks for fields no
   model defines) and checked against the parity registry (`parity.check`). Peer: the same frame through
   `json.loads` + pydantic validation alone, as before.
2. Resumption: a checkpoint after each turn serialises the snapshot and saves it under a fresh handle.
   Peers: the memory store against SQLite (WAL, on this machine's disk), and both against serialising alone.

    python bench/bench_lifecycle.py [--turns 20 200]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from live import parity
from live.resumption import Snapshot
from live.store import MemoryStore, SavedSession, SessionStore, SqliteStore, digest
from protocol import ClientMessage, Content, Part, ProtocolError, parse_client_message

FRAMES = {
    "clientContent text": {"clientContent": {"turns": [{"role": "user", "parts": [{"text": "hello " * 20}]}],
                                             "turnComplete": True}},
    "realtimeInput audio 100 ms": {"realtimeInput": {"audio": {
        "mimeType": "audio/pcm;rate=16000", "data": base64.b64encode(bytes(3200)).decode()}}},
    "setup with tools": {"setup": {"model": "models/gemini-live-2.5-flash-preview",
                                   "generationConfig": {"responseModalities": ["TEXT"], "temperature": 0.7},
                                   "tools": [{"codeExecution": {}}, {"functionDeclarations": [
                                       {"name": f"f{i}", "description": "d", "parameters": {"type": "OBJECT"}}
                                       for i in range(5)]}],
                                   "sessionResumption": {}}},
}  # fmt: skip


def per_call_us(fn: Callable[[], object], rounds: int = 5, number: int = 2000) -> float:
    """Median over rounds of the mean time per call, in microseconds."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number * 1e6)
    return statistics.median(samples)


def checked(raw: str) -> object:
    """What the session does with a frame; audio is refused until voice lands (the refusal is timed)."""
    try:
        message = parse_client_message(raw)
        parity.check(message)
    except ProtocolError as exc:
        return exc
    return message


def bench_refusals() -> None:
    print("| frame | validate only (peer) | parse + unknown fields + parity.check | ratio |")
    print("|---|---|---|---|")
    for name, frame in FRAMES.items():
        raw = json.dumps(frame)
        peer = per_call_us(lambda raw=raw: ClientMessage.model_validate(json.loads(raw)))  # type: ignore[misc]
        ours = per_call_us(lambda raw=raw: checked(raw))  # type: ignore[misc]
        print(f"| {name} | {peer:.1f} µs | {ours:.1f} µs | {ours / peer:.2f}x |")


def history(turns: int) -> list[Content]:
    contents = []
    for i in range(turns):
        contents.append(Content(role="user", parts=[Part(text=f"question {i} " + "word " * 30)]))
        contents.append(Content(role="model", parts=[Part(text=f"answer {i} " + "word " * 60)]))
    return contents


def snapshot(contents: list[Content]) -> str:
    """What `Resumption.checkpoint` does on the event loop at the end of a turn."""
    setup = {"model": "models/gemini-live-2.5-flash-preview", "sessionResumption": {}}
    return Snapshot(started_at=time.time(), setup=setup, history=contents).model_dump_json(by_alias=True)


async def save_us(store: SessionStore, data: str, rounds: int = 200) -> float:
    saved = SavedSession(f"lineage-{len(data)}", 0, data)
    times = []
    for i in range(rounds):
        start = time.perf_counter()
        handle = digest(f"{saved.lineage}-{i}")
        await store.save_session(saved, "owner", handle, time.time() + 3600, time.time())
        times.append((time.perf_counter() - start) * 1e6)
    return statistics.median(times)


async def bench_checkpoints(turn_counts: list[int]) -> None:
    print("\n| history | serialise | + memory save | + SQLite save | SQLite vs memory |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = SqliteStore(Path(tmp) / "sessions.db")
        try:
            for turns in turn_counts:
                contents = history(turns)
                data = snapshot(contents)
                serialise = per_call_us(lambda c=contents: snapshot(c), rounds=3, number=50)  # type: ignore[misc]
                memory = await save_us(MemoryStore(), data)
                disk = await save_us(sqlite, data)
                print(f"| {turns} turns ({len(data) // 1024} KiB) | {serialise:.0f} µs | {memory:.0f} µs "
                      f"| {disk:.0f} µs | {disk / max(memory, 1e-3):.0f}x |")  # fmt: skip
        finally:
            await sqlite.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, nargs="+", default=[20, 200])
    args = parser.parse_args()
    bench_refusals()
    asyncio.run(bench_checkpoints(args.turns))


if __name__ == "__main__":
    main()
