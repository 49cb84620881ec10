"""`openlive bench`: N concurrent Live sessions for D seconds, each running turns of one scenario.

Reports p50/p95/p99 of time to first content and to turnComplete, code-execution latency (executableCode
to codeExecutionResult), errors by kind, and, given --server-pid, the server's RSS and CPU from /proc.
Outbound messages are built once with the `protocol` models; inbound frames are read with json.loads
only, to keep the generator's own CPU out of what it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import websockets

from clients.connection import add_connection_flags, dump_client_message, live_url, setup_message, ssl_context
from clients.demo_functions import DECLARATIONS, answer
from clients.load_stats import BenchResult, Percentiles, ProcessWatch, Samples
from protocol import (
    Blob,
    ClientContent,
    ClientMessage,
    Content,
    FunctionResponse,
    Part,
    RealtimeInput,
    ToolResponse,
)

PROMPTS = {
    "text": "Hello there!",
    "code": "What is the sum of the first 50 prime numbers? Generate and run code for the calculation.",
}
AUDIO_CHUNK_S = 0.04


@dataclass(frozen=True)
class Plan:
    """Everything a session needs, serialised once and shared by all sessions."""

    url: str
    headers: dict[str, str]
    ssl: Any
    setup: str
    turn: list[str]  # frames that make one user turn
    realtime_audio_s: float  # >0: pace audio frames at real time
    connect_timeout: float
    turn_timeout: float
    think_s: float


def voice_frames(path: Path) -> tuple[list[str], float]:
    """A 16-bit mono WAV as 40 ms `realtimeInput.audio` frames, then `audioStreamEnd`."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise SystemExit(f"openlive bench: {path} must be 16-bit mono PCM")
        rate = wav.getframerate()
        pcm = wav.readframes(wav.getnframes())
    step = int(rate * AUDIO_CHUNK_S) * 2
    frames = [
        dump_client_message(
            ClientMessage(
                realtime_input=RealtimeInput(
                    audio=Blob(mime_type=f"audio/pcm;rate={rate}", data=pcm[i : i + step])
                )
            )
        )
        for i in range(0, len(pcm), step)
    ]
    frames.append(dump_client_message(ClientMessage(realtime_input=RealtimeInput(audio_stream_end=True))))
    return frames, len(pcm) / 2 / rate


def make_plan(args: argparse.Namespace) -> Plan:
    url = live_url(args.url, args.api_version)
    if args.scenario == "voice":
        if args.wav is None:
            raise SystemExit("openlive bench: --scenario voice needs --wav FILE")
        turn, _ = voice_frames(args.wav)
    else:
        text = args.prompt or PROMPTS[args.scenario]
        content = ClientContent(turns=[Content(role="user", parts=[Part(text=text)])], turn_complete=True)
        turn = [dump_client_message(ClientMessage(client_content=content))]
    setup = setup_message(
        args.model,
        code_execution=args.scenario == "code",
        functions=list(DECLARATIONS.values()) if args.functions else [],
        modality="AUDIO" if args.scenario == "voice" else "TEXT",
    )
    return Plan(
        url=url,
        headers={"x-goog-api-key": args.key},
        ssl=ssl_context(url, args.ca, args.insecure),
        setup=dump_client_message(setup),
        turn=turn,
        realtime_audio_s=AUDIO_CHUNK_S if args.scenario == "voice" and args.realtime else 0.0,
        connect_timeout=args.connect_timeout,
        turn_timeout=args.turn_timeout,
        think_s=args.think,
    )


