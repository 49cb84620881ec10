"""PCM16 audio on the wire: mime types, decoding, streaming resampling, WAV framing.

The Live API's audio is raw little-endian 16-bit mono PCM; input is natively 16 kHz ("audio/pcm" alone
means 16 kHz) and output is always 24 kHz. Resampling is soxr's streaming resampler, so a client's
8 kHz or 48 kHz microphone is converted chunk by chunk without clicks at chunk boundaries.
"""

from __future__ import annotations

import io
import re
import wave

import numpy as np
import soxr

from protocol import ProtocolError

INPUT_RATE = 16_000
OUTPUT_RATE = 24_000
OUTPUT_MIME = f"audio/pcm;rate={OUTPUT_RATE}"
MIN_RATE, MAX_RATE = 8_000, 192_000

_MIME = re.compile(r"audio/(?:pcm|l16|x-pcm|raw)\s*(?:;\s*(.*))?", re.IGNORECASE)
_PARAM = re.compile(r"\s*([a-z-]+)\s*=\s*([^;\s]+)\s*(?:;|$)", re.IGNORECASE)


class AudioFormatError(ProtocolError):
    """Audio a client sent that cannot be read: the session closes with 1007 and this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(1007, reason)


def input_rate(mime_type: str | None) -> int:
    """The sample rate a realtime audio mime type names: ``audio/pcm;rate=8000`` -> 8000."""
    match = _MIME.fullmatch((mime_type or "").strip())
    if match is None:
        raise AudioFormatError(
            f"Unsupported audio mime type {mime_type!r}; send audio/pcm;rate=N (16-bit mono PCM)."
        )
    rate = INPUT_RATE
    for name, value in _PARAM.findall(match.group(1) or ""):
        if name.lower() == "rate":
            if not value.isdigit() or not MIN_RATE <= int(value) <= MAX_RATE:
                raise AudioFormatError(f"Unsupported audio sample rate {value!r}; use 8000 to 192000.")
            rate = int(value)
        elif name.lower() == "channels" and value != "1":
            raise AudioFormatError("Only mono audio (channels=1) is supported.")
    return rate


def pcm16(data: bytes) -> np.ndarray:
    """Little-endian PCM16 bytes as int16 samples; an odd byte count is a client error."""
    if len(data) % 2:
        raise AudioFormatError(f"Audio data has an odd byte count ({len(data)}); PCM16 needs 2 per sample.")
    return np.frombuffer(data, dtype="<i2").astype(np.int16, copy=False)


class Resampler:
    """Streaming conversion of int16 chunks from one rate to another (a no-op when they match)."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._stream = (
            None if from_rate == to_rate else soxr.ResampleStream(from_rate, to_rate, 1, dtype="int16")
        )

    def push(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return samples
        out: np.ndarray = self._stream.resample_chunk(samples, last=last)
        return out


def wav_bytes(pcm: bytes, rate: int) -> bytes:
    """PCM16 mono wrapped in a WAV header (what transcription upstreams accept)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    return buffer.getvalue()


def duration_s(pcm: bytes, rate: int) -> float:
    return len(pcm) / 2 / rate
