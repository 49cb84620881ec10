"""Speech: engines (VAD, STT, TTS) behind small interfaces, audio input that becomes user turns, and
spoken output paced by the client's playback clock."""

from live.voice.base import SpeechProbability, Synthesizer, Transcriber, Voice, VoiceEngines
from live.voice.input import InputConfig, VoiceHooks, VoiceInput
from live.voice.output import PlaybackClock, SpeechTurn, truncate_unheard
from live.voice.pcm import OUTPUT_MIME, OUTPUT_RATE, AudioFormatError
from live.voice.stt import (
    OpenAITranscriber,
    OpenAITranscriptionConfig,
    PocketsphinxTranscriber,
)
from live.voice.tts import EspeakSynthesizer, OpenAISpeechConfig, OpenAISynthesizer
from live.voice.vad import SileroPool

__all__ = [
    "OUTPUT_MIME",
    "OUTPUT_RATE",
    "AudioFormatError",
    "EspeakSynthesizer",
    "InputConfig",
    "OpenAISpeechConfig",
    "OpenAISynthesizer",
    "OpenAITranscriber",
    "OpenAITranscriptionConfig",
    "PlaybackClock",
    "PocketsphinxTranscriber",
    "SileroPool",
    "SpeechProbability",
    "SpeechTurn",
    "Synthesizer",
    "Transcriber",
    "Voice",
    "VoiceEngines",
    "VoiceHooks",
    "VoiceInput",
    "truncate_unheard",
]
