"""Remote sandbox workers over MQTT against the local pool, measured in one run on one machine.

    python bench/bench_mqtt.py              # prints a table and ratios, writes bench/results/mqtt.json
    python bench/bench_mqtt.py --quick      # fewer jobs
    python bench/bench_mqtt.py --profile 20 # where the time goes instead: py-spy on this process and a worker

The job is trivial (`print(1+1)`); times are from submit to result, in ms. It starts its own mosquitto
on a free port and `openlive worker` processes (2 slots each), like a deployment on one host.
  latency     one job at a time with a pause between jobs, so each finds a confined runner ready (the
              interactive case), alternating between the local pool and MQTT (with 1 worker, then 2):
              p50/p99 of each; the difference at p50 is what remote dispatch adds (goal: at most 2 ms;
              the broker's own round trip is measured too)
  throughput  jobs/s from 8 concurrent submitters: local pool (2 slots), MQTT with 1 and with 2 workers,
              and the CPU a job costs openlive's processes (this one and the workers)
  --profile   trivial jobs through one worker, one at a time 10 ms apart, for that many seconds, with
              py-spy (`pip install py-spy`) sampling this process (the server's side) and the worker; prints
              the frames each spends its busy samples in, and writes the raw stacks to bench/results/
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import uvloop
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox import Job, LocalPool, Outcome, PoolConfig, Result  # noqa: E402
from sandbox.mqtt import BrokerConfig, MqttPool  # noqa: E402
from sandbox.mqtt.broker import PromptClient  # noqa: E402

OPENLIVE = str(Path(sys.executable).parent / "openlive")
TRIVIAL = "print(1+1)"
PAUSE_S = 0.15  # lets the pool confine the next runner, as between turns of a conversation
SUBMITTERS = 8
GOAL_ADDED_P50_MS = 2.0
ECHO_IN, ECHO_OUT = "bench/echo/in", "bench/echo/out"
BROKER_CONFIG = "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (not its children: the job runners cost the same anywhere)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def trivial(run: Callable[[Job], Awaitable[Result]]) -> Callable[[], Awaitable[float | None]]:
    """A trivial job through `run`; returns its time in the runner (ms), the same work wherever it runs."""

    async def one() -> float:
        result = await run(Job(code=TRIVIAL))
        assert result.outcome == Outcome.OK, result.output
        return result.duration_s * 1000

    return one


async def latency(
    runs: dict[str, Callable[[], Awaitable[float | None]]], n: int
) -> dict[str, dict[str, float]]:
    """One at a time, alternating between the runs, so that all meet the same machine (these machines
    are shared, and their load moves within a minute). A job's p50 time in its runner is kept too."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    in_runner: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(n):
        for name, run in runs.items():
            await asyncio.sleep(PAUSE_S)  # the pause being measured around, not a synchronisation
            started = time.perf_counter()
            runner_ms = await run()
            times[name].append((time.perf_counter() - started) * 1000)
            if runner_ms is not None:
                in_runner[name].append(runner_ms)
    return {
        name: {
            "p50": pct(t, 0.5),
            "p99": pct(t, 0.99),
            "mean": round(statistics.fmean(t), 2),
            **({"in_runner_p50": pct(in_runner[name], 0.5)} if in_runner[name] else {}),
        }
        for name, t in times.items()
    }


