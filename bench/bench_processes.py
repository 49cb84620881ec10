"""`openlive serve --workers 2` against one process under the same load, in one run on one machine.

    python bench/bench_processes.py                        # 1000 sessions x 60 s each
    python bench/bench_processes.py --sessions 200 --duration 20

The load is bench_load.py's (the `openlive bench` generator, text scenario, scripted model, no TLS); the
server's CPU and memory are its whole process tree's. The generator shares the machine's cores with the
servers, so on 2 cores two server processes can at best take what the generator leaves.
Results go to bench/results/processes.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from bench_load import BIN, ROOT, load_arguments, raise_fd_limit, run_load, start


def main() -> int:
    parser = load_arguments(__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "processes.json")
    args = parser.parse_args()
    raise_fd_limit()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    serve = [str(BIN / "openlive"), "serve", "--host", "127.0.0.1", "--port", "0", "--backend", "scripted"]
    results: dict[str, Any] = {"load_average_start": os.getloadavg()[0]}
    for name, extra in (("one process", []), ("--workers 2", ["--workers", "2"])):
        proc, url = start([*serve, *extra])
        try:
            print(f"== {name} at {url}", flush=True)
            results[name] = run_load(url, proc.pid, args, args.out.with_suffix(f".{len(extra)}.json"))
        finally:
            proc.terminate()
            proc.wait(30)
    results["load_average_end"] = os.getloadavg()[0]
    one, two = results["one process"], results["--workers 2"]
    print(
        f"\n== --workers 2 vs one process, {args.sessions} sessions (load average {os.getloadavg()[0]:.1f})"
    )
    for metric in ("first_content_ms", "turn_complete_ms"):
        for q in ("p50", "p95", "p99"):
            a, b = two[metric][q], one[metric][q]
            ratio = f"{a / b:.2f}x" if a and b else "n/a"
            print(f"{metric:<18}{q:>4}  --workers 2 {a:>9} ms   one {b:>9} ms   ratio {ratio}")
    for key in ("turns_completed", "turns_per_s", "error_total"):
        print(f"{key:<22} --workers 2 {two.get(key)}   one {one.get(key)}")
    for name in ("one process", "--workers 2"):
        server = results[name]["server"] or {}
        cpu, rss = server.get("cpu_percent"), server.get("rss_mb_max")
        print(f"{name:<12} server CPU {cpu}% of a core, RSS max {rss} MB (the whole process tree)")
    args.out.write_text(
        json.dumps({"sessions": args.sessions, "duration_s": args.duration, **results}, indent=2) + "\n"
    )
    print(f"\nwrote {args.out}")
    return 0 if one["error_total"] == 0 and two["error_total"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
