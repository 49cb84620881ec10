"""Speech to text: pocketsphinx embedded (streaming, biased by the conversation's vocabulary) and any
OpenAI-compatible `/v1/audio/transcriptions` upstream (speaches, faster-whisper servers, vLLM).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import openai

from live.backends.openai_compat import upstream_error
from live.voice import sphinx
from live.voice.pcm import INPUT_RATE, wav_bytes
from live.voice.sphinx import LENGTH, request

_SPHINX = Path(sphinx.__file__)
_BATCH_BYTES = 4 * 1024  # sent to the worker in batches of ~130 ms: little is left at the end
STT_UPSTREAM = "the speech recognition upstream"  # names it in close reasons


class _Worker:
    """A `live/voice/sphinx.py` process: one decoder, one utterance at a time."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls) -> _Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(_SPHINX), # by path: the worker needs pocketsphinx, not the server

            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return cls(proc)

    def send(self, op: bytes, payload: bytes = b"") -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(request(op, payload))

    async def text(self) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        await self.proc.stdin.drain()
        (size,) = LENGTH.unpack(await self.proc.stdout.readexactly(LENGTH.size))
        return (await self.proc.stdout.readexactly(size)).decode()

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


class PocketsphinxTranscriber:
    """CMU pocketsphinx with the English model its wheel ships; no download, no GPU.

    Decoding runs in worker processes (`live.voice.sphinx`), so it uses every core and never blocks
    the event loop. A worker holds ~100 MB, so at most `workers` utterances are read at once (more
    wait; their audio queues meanwhile). Audio goes to the worker while it is spoken, so little is left
    at the end. The general language model is weak on unusual or synthetic speech, so when the
    conversation has a vocabulary (custom vocabulary, instructions, earlier turns) a small decoder reads
    the utterance again against a language model of that vocabulary, and its reading wins when it is
    one of the vocabulary's phrases.
    """

    def __init__(self, workers: int = 4) -> None:
        self._free: list[_Worker] = []
        self._all: list[_Worker] = []
        self._slots = asyncio.Semaphore(workers)

    async def transcribe(self, audio: AsyncIterable[bytes], vocabulary: Sequence[str]) -> str:
        async with self._slots:
            worker = self._free.pop() if self._free else await self._spawn()
            try:
                text = await self._read(worker, audio, vocabulary)
            except BaseException:
                await worker.stop()  # mid-utterance: its state is unknown
                self._all.remove(worker)
                raise
            self._free.append(worker)
            return text

    async def _spawn(self) -> _Worker:
        worker = await _Worker.start()
        self._all.append(worker)
        return worker

    @staticmethod
    async def _read(worker: _Worker, audio: AsyncIterable[bytes], vocabulary: Sequence[str]) -> str:
        worker.send(b"S", json.dumps(list(vocabulary)).encode())
        pending = bytearray()
        async for chunk in audio:
            pending += chunk
            if len(pending) >= _BATCH_BYTES:
                worker.send(b"A", bytes(pending))
                pending.clear()
                assert worker.proc.stdin is not None
                await worker.proc.stdin.drain()
        if pending:
            worker.send(b"A", bytes(pending))
        worker.send(b"E")
        return await worker.text()

    async def close(self) -> None:
        for worker in self._all:
            await worker.stop()
        self._all.clear()
        self._free.clear()


@dataclass(frozen=True)
class OpenAITranscriptionConfig:
    base_url: str
    model: str = "whisper-1"
    api_key: str | None = None
    timeout_s: float = 30.0


class OpenAITranscriber:
    """An OpenAI-compatible transcription upstream: the utterance is sent as one WAV when it ends, with
    the vocabulary as the prompt (Whisper-family models take it as a spelling and topic hint)."""

    def __init__(self, config: OpenAITranscriptionConfig) -> None:
        self._model = config.model
        self._client = openai.AsyncOpenAI(
            base_url=config.base_url,
            api_key=config.api_key or "none",
            timeout=config.timeout_s,
            max_retries=1,
        )

    async def transcribe(self, audio: AsyncIterable[bytes], vocabulary: Sequence[str]) -> str:
        pcm = bytearray()
        async for chunk in audio:
            pcm += chunk
        if not pcm:
            return ""
        try:
            result = await self._client.audio.transcriptions.create(
                model=self._model,
                file=("speech.wav", wav_bytes(bytes(pcm), INPUT_RATE), "audio/wav"),
                prompt=", ".join(vocabulary)[-800:] or openai.omit,
            )
        except openai.APIError as exc:
            raise upstream_error(exc, STT_UPSTREAM) from exc
        text: str = result.text
        return text.strip()

    async def close(self) -> None:
        await self._client.close()