async def throughput(
    run: Callable[[Job], Awaitable[Result]], n: int, worker_pids: list[int] | None = None
) -> dict[str, Any]:
    """Also the CPU one job costs openlive's own processes (this one, and the remote workers')."""
    queue = list(range(n))
    workers: dict[str, int] = {}

    async def submitter() -> None:
        while queue:
            queue.pop()
            result = await run(Job(code=TRIVIAL))
            assert result.outcome == Outcome.OK, result.output
            workers[result.worker or "local"] = workers.get(result.worker or "local", 0) + 1

    pids = worker_pids or []
    cpu_here, cpu_workers = time.process_time(), sum(map(cpu_s, pids))
    started = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(SUBMITTERS):
            tg.create_task(submitter())
    elapsed = time.perf_counter() - started
    cpu_here = (time.process_time() - cpu_here) * 1000 / n
    cpu_workers = (sum(map(cpu_s, pids)) - cpu_workers) * 1000 / n
    return {
        "jobs_per_s": round(n / elapsed, 1),
        "by_worker": workers,
        "cpu_ms_per_job": round(cpu_here + cpu_workers, 2),
        "cpu_ms_per_job_server": round(cpu_here, 2),
    }


async def broker_round_trip(broker: BrokerConfig, n: int) -> dict[str, float]:
    """Publish to ourselves at QoS 1 and wait for the message: the floor under any remote dispatch."""
    times = []
    async with broker.client("bench-rtt") as client:
        await client.subscribe("bench/rtt", qos=1)
        messages = aiter(client.messages)
        for _ in range(n):
            started = time.perf_counter()
            await client.publish("bench/rtt", b"x", qos=1)
            await anext(messages)
            times.append((time.perf_counter() - started) * 1000)
    return {"p50": pct(times, 0.5), "p99": pct(times, 0.99)}


class EchoPeer:
    """A second process on the same MQTT client stack that answers each message at once: a round trip
    to it (server -> broker -> peer -> broker -> server, QoS 1, acknowledged once handled) is every hop
    of a remote job with no work in it, the floor remote dispatch is compared with."""

    def __init__(self, broker: BrokerConfig, url: str) -> None:
        self._broker = broker
        self._proc = subprocess.Popen([sys.executable, __file__, "--echo-peer", url], stdout=subprocess.PIPE)
        self._client: PromptClient | None = None
        self._replies: AsyncIterator[aiomqtt.Message] | None = None

    async def __aenter__(self) -> EchoPeer:
        assert self._proc.stdout is not None
        await asyncio.to_thread(self._proc.stdout.readline)  # subscribed
        self._client = await self._broker.client("bench-echo-asker", ack_when_handled=True).__aenter__()
        await self._client.subscribe(ECHO_OUT, qos=1)
        self._replies = aiter(self._client.messages)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.__aexit__(None, None, None)
        self._proc.terminate()
        self._proc.wait(30)

    async def ask(self) -> None:  # no runner: None
        assert self._client is not None and self._replies is not None
        await self._client.publish(ECHO_IN, b"x", qos=1)
        reply = await anext(self._replies)
        asyncio.get_running_loop().call_soon(self._client.ack, reply)


async def echo_peer(url: str) -> None:
    """The peer's side of `EchoPeer`, as `openlive worker` answers: write at once, acknowledge after."""
    async with BrokerConfig.parse(url).client("bench-echo-peer", ack_when_handled=True) as client:
        await client.subscribe(ECHO_IN, qos=1)
        print("subscribed", flush=True)
        async for message in client.messages:
            client.publish_now(ECHO_OUT, b"x", Properties(PacketTypes.PUBLISH))  # type: ignore[no-untyped-call]
            client.ack(message)


