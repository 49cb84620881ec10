"""The three speech engines, each behind one small interface, and the bundle a server holds.

An engine never touches a session: the input side (`live.voice.input`) feeds speech probability and
transcription, the output side (`live.voice.output`) feeds synthesis, and the session decides.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class SpeechProbability(Protocol):
    """A voice activity model for one audio stream (it keeps state between frames)."""

    frame_samples: int  # samples of 16 kHz audio per call

    def __call__(self, frame: np.ndarray) -> float:
        """Probability (0..1) that this frame of int16 samples holds speech; well under 1 ms a call."""
        ...

    def close(self) -> None:
        """Gives the model back; the object is not used again."""
        ...


class Transcriber(Protocol):
    async def transcribe(self, audio: AsyncIterable[bytes], vocabulary: Sequence[str]) -> str:
        """Text of one utterance, fed as 16 kHz PCM16 chunks while it is spoken (engines that stream
        start decoding at once). `vocabulary`: phrases this conversation is likely to contain."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Voice:
    """What a synthesizer needs to speak: its own voice name and a BCP-47 language."""

    name: str
    language: str


class Synthesizer(Protocol):
    def voice(self, name: str | None, language: str | None) -> Voice:
        """The engine's voice for a Gemini `voiceName` and `languageCode`; raises ProtocolError(1007)
        for names or languages it cannot speak."""
        ...

    def synthesize(self, text: str, voice: Voice) -> AsyncGenerator[bytes, None]:
        """24 kHz PCM16 chunks of `text`, yielded as soon as they are made. Closing the iterator
        (aclose) stops the synthesis promptly."""
        ...

    async def close(self) -> None: ...


class VadFactory(Protocol):
    async def __call__(self) -> SpeechProbability:
        """A fresh model for one session's audio stream."""
        ...


@dataclass
class VoiceEngines:
    """The speech engines a server runs, shared by all sessions."""

    vad: VadFactory
    stt: Transcriber
    tts: Synthesizer

    async def close(self) -> None:
        await self.stt.close()
        await self.tts.close()
