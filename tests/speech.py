"""Real speech for tests: espeak-ng says it, soxr brings it to the rate a test needs."""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import numpy as np
import soxr


def speak(text: str, rate: int = 16_000, voice: str = "en-us") -> bytes:
    """`text` spoken by espeak-ng as PCM16 mono at `rate`."""
    wav = subprocess.run(
        ["espeak-ng", "--stdout", "-v", voice, text], capture_output=True, check=True, timeout=30
    ).stdout
    native = int.from_bytes(wav[24:28], "little")
    samples = np.frombuffer(wav[44 : 44 + (len(wav) - 44) // 2 * 2], dtype="<i2")
    return soxr.resample(samples, native, rate).astype("<i2").tobytes()


def silence(seconds: float, rate: int = 16_000) -> bytes:
    return b"\0\0" * int(seconds * rate)


def chunks(pcm: bytes, rate: int = 16_000, seconds: float = 0.04) -> list[bytes]:
    step = int(rate * seconds) * 2
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


def write_wav(path: Path, pcm: bytes, rate: int = 16_000) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    return path
