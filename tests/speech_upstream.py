"""A real OpenAI-compatible speech server for the tests: `/v1/audio/transcriptions` reads uploaded WAV
with pocketsphinx, `/v1/audio/speech` speaks with espeak-ng, in the formats the OpenAI API defines
(`json`/`text` transcripts; `pcm` = raw 24 kHz PCM16 mono, or `wav`). Errors use OpenAI's
`{"error": {"message", "type", "code"}}` shape. Run: `python -m tests.speech_upstream PORT`.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import io
import subprocess
import sys
import time
import urllib.error
import urllib.request
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from live.voice import EspeakSynthesizer, PocketsphinxTranscriber
from live.voice.base import Voice
from live.voice.pcm import INPUT_RATE, OUTPUT_RATE, wav_bytes

START_TIMEOUT_S = 30.0
# OpenAI's voices, each an espeak-ng voice; any other name is taken as an espeak-ng voice itself.
VOICES = {"alloy": "en-us+f1", "echo": "en-us+m3", "nova": "en-us+f3", "onyx": "en-us+m7"}

app = FastAPI()
_stt = PocketsphinxTranscriber(workers=2)
_tts = EspeakSynthesizer()


def _error(status: int, message: str) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": None}}, status)


def _form(content_type: str, body: bytes) -> dict[str, bytes]:
    """multipart/form-data fields by name (the stdlib MIME parser reads it)."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    fields: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = payload
    return fields


def _pcm16k(data: bytes) -> bytes:
    """16 kHz mono PCM16 of a WAV upload; ValueError for anything else."""
    try:
        with wave.open(io.BytesIO(data)) as wav:
            if wav.getsampwidth() != 2:
                raise ValueError("only 16-bit WAV is supported")
            rate, channels = wav.getframerate(), wav.getnchannels()
            samples = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, channels)
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"unreadable WAV: {exc}") from None
    mono = samples.mean(axis=1).astype("<i2")
    return (mono if rate == INPUT_RATE else soxr.resample(mono, rate, INPUT_RATE).astype("<i2")).tobytes()


@app.post("/v1/audio/transcriptions")
async def transcriptions(request: Request) -> Response:
    fields = _form(request.headers.get("content-type", ""), await request.body())
    if "file" not in fields or "model" not in fields:
        return _error(400, "file and model are required")
    try:
        pcm = _pcm16k(fields["file"])
    except ValueError as exc:
        return _error(400, str(exc))
    prompt = fields.get("prompt", b"").decode()

    async def audio() -> AsyncIterator[bytes]:
        yield pcm

    text = await _stt.transcribe(audio(), [p for p in prompt.split(", ") if p])
    response_format = fields.get("response_format", b"json").decode()
    if response_format == "text":
        return PlainTextResponse(text)
    if response_format == "json":
        return JSONResponse({"text": text})
    return _error(400, f"response_format {response_format!r} is not supported")


@app.post("/v1/audio/speech")
async def speech(request: Request) -> Response:
    body = await request.json()
    text, voice, response_format = body.get("input"), body.get("voice"), body.get("response_format", "mp3")
    if not isinstance(text, str) or not isinstance(voice, str) or "model" not in body:
        return _error(400, "model, input and voice are required")
    if response_format not in ("pcm", "wav"):
        return _error(400, f"response_format {response_format!r} is not supported")
    audio = _tts.synthesize(text, Voice(VOICES.get(voice, voice), "en-us"))
    first = await anext(audio, b"")
    if not first:  # espeak-ng speaks nothing for a voice it does not have
        await audio.aclose()
        return _error(500, f"synthesis failed for voice {voice!r}")
    if response_format == "wav":
        rest = b"".join([chunk async for chunk in audio])
        return Response(wav_bytes(first + rest, OUTPUT_RATE), media_type="audio/wav")

    async def stream() -> AsyncIterator[bytes]:
        async with contextlib.aclosing(audio):
            yield first
            async for chunk in audio:
                yield chunk

    return StreamingResponse(stream(), media_type="audio/pcm")


@dataclass
class SpeechUpstream:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_speech_upstream(port: int, log: Path) -> SpeechUpstream:
    """Starts this module as its own process on `port`; returns once it answers."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.speech_upstream", str(port)],
            stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[1],
        )  # fmt: skip
    upstream = SpeechUpstream(proc, port)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"speech upstream exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/docs", timeout=2).close()
            return upstream
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)  # polling for the port to open
    upstream.stop()
    raise RuntimeError("speech upstream did not start")


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
