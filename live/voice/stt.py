"""Speech to text: pocketsphinx embedded (streaming, biased by the conversation's vocabulary) and any
OpenAI-compatible `/v1/audio/transcriptions` upstream (speaches, faster-whisper servers, vLLM).
"""

from __future__ import annotations

import asyncio
import functools
import re
import tempfile
from collections.abc import AsyncIterable, Callable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import TypeVar

import openai
from pocketsphinx import Decoder
from pocketsphinx.lm import ArpaBoLM

from live.voice.pcm import INPUT_RATE, wav_bytes

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
# The vocabulary decoder can only say vocabulary words, so it forces some reading onto any sound. Its
# reading wins only when it is (nearly) one whole vocabulary phrase and about as long as the general
# reading: then the user said an expected phrase. Measured on espeak-ng speech: phrases that were said
# match at 0.95-1.0; unrelated speech yields fragments ("what plot", "the weather in") at 0.3-0.67.
_PHRASE_MATCH = 0.8
_BATCH_BYTES = 8 * 1024  # decode in batches of ~250 ms: fewer thread hops, still streaming
_T = TypeVar("_T")


class PocketsphinxTranscriber:
    """CMU pocketsphinx with the English model its wheel ships; no download, no GPU.

    A general decoder holds ~90 MB, so those are pooled (at most `decoders` utterances are decoded at
    once; more wait). Audio is decoded on a worker thread while it arrives, so little is left at the
    end. The general language model is weak on unusual or synthetic speech, so when the conversation has
    a vocabulary (custom vocabulary, instructions, earlier turns) a second, small decoder (8 ms and 7 MB
    to make) reads the same audio against a language model of that vocabulary, and its reading wins
    when it fits the sound as well as the general one.
    """

    def __init__(self, decoders: int = 4) -> None:
        self._free: list[Decoder] = []
        self._slots = asyncio.Semaphore(decoders)

    async def transcribe(self, audio: AsyncIterable[bytes], vocabulary: Sequence[str]) -> str:
        async with self._slots:
            general = self._free.pop() if self._free else await asyncio.to_thread(_new_decoder)
            try:
                return await self._decode(general, audio, vocabulary)
            finally:
                self._free.append(general)

    async def _decode(self, general: Decoder, audio: AsyncIterable[bytes], vocabulary: Sequence[str]) -> str:
        with tempfile.TemporaryDirectory(prefix="openlive-stt-") as directory:
            known = _Vocabulary.of(general, vocabulary)
            biased = await asyncio.to_thread(known.decoder, general, Path(directory))
            decoders = [general] if biased is None else [general, biased]
            await asyncio.to_thread(_each, decoders, lambda d: d.start_utt())
            pending = bytearray()
            try:
                async for chunk in audio:
                    pending += chunk
                    if len(pending) >= _BATCH_BYTES:
                        batch, pending = bytes(pending), bytearray()
                        await asyncio.to_thread(_each, decoders, functools.partial(_feed, batch))
            finally:
                tail = bytes(pending)
                readings = await asyncio.to_thread(_each, decoders, lambda d: _finish(d, tail))
        if len(readings) == 2 and known.matches(readings[1], readings[0]):
            return readings[1]
        return readings[0]

    async def close(self) -> None:
        self._free.clear()


def _each(decoders: list[Decoder], step: Callable[[Decoder], _T]) -> list[_T]:
    return [step(d) for d in decoders]


def _feed(batch: bytes, decoder: Decoder) -> None:
    decoder.process_raw(batch)


def _new_decoder() -> Decoder:
    return Decoder(samprate=INPUT_RATE, loglevel="FATAL")


@dataclass(frozen=True)
class _Vocabulary:
    phrases: list[list[str]]  # each phrase as the words the dictionary can pronounce
    pronunciations: dict[str, str]

    @classmethod
    def of(cls, general: Decoder, texts: Sequence[str]) -> _Vocabulary:
        pronunciations: dict[str, str] = {}
        phrases = []
        for text in texts:
            words = []
            for word in _WORD.findall(text.lower()):
                phones = pronunciations.get(word) or general.lookup_word(word)
                if phones:
                    pronunciations[word] = phones
                    words.append(word)
            if words:
                phrases.append(words)
        return cls(phrases, pronunciations)

    def decoder(self, general: Decoder, directory: Path) -> Decoder | None:
        """A decoder that knows only these words, starting from the general one's cepstral mean."""
        if not self.phrases:
            return None
        lm = ArpaBoLM(text="\n".join(" ".join(p) for p in self.phrases), add_start=True)
        lm.compute()
        lm.write_file(str(directory / "vocabulary.arpa"))
        lines = "".join(f"{word} {phones}\n" for word, phones in self.pronunciations.items())
        (directory / "vocabulary.dict").write_text(lines)
        decoder = Decoder(
            samprate=INPUT_RATE,
            loglevel="FATAL",
            lm=str(directory / "vocabulary.arpa"),
            dict=str(directory / "vocabulary.dict"),
        )
        decoder.set_cmn(general.get_cmn())
        return decoder

    def matches(self, reading: str, general: str) -> bool:
        """The reading is (nearly) one whole phrase and not much shorter than the general reading."""
        words = reading.split()
        if not words or len(words) < len(general.split()) / 2:
            return False
        return any(
            SequenceMatcher(None, words, phrase, autojunk=False).ratio() >= _PHRASE_MATCH
            for phrase in self.phrases
        )


def _finish(decoder: Decoder, tail: bytes) -> str:
    if tail:
        decoder.process_raw(tail)
    decoder.end_utt()
    hyp = decoder.hyp()
    words = hyp.hypstr.split() if hyp is not None else []
    return " ".join(w for w in words if not w.startswith(("<", "[")))  # <sil>, [NOISE]


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
        result = await self._client.audio.transcriptions.create(
            model=self._model,
            file=("speech.wav", wav_bytes(bytes(pcm), INPUT_RATE), "audio/wav"),
            prompt=", ".join(vocabulary)[-800:] or openai.omit,
        )
        text: str = result.text
        return text.strip()

    async def close(self) -> None:
        await self._client.close()
