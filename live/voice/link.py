"""What one session uses of voice, decided once from its setup: whether it speaks, with which voice,
how its audio input is detected and transcribed, and whether speech interrupts the model."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from live.activity import Activity, Turns
from live.voice.base import Voice, VoiceEngines
from live.voice.input import InputConfig, VoiceHooks, VoiceInput
from live.voice.output import Send, SpeechTurn
from live.voice.stt import PocketsphinxTranscriber
from protocol import (
    Content,
    ModelText,
    Outbound,
    Part,
    ProtocolError,
    ServerContent,
    ServerMessage,
    Setup,
    Transcription,
)

_MODALITIES = ("TEXT", "AUDIO")
_SENTENCE = re.compile(r"(?<=[.!?;:\n])\s+")
_RECENT_TEXTS = 20  # text parts of the history that bias recognition


@dataclass(frozen=True)
class VoiceSetup:
    speaks: bool  # responseModalities AUDIO (the Live API's default)
    voice: Voice | None
    input: InputConfig
    interrupts: bool  # activityHandling is not NO_INTERRUPTION
    input_transcription: bool
    output_transcription: bool
    custom_vocabulary: tuple[str, ...]

    @classmethod
    def from_setup(cls, setup: Setup, engines: VoiceEngines) -> VoiceSetup:
        generation = setup.generation_config
        modalities = [
            m.upper() for m in (generation.response_modalities if generation else None) or ["AUDIO"]
        ]
        if len(modalities) != 1 or modalities[0] not in _MODALITIES:
            raise ProtocolError(
                1007, f"Invalid value at 'setup.generationConfig.responseModalities': {modalities}; "
                "use exactly one of TEXT, AUDIO."
            )  # fmt: skip
        speaks = modalities[0] == "AUDIO"
        speech = generation.speech_config if generation else None
        voice = None
        if speaks:
            name = (
                speech.voice_config.prebuilt_voice_config.voice_name
                if (speech and speech.voice_config and speech.voice_config.prebuilt_voice_config)
                else None
            )
            voice = engines.tts.voice(name, speech.language_code if speech else None)  # fmt: skip
        transcription = setup.input_audio_transcription
        if transcription is not None:
            _check_transcription(transcription.model_dump(exclude_none=True), engines)
        realtime = setup.realtime_input_config
        if realtime is not None and realtime.interim_transcript_timestamp_enabled:
            raise ProtocolError(
                1008, "realtimeInputConfig.interimTranscriptTimestampEnabled is not supported."
            )
        return cls(
            speaks=speaks,
            voice=voice,
            input=InputConfig.from_setup(realtime),
            interrupts=not (realtime is not None and realtime.activity_handling == "NO_INTERRUPTION"),
            input_transcription=transcription is not None,
            output_transcription=setup.output_audio_transcription is not None,
            custom_vocabulary=tuple((transcription.custom_vocabulary or []) if transcription else []),
        )


def _check_transcription(fields: dict[str, object], engines: VoiceEngines) -> None:
    unsupported = sorted(set(fields) - {"custom_vocabulary", "language_codes"})
    if unsupported:
        raise ProtocolError(1008, f"inputAudioTranscription.{unsupported[0]} is not supported.")
    languages = fields.get("language_codes") or []
    if isinstance(engines.stt, PocketsphinxTranscriber) and any(
        not str(code).lower().startswith("en")
        for code in languages  # type: ignore[attr-defined]
    ):
        raise ProtocolError(
            1008, "inputAudioTranscription.languageCodes: the embedded recogniser is English only."
        )


class SessionVoice:
    """The session's voice component: audio input it feeds, spoken turns it runs output through."""

    def __init__(
        self,
        engines: VoiceEngines,
        setup: VoiceSetup,
        hooks: VoiceHooks,
        history: Callable[[], tuple[str | None, list[Content]]],
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
    ) -> None:
        self.setup = setup
        self._engines = engines
        self._history = history
        self._hooks = hooks
        self._spawn = spawn
        self._input: VoiceInput | None = None
        self.listener: asyncio.Task[None] | None = None  # the input's transcriber, once there is input

    @property
    def input(self) -> VoiceInput:
        """The audio input and its transcriber task, made when the first audio or activity mark
        arrives: a session that never hears audio holds neither (bench/bench_idle.py)."""
        if self._input is None:
            self._input = VoiceInput(self._engines, self.setup.input, self._hooks, self.vocabulary)
            self.listener = self._spawn(self._input.run())
        return self._input

    def speech_turn(self, send: Send) -> SpeechTurn | None:
        """A new spoken turn, or None when the session answers in text."""
        if self.setup.voice is None:
            return None
        return SpeechTurn(self._engines.tts, self.setup.voice, send, self.setup.output_transcription)

    def vocabulary(self) -> Sequence[str]:
        """Phrases this conversation is likely to hear: the client's custom vocabulary, the system
        instruction and the latest turns, sentence by sentence."""
        system, history = self._history()
        texts = [p.text for c in history for p in c.parts if p.text and not p.thought][-_RECENT_TEXTS:]
        sentences = [s for t in [system or "", *texts] for s in _SENTENCE.split(t) if s.strip()]
        return [*self.setup.custom_vocabulary, *sentences]


def is_turn_output(message: Outbound) -> bool:
    """Messages a spoken turn must order against its audio (the rest goes out at once)."""
    if isinstance(message, ModelText):
        return True
    content = message.server_content
    if message.tool_call is not None:
        return True
    return content is not None and bool(
        content.model_turn or content.generation_complete or content.turn_complete
    )


class TranscriptTurns:
    """The session's answers to its voice input. Detected speech takes the floor and interrupts (unless
    NO_INTERRUPTION); a transcript is the user turn: it ends a manual activity, or a detected one."""

    def __init__(
        self, turns: Turns, activity: Activity, send: Callable[[ServerMessage], None], transcribe: bool
    ) -> None:
        self._turns = turns
        self._activity = activity
        self._send = send
        self._transcribe = transcribe

    async def speech_started(self) -> None:
        self._turns.hold(True)
        if self._activity.interrupts:
            await self._turns.interrupt("voice")

    async def transcribed(self, text: str) -> None:
        if text and self._transcribe:
            heard = Transcription(text=text, finished=True)
            self._send(ServerMessage(server_content=ServerContent(input_transcription=heard)))
        parts = [Part(text=text)] if text else []
        if not self._activity.automatic:
            await self._activity.end(parts)
            return
        if parts:
            await self._turns.user_input([Content(role="user", parts=parts)], interrupts=False)
        self._turns.hold(False)