async def run_turn(ws: Any, plan: Plan, samples: Samples) -> None:
    samples.turns_sent += 1
    for frame in plan.turn:
        await ws.send(frame)
        if plan.realtime_audio_s:
            await asyncio.sleep(plan.realtime_audio_s)  # pacing a live microphone, not synchronisation
    sent = time.monotonic()
    first: float | None = None
    code_started: float | None = None
    async with asyncio.timeout(plan.turn_timeout):
        while True:
            message = json.loads(await ws.recv())
            now = time.monotonic()
            if "toolCall" in message:
                calls = message["toolCall"].get("functionCalls", [])
                responses = [
                    FunctionResponse(
                        id=c.get("id"),
                        name=c.get("name", ""),
                        response=answer(c.get("name", ""), c.get("args")),
                    )
                    for c in calls
                ]
                await ws.send(
                    dump_client_message(
                        ClientMessage(tool_response=ToolResponse(function_responses=responses))
                    )
                )
            content = message.get("serverContent")
            if not content:
                continue
            parts = (content.get("modelTurn") or {}).get("parts") or []
            if (parts or content.get("outputTranscription")) and first is None:
                first = now
                samples.first_content.append(now - sent)
            for part in parts:
                if "executableCode" in part:
                    code_started = now
                elif "codeExecutionResult" in part and code_started is not None:
                    samples.code_execution.append(now - code_started)
                    code_started = None
            if content.get("turnComplete"):
                samples.turn_complete.append(now - sent)
                return


async def session(plan: Plan, samples: Samples, start_at: float, stop_at: float) -> None:
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))  # ramp-up schedule
    began = time.monotonic()
    samples.active += 1
    try:
        async with asyncio.timeout(plan.connect_timeout):
            ws = await websockets.connect(
                plan.url, additional_headers=plan.headers, ssl=plan.ssl, max_size=None, open_timeout=None
            )
            await ws.send(plan.setup)
            first = json.loads(await ws.recv())
        if "setupComplete" not in first:
            samples.error("no setupComplete")
            await ws.close()
            return
        samples.connect.append(time.monotonic() - began)
        samples.connected += 1
        async with ws:
            while time.monotonic() < stop_at:
                await run_turn(ws, plan, samples)
                if plan.think_s:
                    await asyncio.sleep(plan.think_s * random.uniform(0.5, 1.5))  # a user's pause
    except TimeoutError:
        samples.error("timeout")
    except websockets.ConnectionClosed as exc:
        samples.error(f"closed {exc.rcvd.code if exc.rcvd else 1006}")
    except Exception as exc:  # every failure is a data point; one session never stops the run
        samples.error(type(exc).__name__)
    finally:
        samples.active -= 1


class Progress:
    """A one-line bar on stderr (redrawn on a terminal, a line every few seconds otherwise)."""

    def __init__(self, duration: float, enabled: bool) -> None:
        self.duration = duration
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.last_line = 0.0

    def draw(self, elapsed: float, samples: Samples, final: bool = False) -> None:
        if not self.enabled:
            return
        if not self.tty and not final and time.monotonic() - self.last_line < 5:
            return
        self.last_line = time.monotonic()
        done = min(1.0, elapsed / self.duration)
        bar = "█" * int(done * 24) + "░" * (24 - int(done * 24))
        p50 = Percentiles.of(samples.first_content[-2000:]).p50
        line = (
            f"{bar} {elapsed:5.1f}/{self.duration:.0f}s  sessions {samples.active}  "
            f"turns {len(samples.turn_complete)}  errors {sum(samples.errors.values())}  "
            f"first content p50 {p50 if p50 is not None else '-'} ms"
        )
        sys.stderr.write(("\r\033[K" + line) if self.tty else line + "\n")
        if final and self.tty:
            sys.stderr.write("\n")
        sys.stderr.flush()