def start_worker(url: str, name: str, log: Path) -> subprocess.Popen[str]:
    cmd = [OPENLIVE, "worker", "--broker", url, "--name", name, "--slots", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
    assert proc.stdout is not None
    if not proc.stdout.readline().startswith("openlive worker"):
        proc.kill()
        raise SystemExit(f"worker {name} did not start: {log.read_text()[-2000:]}")
    return proc


async def wait_online(pool: MqttPool, count: int) -> None:
    async with asyncio.timeout(30):
        while sum(w.state == "online" for w in pool.status().workers) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def start_broker(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    """mosquitto as deployed: TCP_NODELAY on its client sockets (without it, Nagle's algorithm holds a
    worker's result behind its `accepted` until a delayed ACK: about 40 ms per job)."""
    port = free_port()
    config = directory / "mosquitto.conf"
    config.write_text(BROKER_CONFIG.format(port=port))
    proc = subprocess.Popen(["mosquitto", "-c", str(config)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"mqtt://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("mosquitto did not start")


async def bench(args: argparse.Namespace, directory: Path, url: str) -> dict[str, Any]:
    n_lat, n_tput = (30, 100) if args.quick else (150, 600)
    results: dict[str, Any] = {}
    workers: list[subprocess.Popen[str]] = []
    local = LocalPool(PoolConfig(slots=2))
    pool = MqttPool(BrokerConfig.parse(url))
    try:
        await local.start()
        results["broker_round_trip"] = await broker_round_trip(BrokerConfig.parse(url), 200)
        workers.append(await asyncio.to_thread(start_worker, url, "bench-1", directory / "w1.log"))
        await pool.start()
        await wait_online(pool, 1)
        async with EchoPeer(BrokerConfig.parse(url), url) as echo:
            runs = {"local": trivial(local.run), "mqtt_1_worker": trivial(pool.run), "echo_peer": echo.ask}
            lat = await latency(runs, n_lat)
        results["echo_peer_round_trip"] = lat["echo_peer"]
        results["local"] = {"latency": lat["local"], "throughput": await throughput(local.run, n_tput)}
        results["mqtt_1_worker"] = {
            "latency": lat["mqtt_1_worker"],
            "throughput": await throughput(pool.run, n_tput, [workers[0].pid]),
        }
        workers.append(await asyncio.to_thread(start_worker, url, "bench-2", directory / "w2.log"))
        await wait_online(pool, 2)
        lat = await latency({"local": trivial(local.run), "mqtt_2_workers": trivial(pool.run)}, n_lat)
        results["local"]["latency_beside_2_workers"] = lat["local"]
        both = await throughput(pool.run, n_tput, [w.pid for w in workers])
        results["mqtt_2_workers"] = {"latency": lat["mqtt_2_workers"], "throughput": both}
    finally:
        await pool.close()
        await local.close()
        for proc in workers:
            proc.terminate()
            proc.wait(30)
    return results


async def profile(seconds: float, directory: Path, url: str, out: Path) -> None:
    """py-spy on both ends of a remote dispatch, counting only busy samples (waiting in epoll is idle)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    worker = await asyncio.to_thread(start_worker, url, "bench-profile", directory / "w.log")
    pool = MqttPool(BrokerConfig.parse(url))
    try:
        await pool.start()
        await wait_online(pool, 1)
        for _ in range(50):  # warm: runners stocked, code paths compiled
            await pool.run(Job(code=TRIVIAL))
        ends = {"server side (this process)": os.getpid(), "worker": worker.pid}
        files = {name: out / f"mqtt-profile-{name.split()[0]}.txt" for name in ends}
        cmd = [spy, "record", "-d", str(int(seconds)), "-r", "500", "-f", "raw", "--nonblocking"]
        spies = [
            await asyncio.create_subprocess_exec(*cmd, "-p", str(pid), "-o", str(files[name]))
            for name, pid in ends.items()
        ]
        jobs, started = 0, time.monotonic()
        while time.monotonic() - started < seconds:
            await asyncio.sleep(0.01)  # the pause being profiled around, not a synchronisation
            await pool.run(Job(code=TRIVIAL))
            jobs += 1
        for spy_proc in spies:
            await asyncio.wait_for(spy_proc.wait(), 60)
    finally:
        await pool.close()
        worker.terminate()
        worker.wait(30)
    print(f"{jobs} jobs; py-spy busy samples at 500 Hz, by frame (share of the process's busy samples):")
    for name, path in files.items():
        inclusive: Counter[str] = Counter()
        leaf: Counter[str] = Counter()
        total = 0
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = [f.split(" (")[0] for f in stack.split(";")]
            total += int(count)
            leaf[frames[-1]] += int(count)
            for frame in set(frames):
                inclusive[frame] += int(count)
        print(f"{name}: {total} busy samples, {total / 500 / jobs * 1000:.2f} ms per job")
        print("  on top:", ", ".join(f"{f} {c / total:.1%}" for f, c in leaf.most_common(6)))
        for frame, samples in inclusive.most_common(20)[5:]:  # below the loop's own entry frames
            print(f"  {samples / total:6.1%}  {frame}")


def report(results: dict[str, Any]) -> None:
    local, one, two = results["local"], results["mqtt_1_worker"], results["mqtt_2_workers"]
    rtt = results["broker_round_trip"]
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    echo = results["echo_peer_round_trip"]
    print(f"broker round trip (QoS 1)   p50 {rtt['p50']:>7} ms   p99 {rtt['p99']:>7} ms   (to itself)")
    print(
        f"round trip via a 2nd process p50 {echo['p50']:>6} ms   p99 {echo['p99']:>7} ms   (the hops' floor)"
    )
    rounds = (
        ("local pool", local["latency"]),
        ("MQTT, 1 worker", one["latency"]),
        ("local pool", local["latency_beside_2_workers"]),
        ("MQTT, 2 workers", two["latency"]),
    )
    for name, lat in rounds:
        print(
            f"{name:<28}p50 {lat['p50']:>7} ms   p99 {lat['p99']:>7} ms"
            f"   (in the runner: p50 {lat['in_runner_p50']} ms)"
        )
    cpu_local, cpu_one = local["throughput"]["cpu_ms_per_job"], one["throughput"]["cpu_ms_per_job"]
    print(
        f"CPU per job in openlive's processes (not the runner; throughput runs): local {cpu_local} ms,"
        f" MQTT {cpu_one} ms (server {one['throughput']['cpu_ms_per_job_server']} + worker),"
        f" +{round(cpu_one - cpu_local, 2)} ms"
    )
    added = round(one["latency"]["p50"] - local["latency"]["p50"], 2)
    added_2 = round(two["latency"]["p50"] - local["latency_beside_2_workers"]["p50"], 2)
    for workers, value in (("1 worker", added), ("2 workers", added_2)):
        verdict = "meets" if value <= GOAL_ADDED_P50_MS else "misses"
        print(
            f"remote dispatch ({workers}) adds {value} ms at p50"
            f" ({verdict} the goal of <= {GOAL_ADDED_P50_MS} ms;"
            f" {value / echo['p50']:.2f}x the round trip via a 2nd process)"
        )
    for name, r in (("local pool", local), ("MQTT, 1 worker", one), ("MQTT, 2 workers", two)):
        t = r["throughput"]
        ratio = t["jobs_per_s"] / local["throughput"]["jobs_per_s"]
        print(f"{name:<28}{t['jobs_per_s']:>7} jobs/s  ({ratio:.2f}x local)  by worker {t['by_worker']}")
    results["added_p50_ms"] = added
    results["added_p50_ms_2_workers"] = added_2
    results["load_average"] = os.getloadavg()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", type=float, metavar="SECONDS", help="profile instead (see above)")
    parser.add_argument("--echo-peer", metavar="URL", help=argparse.SUPPRESS)  # EchoPeer's process
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "mqtt.json")
    args = parser.parse_args()
    if args.echo_peer:
        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(echo_peer(args.echo_peer))
        return 0
    with tempfile.TemporaryDirectory() as directory:
        mosquitto, url = start_broker(Path(directory))
        try:
            if args.profile:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                uvloop.run(profile(args.profile, Path(directory), url, args.out.parent))
                return 0
            # On uvloop, as `openlive serve` and `openlive worker` run: the pools are measured as deployed.
            results = uvloop.run(bench(args, Path(directory), url))
        finally:
            mosquitto.terminate()
            mosquitto.wait(10)
    report(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
