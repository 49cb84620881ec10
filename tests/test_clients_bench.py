"""`openlive bench` against a real server: a small load, no errors, a sane JSON result."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.connection import dump_client_message, setup_message
from clients.load_stats import BenchResult, Percentiles
from clients.loadgen import voice_frames
from tests.conftest import API_KEY, OPENLIVE, Server, start_server
from tests.speech import speak, write_wav


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
    assert result.turns_completed >= 20 and result.turns_completed == result.turns_sent
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


async def spoken_turn(server: Server, frames: list[str]) -> list[str]:
    """Sends frames over a raw WebSocket and reads one turn: setupComplete, each audio part's mime
    type, and turnComplete, in arrival order."""
    kinds: list[str] = []
    async with server.raw_live() as ws:
        for frame in frames:
            await ws.send(frame)
        async with asyncio.timeout(60):
            async for raw in ws:
                message = json.loads(raw)
                content = message.get("serverContent", {})
                parts = content.get("modelTurn", {}).get("parts", [])
                kinds += ["setupComplete"] if "setupComplete" in message else []
                kinds += [p["inlineData"]["mimeType"] for p in parts if "inlineData" in p]
                if content.get("turnComplete"):
                    return [*kinds, "turnComplete"]
    return kinds


@pytest.fixture(scope="module")
def voice_server(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A model that answers every turn in one word, so a spoken turn's playback is short."""
    directory = tmp_path_factory.mktemp("voice-bench")
    (directory / "script.yaml").write_text('{"rules": [], "fallback": "Yes."}')
    srv = start_server(
        certs, directory / "server.log", "--backend", "scripted", "--script", str(directory / "script.yaml")
    )
    yield srv
    srv.stop()


async def test_voice_turns_complete_with_spoken_answers(voice_server: Server, tmp_path: Path) -> None:
    """Each voice turn is real speech (espeak-ng) and audioStreamEnd; each ends with audio received and
    turnComplete, and the first audio is measured from the end of the user's speech."""
    bench_server = voice_server
    wav = write_wav(tmp_path / "question.wav", speak("what is the sum of the first fifty prime numbers"))
    args = ["-n", "2", "-d", "0.5", "--ramp", "0", "--scenario", "voice", "--wav", str(wav)]
    proc, out = await asyncio.to_thread(run_bench, bench_server, tmp_path, *args, "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = BenchResult.model_validate_json(out.read_text())
    assert (result.sessions_connected, result.errors) == (2, {})
    assert result.turns_completed >= 2
    first = result.first_content_ms
    assert first.count == result.turns_completed and first.p50 is not None and first.p50 > 0
    # The same turn as a raw client sees it: PCM in, 24 kHz PCM out, then turnComplete.
    audio_setup = setup_message("m", code_execution=False, functions=[], modality="AUDIO")
    pcm, _ = voice_frames(wav)
    kinds = await spoken_turn(bench_server, [dump_client_message(audio_setup), *pcm])
    assert kinds[0] == "setupComplete" and "audio/pcm;rate=24000" in kinds and kinds[-1] == "turnComplete"
    assert bench_server.proc.poll() is None
