"""Load: N concurrent text sessions against openlive (scripted model) and against a bare `websockets`
echo server speaking just enough of the protocol (the floor), same load generator, same machine.

    python bench/bench_load.py                          # 1000 sessions x 60 s, both servers, prints ratios
    python bench/bench_load.py --sessions 200 --duration 20

Both servers run as their own process without TLS (the generator shares the CPU with them; TLS would
measure the client's handshakes). Results go to bench/results/load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
START_TIMEOUT_S = 60


async def echo_handler(ws: Any) -> None:
    """setup -> setupComplete; each finished user turn -> its text back as one modelTurn + turnComplete."""
    async for raw in ws:
        message = json.loads(raw)
        if "setup" in message:
            await ws.send(b'{"setupComplete":{}}')
            continue
        content = message.get("clientContent") or message.get("client_content") or {}
        if content.get("turnComplete") or content.get("turn_complete"):
            texts = [p.get("text", "") for t in content.get("turns", []) for p in t.get("parts", [])]
            turn = {"modelTurn": {"role": "model", "parts": [{"text": " ".join(texts)}]}}
            await ws.send(json.dumps({"serverContent": turn}).encode())
            await ws.send(b'{"serverContent":{"turnComplete":true}}')


async def serve_echo() -> None:
    import websockets

    async with websockets.serve(echo_handler, "127.0.0.1", 0, max_size=None, backlog=4096) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"echo listening on http://127.0.0.1:{port}", flush=True)
        await asyncio.Future()


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start(argv: list[str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if " listening on " not in line:
        proc.kill()
        raise SystemExit(f"server did not start: {argv}: {line!r}")
    return proc, line.rsplit(" ", 1)[1]


def run_load(url: str, pid: int, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    cmd = [
        str(BIN / "openlive"),
        "bench",
        "--url",
        url,
        "--sessions",
        str(args.sessions),
        "--duration",
        str(args.duration),
        "--ramp",
        str(args.ramp),
        "--think",
        str(args.think),
        "--scenario",
        "text",
        "--server-pid",
        str(pid),
        "--json",
        str(out),
    ]
    subprocess.run(cmd, check=False, cwd=ROOT)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--ramp", type=float, default=10.0)
    parser.add_argument("--think", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load.json")
    args = parser.parse_args()
    _raise_fd_limit()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    peers = {
        "openlive": [
            str(BIN / "openlive"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--backend",
            "scripted",
        ],
        "echo": [sys.executable, __file__, "--echo-server"],
    }
    for name, argv in peers.items():
        proc, url = start(argv)
        try:
            print(f"== {name} at {url}", flush=True)
            results[name] = run_load(url, proc.pid, args, args.out.with_suffix(f".{name}.json"))
        finally:
            proc.terminate()
            proc.wait(30)
    ours, floor = results["openlive"], results["echo"]
    print("\n== openlive vs bare websockets echo (same load)")
    for metric in ("first_content_ms", "turn_complete_ms"):
        for q in ("p50", "p95", "p99"):
            a, b = ours[metric][q], floor[metric][q]
            ratio = f"{a / b:.1f}x" if a and b else "n/a"
            print(f"{metric:<18}{q:>4}  openlive {a:>9} ms   echo {b:>9} ms   ratio {ratio}")
    print(f"errors            openlive {ours['error_total']}   echo {floor['error_total']}")
    for name in results:
        server = results[name]["server"] or {}
        cpu, rss = server.get("cpu_percent"), server.get("rss_mb_max")
        print(f"{name:<10} server CPU {cpu}% of a core, RSS max {rss} MB")
    args.out.write_text(
        json.dumps({"sessions": args.sessions, "duration_s": args.duration, **results}, indent=2) + "\n"
    )
    print(f"\nwrote {args.out}")
    return 0 if ours["error_total"] == 0 else 1


if __name__ == "__main__":
    if sys.argv[1:] == ["--echo-server"]:
        asyncio.run(serve_echo())
    else:
        sys.exit(main())