async def bench(args: argparse.Namespace, plan: Plan) -> BenchResult:
    samples = Samples()
    watch = ProcessWatch(args.server_pid) if args.server_pid else None
    progress = Progress(args.ramp + args.duration, not args.no_progress)
    clock = time.monotonic()
    cpu_before = time.process_time()
    if watch:
        watch.start()
    stop_at = clock + args.ramp + args.duration
    async with asyncio.TaskGroup() as tg:
        for i in range(args.sessions):
            start_at = clock + args.ramp * i / max(1, args.sessions)
            tg.create_task(session(plan, samples, start_at, stop_at))

        async def monitor() -> None:
            while samples.active or time.monotonic() < clock + args.ramp + 0.1:
                if watch:
                    watch.sample()
                progress.draw(time.monotonic() - clock, samples)
                await asyncio.sleep(0.5)  # redraw interval

        tg.create_task(monitor())
    wall = time.monotonic() - clock
    progress.draw(wall, samples, final=True)
    return BenchResult(
        scenario=args.scenario,
        url=plan.url,
        sessions=args.sessions,
        duration_s=args.duration,
        think_s=args.think,
        sessions_connected=samples.connected,
        turns_sent=samples.turns_sent,
        turns_completed=len(samples.turn_complete),
        turns_per_s=round(len(samples.turn_complete) / wall, 1),
        errors=dict(samples.errors),
        error_total=sum(samples.errors.values()),
        connect_ms=Percentiles.of(samples.connect),
        first_content_ms=Percentiles.of(samples.first_content),
        turn_complete_ms=Percentiles.of(samples.turn_complete),
        code_execution_ms=Percentiles.of(samples.code_execution),
        server=watch.usage(wall) if watch else None,
        client_cpu_s=round(time.process_time() - cpu_before, 2),
    )


def summary(result: BenchResult) -> str:
    rows: list[tuple[str, Percentiles]] = [
        ("connect + setup", result.connect_ms),
        ("first content", result.first_content_ms),
        ("turnComplete", result.turn_complete_ms),
        ("code execution", result.code_execution_ms),
    ]
    out = [
        f"scenario {result.scenario}: {result.sessions} sessions x {result.duration_s:.0f} s, "
        f"{result.sessions_connected} connected, {result.turns_completed} of {result.turns_sent} turns "
        f"completed ({result.turns_per_s}/s), "
        f"errors {result.error_total}" + (f" {result.errors}" if result.errors else ""),
        f"{'ms':<16}{'count':>8}{'p50':>10}{'p95':>10}{'p99':>10}{'max':>10}",
    ]
    for name, p in rows:
        if p.count:
            out.append(f"{name:<16}{p.count:>8}{p.p50:>10.1f}{p.p95:>10.1f}{p.p99:>10.1f}{p.max:>10.1f}")
    if result.server:
        s = result.server
        out.append(
            f"server pid {s.pid} ({s.processes} processes): RSS {s.rss_mb_start} -> max {s.rss_mb_max} MB, "
            f"CPU {s.cpu_s} s ({s.cpu_percent}% of a core)"
        )
    out.append(f"p99 time to first content: {result.first_content_ms.p99} ms")
    return "\n".join(out)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="openlive bench", description=__doc__.splitlines()[0])
    add_connection_flags(parser)
    parser.add_argument("--sessions", "-n", type=int, default=100, help="concurrent sessions")
    parser.add_argument("--duration", "-d", type=float, default=30.0, help="seconds of turns after ramp-up")
    parser.add_argument("--scenario", choices=["text", "code", "voice"], default="text")
    parser.add_argument("--prompt", help="the user turn for text/code (default: a greeting / the prime sum)")
    parser.add_argument("--wav", type=Path, help="16-bit mono WAV for --scenario voice")
    parser.add_argument("--realtime", action="store_true", help="send voice audio at real-time pace")
    parser.add_argument("--functions", action="store_true", help="declare (and answer) the demo functions")
    parser.add_argument("--think", type=float, default=1.0, help="mean pause between a session's turns (s)")
    parser.add_argument("--ramp", type=float, default=5.0, help="seconds over which sessions connect")
    parser.add_argument("--connect-timeout", type=float, default=30.0)
    parser.add_argument("--turn-timeout", type=float, default=60.0)
    parser.add_argument("--server-pid", type=int, help="report this process tree's RSS and CPU (/proc)")
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def _raise_fd_limit() -> None:
    """Each session is a socket; the default soft limit (often 1024) would cap the run."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop  # installed with uvicorn[standard]; a faster client measures the server, not itself
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    _raise_fd_limit()
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        result = runner.run(bench(args, plan))
    print(summary(result), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(result.model_dump_json(indent=2) + "\n")
    return 0 if result.error_total == 0 and result.turns_completed > 0 else 1
