"""`openlive bench` against a real server: a small load, no errors, a sane JSON result."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import struct
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from clients.connection import dump_client_message, setup_message
from clients.load_stats import BenchResult, Percentiles
from clients.loadgen import voice_frames
from tests.conftest import API_KEY, OPENLIVE, Server, start_server


@pytest.fixture(scope="module")
def bench_server(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(certs, tmp_path_factory.mktemp("bench") / "server.log", "--backend", "scripted")
    yield srv
    srv.stop()


def run_bench(server: Server, tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / "result.json"
    cmd = [OPENLIVE, "bench", "--url", server.url, "--ca", str(server.ca), "--key", API_KEY]
    cmd += ["--server-pid", str(server.proc.pid), "--json", str(out), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120), out


def test_text_load_has_no_errors(bench_server: Server, tmp_path: Path) -> None:
    proc, out = run_bench(bench_server, tmp_path, "-n", "20", "-d", "3", "--ramp", "0.5", "--think", "0.2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = BenchResult.model_validate_json(out.read_text())
    assert result.error_total == 0 and result.errors == {}
    assert result.sessions_connected == 20
    assert result.turns_completed >= 20
    ttfc, done = result.first_content_ms, result.turn_complete_ms
    assert ttfc.count == done.count == result.turns_completed
    assert ttfc.p50 is not None and ttfc.p99 is not None and done.p99 is not None
    assert 0 < ttfc.p50 <= ttfc.p99 <= done.p99 < 60_000
    assert result.server is not None and result.server.pid == bench_server.proc.pid
    assert result.server.rss_mb_max > 10 and result.server.cpu_s > 0
    assert f"p99 time to first content: {ttfc.p99} ms" in proc.stdout
    assert "█" in proc.stderr  # the progress bar


def test_code_load_reports_code_latency(bench_server: Server, tmp_path: Path) -> None:
    proc, out = run_bench(bench_server, tmp_path, "-n", "4", "-d", "2", "--ramp", "0.2", "--scenario", "code")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    code = Percentiles.model_validate(result["code_execution_ms"])
    assert code.count == result["turns_completed"] >= 4
    assert code.p50 is not None and code.p50 > 0
    assert code.p99 is not None and code.p99 <= result["turn_complete_ms"]["p99"]


async def refusal(server: Server, frames: list[str]) -> tuple[int | None, str | None]:
    """Sends frames over a raw WebSocket; the close code and reason the server answers with."""
    async with websockets.connect(
        server.live_url(), ssl=server.ssl_context(), additional_headers={"x-goog-api-key": API_KEY}
    ) as ws:
        with contextlib.suppress(websockets.ConnectionClosed):
            for frame in frames:
                await ws.send(frame)
            async with asyncio.timeout(30):
                async for _ in ws:
                    pass
    return ws.close_code, ws.close_reason


async def test_voice_is_refused_clearly_until_voice_lands(bench_server: Server, tmp_path: Path) -> None:
    """openlive refuses audio (1008 naming the field) until voice lands: each voice session of the bench
    ends as one counted refusal, not a hang or a timeout."""
    wav = tmp_path / "hello.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"".join(struct.pack("<h", int(3000 * math.sin(i / 8))) for i in range(8000)))
    args = ["-n", "2", "-d", "0.5", "--ramp", "0", "--scenario", "voice", "--wav", str(wav)]
    proc, out = await asyncio.to_thread(run_bench, bench_server, tmp_path, *args, "--no-progress")
    result = BenchResult.model_validate_json(out.read_text())
    assert (result.sessions_connected, result.turns_completed, result.errors) == (0, 0, {"closed 1008": 2})
    assert proc.returncode == 1, proc.stdout + proc.stderr  # errors fail the run
    # What the bench met, as a raw client sees it: its AUDIO setup, and its PCM after a text setup.
    audio_setup = setup_message("m", code_execution=False, functions=[], modality="AUDIO")
    code, reason = await refusal(bench_server, [dump_client_message(audio_setup)])
    assert code == 1008 and reason and "responseModalities" in reason
    text_setup = setup_message("m", code_execution=False, functions=[])
    pcm, _ = voice_frames(wav)
    code, reason = await refusal(bench_server, [dump_client_message(text_setup), pcm[0]])
    assert code == 1008 and reason and reason.startswith("realtimeInput.audio is not supported")
    assert bench_server.proc.poll() is None
