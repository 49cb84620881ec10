"""Audio in: realtime audio chunks become user utterances, each transcribed into one user turn.

Voice reports, the session decides (style-anchors §7.3): this component calls `VoiceHooks` when speech
starts (the session barges in unless NO_INTERRUPTION) and when an utterance's text is final (the session
sends inputTranscription and starts the turn). It never cancels a turn or writes to the socket.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from live.voice.activity import Activity, ActivityParams, ActivityTracker
from live.voice.base import SpeechProbability, VoiceEngines
from live.voice.pcm import INPUT_RATE, Resampler, input_rate, pcm16
from protocol import RealtimeInputConfig

_PREROLL_S = 0.3  # audio kept from before a detected start, beyond the padding: the first syllable
_MAX_UNTURNED_S = 60.0  # TURN_INCLUDES_ALL_INPUT: audio since the last turn kept at most this long


class VoiceHooks(Protocol):
    async def speech_started(self) -> None:
        """Automatic detection committed a start of speech."""
        ...

    async def transcribed(self, text: str) -> None:
        """An utterance ended and this is its text (possibly empty: noise)."""
        ...


@dataclass(frozen=True)
class InputConfig:
    automatic: bool
    activity: ActivityParams
    all_input: bool  # TURN_INCLUDES_ALL_INPUT: audio outside activity belongs to the next turn

    @classmethod
    def from_setup(cls, config: RealtimeInputConfig | None) -> InputConfig:
        detection = config.automatic_activity_detection if config else None
        return cls(
            automatic=not (detection is not None and detection.disabled),
            activity=ActivityParams.from_setup(detection),
            all_input=config is not None and config.turn_coverage == "TURN_INCLUDES_ALL_INPUT",
        )


class _Utterance:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def audio(self) -> AsyncIterator[bytes]:
        while (chunk := await self.queue.get()) is not None:
            yield chunk


class VoiceInput:
    """One session's audio input: resampling, activity detection, and one transcription at a time."""

    def __init__(
        self,
        engines: VoiceEngines,
        config: InputConfig,
        hooks: VoiceHooks,
        vocabulary: Callable[[], Sequence[str]],
    ) -> None:
        self._engines = engines
        self._config = config
        self._hooks = hooks
        self._vocabulary = vocabulary
        self._resampler: Resampler | None = None
        self._vad: SpeechProbability | None = None
        self._tracker = ActivityTracker(config.activity, frame_ms=0)
        self._pending = np.zeros(0, dtype=np.int16)
        self._before: collections.deque[bytes] = collections.deque()
        self._before_s = 0.0
        self._open: _Utterance | None = None
        self._utterances: asyncio.Queue[_Utterance] = asyncio.Queue()

    @property
    def in_activity(self) -> bool:
        return self._open is not None

    async def audio(self, mime_type: str | None, data: bytes) -> None:
        """One realtime chunk (any supported rate); raises AudioFormatError for unreadable audio."""
        rate = input_rate(mime_type)
        samples = pcm16(data)
        if self._resampler is None or self._resampler.from_rate != rate:
            self._resampler = Resampler(rate, INPUT_RATE)
        pcm = self._resampler.push(samples)
        if not self._config.automatic:
            self._route(pcm.tobytes())
            return
        if self._vad is None:
            self._vad = await self._engines.vad()
            self._tracker = ActivityTracker(
                self._config.activity, frame_ms=1000 * self._vad.frame_samples / INPUT_RATE
            )
        await self._detect(np.concatenate([self._pending, pcm]))

    async def _detect(self, pcm: np.ndarray) -> None:
        assert self._vad is not None
        size = self._vad.frame_samples
        whole = len(pcm) // size * size
        self._pending = pcm[whole:]
        for offset in range(0, whole, size):
            frame = pcm[offset : offset + size]
            event = self._tracker.push(self._vad(frame))
            if event is Activity.START:
                self.start()
            self._route(frame.tobytes())
            if event is Activity.START:
                await self._hooks.speech_started()
            elif event is Activity.END:
                self.end()

    def _route(self, pcm: bytes) -> None:
        if self._open is not None:
            self._open.queue.put_nowait(pcm)
            return
        self._before.append(pcm)
        self._before_s += len(pcm) / 2 / INPUT_RATE
        limit = _MAX_UNTURNED_S if self._config.all_input else self._config.activity.start_ms / 1000
        limit += _PREROLL_S
        while self._before and self._before_s > limit:
            self._before_s -= len(self._before.popleft()) / 2 / INPUT_RATE

    def start(self) -> None:
        """An utterance begins (detected, or the client's activityStart)."""
        if self._open is not None:
            return
        self._open = _Utterance()
        if self._config.automatic or self._config.all_input:
            for chunk in self._before:
                self._open.queue.put_nowait(chunk)
        self._before.clear()
        self._before_s = 0.0
        self._utterances.put_nowait(self._open)

    def end(self) -> None:
        """The utterance ends (detected, the client's activityEnd, or audioStreamEnd): transcribe it."""
        if self._open is not None:
            self._open.queue.put_nowait(None)
            self._open = None

    def stream_end(self) -> None:
        """audioStreamEnd: the microphone paused; what is buffered is flushed as the end of speech."""
        self.end()
        self._tracker.reset()
        self._pending = np.zeros(0, dtype=np.int16)
        self._resampler = None

    async def run(self) -> None:
        """Transcribes utterances in order, for the session's lifetime."""
        try:
            while True:
                utterance = await self._utterances.get()
                text = await self._engines.stt.transcribe(utterance.audio(), self._vocabulary())
                await self._hooks.transcribed(text)
        finally:
            if self._vad is not None:
                self._vad.close()
                self._vad = None
