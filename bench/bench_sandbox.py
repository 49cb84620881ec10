"""Sandbox latency and throughput: LocalPool against two peers measured in the same run on the same machine.

    python bench/bench_sandbox.py              # prints a table and ratios, writes BENCHMARKS.md's section
    python bench/bench_sandbox.py --quick      # fewer repetitions

Jobs: `print(1+1)` (trivial) and a numpy + matplotlib line plot returned as PNG (640x480 px: 6.4x4.8 in
at dpi 100). Times are from submit to result, in ms.
Peers:
  cold   `python -c` per job with the same imports (numpy, sympy, matplotlib Agg) and no isolation;
  jupyter  one warm ipykernel (jupyter_client; same imports done beforehand, no isolation), executing
           the same code, the figure sent back as a PNG display message.
The pool and the kernel are measured in alternating rounds (3, or 6 for the full run), so that other work
on the shared machine falls on both alike. The pool is measured with its runners ready (the pool idle
between jobs, as with interactive use) and back to back: one submitter, each job sent when the previous
returns, in a run at least four times the pool's ready stock (slots + spare runners) so that it measures
sustained work, not a burst the stock absorbs; its jobs beyond the stock are also reported alone.
Throughput is trivial jobs from 8 concurrent submitters.
Results also go to bench/results/sandbox.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox import Job, LocalPool, Outcome, PoolConfig  # noqa: E402

TRIVIAL = "print(1+1)"
PLOT = (
    "import numpy as np\nimport matplotlib.pyplot as plt\n"
    "x = np.linspace(0, 10, 200)\nplt.plot(x, np.sin(x))\nplt.title('sin(x)')\n"
)
IMPORTS = "import numpy, sympy, matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot\n"
# The cold peer renders the figure itself, like the pool's runner does.
SAVEFIG = "_b = _io.BytesIO(); _plt.figure(_n).savefig(_b, format='png', dpi=100)"
COLD_CAPTURE = f"import io as _io, matplotlib.pyplot as _plt\nfor _n in _plt.get_fignums():\n    {SAVEFIG}\n"
JUPYTER_CAPTURE = (
    "import io as _io, matplotlib.pyplot as _plt\nfrom IPython.display import display as _d, Image as _I\n"
    f"for _n in _plt.get_fignums():\n    {SAVEFIG}\n    _d(_I(data=_b.getvalue()))\n_plt.close('all')\n"
)
SECTION_START = "<!-- bench_sandbox:start -->"
SECTION_END = "<!-- bench_sandbox:end -->"


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"n": len(ordered), "p50": statistics.median(ordered) * 1000, "p99": p99 * 1000}


async def _timed(
    n: int, job: Callable[[], Awaitable[None]], between: Callable[[], Awaitable[None]]
) -> list[float]:
    samples = []
    for _ in range(n):
        await between()
        t = time.perf_counter()
        await job()
        samples.append(time.perf_counter() - t)
    return samples


class Jupyter:
    """One warm ipykernel (the same imports done beforehand), driven synchronously."""

    def __init__(self) -> None:
        from jupyter_client.manager import start_new_kernel

        self._km, self._kc = start_new_kernel(kernel_name="python3", env={**os.environ, "MPLBACKEND": "Agg"})
        self._kc.execute_interactive(IMPORTS, timeout=60)

    def once(self, code: str, images: int) -> float:
        got: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "display_data":
                got.append(msg["content"]["data"]["image/png"])

        t = time.perf_counter()
        reply = self._kc.execute_interactive(code, output_hook=hook, timeout=60)
        elapsed = time.perf_counter() - t
        assert reply["content"]["status"] == "ok" and len(got) == images
        assert all(base64.b64decode(png).startswith(b"\x89PNG") for png in got)
        return elapsed

    def close(self) -> None:
        self._kc.stop_channels()
        self._km.shutdown_kernel(now=True)


async def bench_pool_and_jupyter(
    n_trivial: int, n_plot: int, n_throughput: int, rounds: int
) -> dict[str, Any]:
    """The pool and the kernel in alternating blocks, so a burst of other work on the shared machine
    falls on both peers alike; the kernel's blocks run on the event loop, the pool idle meanwhile."""
    pool = LocalPool(PoolConfig())
    t = time.perf_counter()
    await pool.start()
    stock = pool.config.runners
    out: dict[str, Any] = {"start_s": time.perf_counter() - t, "slots": pool.config.slots, "stock": stock}
    out["block"] = max(n_trivial // rounds, 4 * stock)  # back to back, from a full stock each round
    jupyter = Jupyter()

    def run(code: str, images: int) -> Callable[[], Awaitable[None]]:
        async def go() -> None:
            r = await pool.run(Job(code=code))
            assert r.outcome == Outcome.OK and len(r.images) == images, r.output

        return go

    async def nothing() -> None:
        return None

    samples: dict[str, list[float]] = {
        k: [] for k in ("idle", "back_to_back", "beyond_stock", "plot", "jupyter", "jupyter_plot")
    }
    try:
        for _ in range(5):
            await run(PLOT, 1)()
            jupyter.once(PLOT + JUPYTER_CAPTURE, 1)
        for _ in range(rounds):
            samples["idle"] += await _timed(n_trivial // rounds, run(TRIVIAL, 0), pool.wait_idle)
            samples["jupyter"] += [jupyter.once(TRIVIAL, 0) for _ in range(n_trivial // rounds)]
            await pool.wait_idle()
            block = await _timed(out["block"], run(TRIVIAL, 0), nothing)
            samples["back_to_back"] += block
            samples["beyond_stock"] += block[stock:]
            samples["plot"] += await _timed(n_plot // rounds, run(PLOT, 1), pool.wait_idle)
            plots = [jupyter.once(PLOT + JUPYTER_CAPTURE, 1) for _ in range(n_plot // rounds)]
            samples["jupyter_plot"] += plots
        await pool.wait_idle()
        queue: asyncio.Queue[None] = asyncio.Queue()
        for _ in range(n_throughput):
            queue.put_nowait(None)

        async def submitter() -> None:
            while not queue.empty():
                queue.get_nowait()
                await run(TRIVIAL, 0)()

        t = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for _ in range(8):
                tg.create_task(submitter())
        out["throughput_jobs_s"] = n_throughput / (time.perf_counter() - t)
    finally:
        jupyter.close()
        await pool.close()
    out["trivial_idle"] = _stats(samples["idle"])
    out["trivial_back_to_back"] = _stats(samples["back_to_back"])
    out["trivial_back_to_back_beyond_stock"] = _stats(samples["beyond_stock"])
    out["plot_idle"] = _stats(samples["plot"])
    out["rounds"] = rounds
    jupyter_out = {"trivial": _stats(samples["jupyter"]), "plot": _stats(samples["jupyter_plot"])}
    return {"pool": out, "jupyter": jupyter_out}


def bench_cold(n: int) -> dict[str, Any]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1"}

    def once(code: str) -> float:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", IMPORTS + code], check=True, env=env, capture_output=True)
        return time.perf_counter() - t

    return {
        "trivial": _stats([once(TRIVIAL) for _ in range(n)]),
        "plot": _stats([once(PLOT + COLD_CAPTURE) for _ in range(n)]),
    }


def _report(results: dict[str, Any], command: str) -> str:
    pool, cold, jup = results["pool"], results["cold"], results["jupyter"]
    rows = [
        ("print(1+1)", "LocalPool, runner ready (pool idle between jobs)", pool["trivial_idle"]),
        (
            "print(1+1)",
            f"LocalPool, back to back (one submitter, runs of {pool['block']} jobs)",
            pool["trivial_back_to_back"],
        ),
        (
            "print(1+1)",
            f"LocalPool, back to back, each run's jobs after the first {pool['stock']} (the ready stock)",
            pool["trivial_back_to_back_beyond_stock"],
        ),
        ("print(1+1)", "Jupyter kernel (warm, no isolation)", jup["trivial"]),
        ("print(1+1)", "cold `python -c` with the imports", cold["trivial"]),
        ("numpy + plot -> PNG", "LocalPool, runner ready", pool["plot_idle"]),
        ("numpy + plot -> PNG", "Jupyter kernel", jup["plot"]),
        ("numpy + plot -> PNG", "cold `python -c` with the imports", cold["plot"]),
    ]
    lines = [
        "| job | executor | n | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
        *(f"| {job} | {who} | {s['n']} | {s['p50']:.1f} | {s['p99']:.1f} |" for job, who, s in rows),
    ]

    def vs_jupyter(ours: dict[str, float], theirs: dict[str, float]) -> str:
        return f"{ours['p50']:.1f} / {theirs['p50']:.1f} ms = {ours['p50'] / theirs['p50']:.2f}x"

    ratios = [
        f"trivial, runner ready, p50 vs the Jupyter kernel: "
        f"{vs_jupyter(pool['trivial_idle'], jup['trivial'])} (goal <= 1.0x)",
        f"trivial, back to back, p50 vs the Jupyter kernel: "
        f"{vs_jupyter(pool['trivial_back_to_back'], jup['trivial'])} (goal <= 1.0x); beyond the ready "
        f"stock of {pool['stock']}: {vs_jupyter(pool['trivial_back_to_back_beyond_stock'], jup['trivial'])}",
        f"numpy + plot -> PNG p50 vs the Jupyter kernel: {vs_jupyter(pool['plot_idle'], jup['plot'])} "
        "(goal <= 1.0x)",
        f"trivial p50 {cold['trivial']['p50'] / pool['trivial_idle']['p50']:.0f}x faster than the cold "
        "subprocess (goal >= 100x)",
        f"throughput: {pool['throughput_jobs_s']:.0f} trivial jobs/s with {pool['slots']} slots on "
        f"{os.cpu_count()} cores, 8 concurrent submitters (goal > 80)",
        f"pool start-up: {pool['start_s']:.2f} s (worker imports + first runners); "
        f"load average {results['load_average']}",
    ]
    return "\n".join([*lines, "", *(f"- {r}" for r in ratios), "", f"Command: `{command}`"])


def _write_section(text: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    section = (
        f"{SECTION_START}\n## Sandbox: LocalPool vs a Jupyter kernel and a cold subprocess\n\n"
        "Full isolation on (all six layers). Figures are 640x480 px PNG (dpi 100). Measured on "
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, on a machine shared with other work: "
        f"compare the peers of one run.\n\n{text}\n{SECTION_END}"
    )
    if SECTION_START in doc:
        head, rest = doc.split(SECTION_START, 1)
        doc = head + section + rest.split(SECTION_END, 1)[1]
    else:
        doc = doc.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(doc)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args()
    n = (30, 15, 200, 5, 3) if args.quick else (300, 60, 1000, 12, 6)
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results: dict[str, Any] = asyncio.run(bench_pool_and_jupyter(n[0], n[1], n[2], n[4]))
    results["cold"] = bench_cold(n[3])
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results["load_average"] = f"{load_before} before, {load_after} after"
    command = "python bench/bench_sandbox.py" + (" --quick" if args.quick else "")
    report = _report(results, command)
    print(report)
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "sandbox.json").write_text(json.dumps(results, indent=2))
    if not args.no_write:
        _write_section(report)


if __name__ == "__main__":
    main()
