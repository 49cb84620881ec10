"""Tracing's cost: server CPU per scripted text turn with OpenTelemetry off (the default) and on, exporting
to a local OTLP/HTTP receiver, in one run; and what the no-op spans cost a turn while off.

    python bench/bench_tracing.py                       # 300 sessions x 30 s per server
    python bench/bench_tracing.py --sessions 1000 --duration 60

The same load as bench/bench_load.py (`openlive bench`, text turns with think time) against
`openlive serve --backend scripted`, then against the same server with `--otlp-endpoint` set to a
receiver in this process that answers every export with 200 and counts the spans (decoded with
opentelemetry-proto, installed with the `otel` extra). Results go to bench/results/tracing.json.
"""

from __future__ import annotations

import json
import sys
import threading
import timeit
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_load import ROOT, load_arguments, load_average, raise_fd_limit, run_load, servers, start

from live import tracing


class Receiver(BaseHTTPRequestHandler):
    """OTLP/HTTP (protobuf) traces: counts the spans of each export and answers 200."""

    spans = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        request = ExportTraceServiceRequest.FromString(self.rfile.read(int(self.headers["Content-Length"])))
        count = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        with Receiver.lock:
            Receiver.spans += count
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def noop_spans_ns() -> float:
    """What a turn's spans cost while tracing is off: a turn, one model call, one code block."""

    def turn() -> None:
        with tracing.turn("m"), tracing.model_call("m"), tracing.code_execution():
            pass

    runs = 200_000
    return min(timeit.repeat(turn, number=runs, repeat=5)) / runs * 1e9


def main() -> int:
    parser = load_arguments(__doc__.splitlines()[0])
    parser.set_defaults(sessions=300, duration=30.0, ramp=5.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "tracing.json")
    args = parser.parse_args()
    if not tracing.available():
        raise SystemExit("tracing needs the otel extra: pip install 'openlive[otel]'")
    raise_fd_limit()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}"
    base = servers(compression=False)["openlive"]
    runs = {"off": base, "on": [*base, "--otlp-endpoint", endpoint]}
    results: dict[str, Any] = {}
    try:
        for name, argv in runs.items():
            proc, url = start(argv)
            try:
                before = load_average()
                print(f"== tracing {name} at {url}, load average {before}", flush=True)
                result = run_load(url, proc.pid, args, args.out.with_suffix(f".{name}.json"))
            finally:
                proc.terminate()  # flushes the spans still batched
                proc.wait(30)
            cpu_s = (result["server"] or {}).get("cpu_s") or 0.0
            results[name] = {
                "load_average_before": before,
                "turns_completed": result["turns_completed"],
                "turns_sent": result["turns_sent"],
                "errors": result["error_total"],
                "cpu_ms_per_turn": 1000 * cpu_s / max(result["turns_completed"], 1),
                "first_content_p99_ms": result["first_content_ms"]["p99"],
            }
    finally:
        receiver.shutdown()
    results["on"]["spans_received"] = Receiver.spans
    results["noop_spans_ns_per_turn"] = noop_spans_ns()
    off, on = results["off"], results["on"]
    print(f"\n== tracing off vs on (OTLP/HTTP): {args.sessions} sessions, think {args.think} s")
    for name, r in (("off", off), ("on", on)):
        print(
            f"tracing {name:<4} CPU per turn {r['cpu_ms_per_turn']:.3f} ms   first content p99 "
            f"{r['first_content_p99_ms']:.1f} ms   turns {r['turns_completed']} of {r['turns_sent']}, "
            f"errors {r['errors']}   load average before {r['load_average_before']}"
        )
    print(f"CPU per turn, on / off: {on['cpu_ms_per_turn'] / off['cpu_ms_per_turn']:.2f}x")
    per_turn = on["spans_received"] / max(on["turns_completed"], 1)
    print(f"spans received: {on['spans_received']} ({per_turn:.2f} a turn)")
    share = results["noop_spans_ns_per_turn"] / (off["cpu_ms_per_turn"] * 1e6)
    print(
        f"while off, a turn's spans cost {results['noop_spans_ns_per_turn']:.0f} ns "
        f"({100 * share:.3f} % of its server CPU)"
    )
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    ok = all(r["errors"] == 0 and r["turns_completed"] == r["turns_sent"] for r in (off, on))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
