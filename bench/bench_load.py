"""Load: N concurrent text sessions against openlive (scripted model) and against a bare `websockets`
echo server speaking just enough of the protocol (the floor), same load generator, same machine.

    python bench/bench_load.py                          # 1000 sessions x 60 s, both servers, prints ratios
    python bench/bench_load.py --sessions 200 --duration 20
    python bench/bench_load.py --compression            # permessage-deflate on for both servers
    python bench/bench_load.py --hog                    # a busy process on one core during both runs

Both servers run as their own process without TLS (the generator shares the CPU with them; TLS would
measure the client's handshakes), with the same compression (the generator offers permessage-deflate,
as the SDKs do; the servers accept it only with --compression). Results go to bench/results/load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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


async def serve_echo(compression: bool) -> None:
    import websockets

    async with websockets.serve(
        echo_handler,
        "127.0.0.1",
        0,
        max_size=None,
        backlog=4096,
        compression="deflate" if compression else None,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"echo listening on http://127.0.0.1:{port}", flush=True)
        await asyncio.Future()


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def load_average() -> str:
    """`uptime`'s load figures, recorded with every run: the machine is shared."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def start_hog(seconds: float) -> subprocess.Popen[str]:
    """A busy loop on one core for `seconds` (bounded): how the ratios move on a loaded machine."""
    code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"
    return subprocess.Popen([sys.executable, "-c", code], text=True)


def servers(compression: bool) -> dict[str, list[str]]:
    """openlive (scripted model) and the bare websockets echo, at the same compression."""
    openlive = [str(BIN / "openlive"), "serve", "--host", "127.0.0.1", "--port", "0", "--backend", "scripted"]
    echo = [sys.executable, __file__, "--echo-server"]
    if compression:
        return {"openlive": [*openlive, "--ws-compression"], "echo": [*echo, "--compression"]}
    return {"openlive": openlive, "echo": echo}


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


def load_arguments(description: str) -> argparse.ArgumentParser:
    """The load's shape, shared by the benchmarks that drive `openlive bench`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--ramp", type=float, default=10.0)
    parser.add_argument("--think", type=float, default=1.0)
    return parser


def main() -> int:
    parser = load_arguments(__doc__.splitlines()[0])
    parser.add_argument("--compression", action="store_true", help="permessage-deflate on both servers")
    parser.add_argument("--hog", action="store_true", help="keep one core busy during both runs")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load.json")
    args = parser.parse_args()
    raise_fd_limit()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    hog = start_hog(2 * (args.ramp + args.duration + 30)) if args.hog else None
    try:
        for name, argv in servers(args.compression).items():
            proc, url = start(argv)
            try:
                before = load_average()
                print(f"== {name} at {url}, load average {before}", flush=True)
                results[name] = run_load(url, proc.pid, args, args.out.with_suffix(f".{name}.json"))
                results[name]["load_average_before"] = before
            finally:
                proc.terminate()
                proc.wait(30)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    report(results, args)
    args.out.write_text(
        json.dumps({"sessions": args.sessions, "duration_s": args.duration, **results}, indent=2) + "\n"
    )
    print(f"\nwrote {args.out}")
    ours, floor = results["openlive"], results["echo"]
    complete = ours["error_total"] == 0 and ours["turns_completed"] == ours["turns_sent"]
    return 0 if complete and floor["error_total"] == 0 else 1


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    ours, floor = results["openlive"], results["echo"]
    print(
        f"\n== openlive vs bare websockets echo: {args.sessions} sessions, think {args.think} s, "
        f"compression {'on' if args.compression else 'off'}{', CPU hog on one core' if args.hog else ''}"
    )
    print(f"{'':<28}{'openlive':>12}{'echo':>12}{'ratio':>9}")

    def row(label: str, a: float | None, b: float | None, unit: str = "") -> None:
        fa = f"{a:.2f}{unit}" if a is not None else "n/a"
        fb = f"{b:.2f}{unit}" if b is not None else "n/a"
        print(f"{label:<28}{fa:>12}{fb:>12}{_ratio(a, b):>9}")

    cpu = {n: (r["server"] or {}).get("cpu_s") for n, r in results.items()}
    per_turn = {n: 1000 * cpu[n] / r["turns_completed"] if cpu[n] and r["turns_completed"] else None
                for n, r in results.items()}  # fmt: skip
    row("server CPU per turn (ms)", per_turn["openlive"], per_turn["echo"])
    row("server CPU (% of a core)", (ours["server"] or {}).get("cpu_percent"),
        (floor["server"] or {}).get("cpu_percent"))  # fmt: skip
    row("turns/s completed", ours["turns_per_s"], floor["turns_per_s"])
    for q in ("p50", "p95", "p99"):
        row(f"time to first content {q}", ours["first_content_ms"][q], floor["first_content_ms"][q], "")
    row("time to turnComplete p99", ours["turn_complete_ms"]["p99"], floor["turn_complete_ms"]["p99"])
    for name, r in results.items():
        server = r["server"] or {}
        print(
            f"{name:<9} turns completed {r['turns_completed']} of {r['turns_sent']} sent, "
            f"errors {r['error_total']}, server RSS max {server.get('rss_mb_max')} MB, "
            f"load average before {r['load_average_before']}"
        )
    print("targets: CPU per turn <= 2x, first content p99 <= 3x, every turn sent completed, no errors")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--echo-server"]:
        asyncio.run(serve_echo(compression="--compression" in sys.argv))
    else:
        sys.exit(main())
