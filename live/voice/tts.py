"""Text to speech: espeak-ng embedded (the Debian package; ~20x real time on one core) and any
OpenAI-compatible `/v1/audio/speech` upstream (speaches, Kokoro servers) for natural voices.

Gemini's prebuilt voice names are mapped onto espeak-ng voice variants of the same gender, so each
name keeps a distinct, stable voice; the language comes from `speechConfig.languageCode`.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import struct
import subprocess
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

import httpx
import numpy as np
import openai

from live.backends.openai_compat import upstream_error
from live.voice.base import Voice
from live.voice.pcm import OUTPUT_RATE, Resampler
from protocol import ProtocolError

# The Live API's 30 prebuilt voices by gender (Google's voice list); each maps to an espeak-ng variant.
FEMALE_VOICES = (
    "Kore", "Aoede", "Leda", "Zephyr", "Callirrhoe", "Autonoe", "Despina", "Erinome", "Laomedeia",
    "Achernar", "Gacrux", "Pulcherrima", "Vindemiatrix", "Sulafat",
)  # fmt: skip
MALE_VOICES = (
    "Puck", "Charon", "Fenrir", "Orus", "Enceladus", "Iapetus", "Umbriel", "Algieba", "Algenib",
    "Rasalgethi", "Alnilam", "Schedar", "Achird", "Zubenelgenubi", "Sadachbia", "Sadaltager",
)  # fmt: skip
DEFAULT_VOICE = "Puck"  # the Live API's default voice
_VARIANTS = {
    **{name: f"f{i % 5 + 1}" for i, name in enumerate(FEMALE_VOICES)},
    **{name: f"m{i % 7 + 1}" for i, name in enumerate(MALE_VOICES)},
}
_VOICE_FIELD = "setup.generationConfig.speechConfig.voiceConfig.prebuiltVoiceConfig.voiceName"
_LANGUAGE_FIELD = "setup.generationConfig.speechConfig.languageCode"
_READ_BYTES = 4096
TTS_UPSTREAM = "the speech synthesis upstream"  # names it in close reasons
_WAV_HEADER = 44  # espeak-ng --stdout writes a canonical 44-byte header (sizes unknown while streaming)


def gemini_voice(name: str | None) -> str:
    """The canonical Gemini voice name for `name` (case-insensitive); 1007 for an unknown one."""
    if name is None or not name.strip():
        return DEFAULT_VOICE
    for known in _VARIANTS:
        if known.lower() == name.strip().lower():
            return known
    raise ProtocolError(1007, f"Invalid value at '{_VOICE_FIELD}': unknown voice {name!r}.")


@dataclass
class EspeakSynthesizer:
    """espeak-ng as a subprocess per sentence (~15 ms to first audio): its 22,050 Hz output is resampled
    to 24 kHz as it streams. Killing the process is how a barge-in stops it."""

    binary: str = field(default_factory=lambda: shutil.which("espeak-ng") or "espeak-ng")
    words_per_minute: int = 175
    _languages: frozenset[str] | None = None

    def voice(self, name: str | None, language: str | None) -> Voice:
        variant = _VARIANTS[gemini_voice(name)]
        code = (language or "en-US").strip().lower()
        languages = self._known_languages()
        for candidate in (code, code.split("-")[0]):
            if candidate in languages:
                return Voice(name=f"{candidate}+{variant}", language=code)
        raise ProtocolError(1007, f"Invalid value at '{_LANGUAGE_FIELD}': {language!r} cannot be spoken.")

    def _known_languages(self) -> frozenset[str]:
        if self._languages is None:
            listing = subprocess.run(
                [self.binary, "--voices"], capture_output=True, text=True, timeout=10, check=True
            ).stdout
            self._languages = frozenset(line.split()[1] for line in listing.splitlines()[1:] if line.split())
        return self._languages

    async def synthesize(self, text: str, voice: Voice) -> AsyncGenerator[bytes, None]:
        proc = await asyncio.create_subprocess_exec(
            self.binary, "--stdout", "-v", voice.name, "-s", str(self.words_per_minute),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(text.encode())  # on stdin, so text that starts with "-" is not an option
            proc.stdin.close()
            header = await proc.stdout.readexactly(_WAV_HEADER)
            (rate,) = struct.unpack_from("<I", header, 24)
            resampler = Resampler(rate, OUTPUT_RATE)
            carry = b""
            while True:
                data = await proc.stdout.read(_READ_BYTES)
                samples = carry + data
                carry = samples[len(samples) // 2 * 2 :]
                pcm = np.frombuffer(samples[: len(samples) // 2 * 2], dtype="<i2")
                out = resampler.push(pcm, last=not data)
                if len(out):
                    yield out.astype("<i2").tobytes()
                if not data:
                    break
            await proc.wait()
        except asyncio.IncompleteReadError:
            return  # nothing to say (empty text)
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    async def close(self) -> None:
        return None


@dataclass(frozen=True)
class OpenAISpeechConfig:
    base_url: str
    model: str = "tts-1"
    api_key: str | None = None
    default_voice: str = "alloy"
    voices: dict[str, str] = field(default_factory=dict)  # Gemini voice name -> upstream voice name
    timeout_s: float = 30.0


class OpenAISynthesizer:
    """An OpenAI-compatible speech upstream asked for `pcm` (raw 24 kHz PCM16 mono), streamed."""

    def __init__(self, config: OpenAISpeechConfig) -> None:
        self._config = config
        self._client = openai.AsyncOpenAI(
            base_url=config.base_url,
            api_key=config.api_key or "none",
            timeout=config.timeout_s,
            max_retries=1,
        )

    def voice(self, name: str | None, language: str | None) -> Voice:
        gemini = gemini_voice(name)
        return Voice(
            name=self._config.voices.get(gemini, self._config.default_voice), language=language or "en-US"
        )

    async def synthesize(self, text: str, voice: Voice) -> AsyncGenerator[bytes, None]:
        try:
            async with self._client.audio.speech.with_streaming_response.create(
                model=self._config.model, voice=voice.name, input=text, response_format="pcm"
            ) as response:
                carry = b""
                async for data in response.iter_bytes(_READ_BYTES):
                    data = carry + data
                    carry = data[len(data) // 2 * 2 :]
                    if len(data) > len(carry):
                        yield data[: len(data) // 2 * 2]
        except (openai.APIError, httpx.TransportError) as exc:  # a stream cut mid-body is httpx's
            raise upstream_error(exc, TTS_UPSTREAM) from exc

    async def close(self) -> None:
        await self._client.close()
