"""Speech to text: pocketsphinx embedded (streaming, biased by the conversation's vocabulary) and any
OpenAI-compatible `/v1/audio/transcriptions` upstream (speaches, faster-whisper servers, vLLM).
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path

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


class PocketsphinxTranscriber:
    """CMU pocketsphinx with the English model its wheel ships; no download, no GPU.

    A general decoder holds ~90 MB, so those are pooled (at most `decoders` utterances are decoded at
    once; more wait). Audio is decoded on a worker thread while it arrives, so little is left at the
    end. The general language model is weak on unusual or synthetic speech, so when the conversation has
    a vocabulary (custom vocabulary, instructions, earlier turns) a small decoder reads the utterance
    again against a language model of that vocabulary, and its reading wins when it is one of the
    vocabulary's phrases.
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
        await asyncio.to_thread(general.start_utt)
        utterance = bytearray()
        pending = bytearray()
        try:
            async for chunk in audio:
                pending += chunk
                if len(pending) >= _BATCH_BYTES:
                    batch, pending = bytes(pending), bytearray()
                    utterance += batch
                    await asyncio.to_thread(general.process_raw, batch)
        finally:
            utterance += pending
            reading = await asyncio.to_thread(_finish, general, bytes(pending))
        known = _Vocabulary.of(general, vocabulary)
        if not known.phrases or not utterance:
            return reading
        biased = await asyncio.to_thread(known.read, bytes(utterance))
        return biased if known.matches(biased, reading) else reading

    async def close(self) -> None:
        self._free.clear()


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

    def read(self, utterance: bytes) -> str:
        """The whole utterance decoded by a decoder that knows only these words (8 ms and 7 MB to make;
        about 0.03 s per second of speech). Decoded at once, its cepstral mean is the utterance's own,
        which reads a first utterance far better than a live estimate would."""
        with tempfile.TemporaryDirectory(prefix="openlive-stt-") as name:
            directory = Path(name)
            self._write(directory)
            decoder = Decoder(
                samprate=INPUT_RATE,
                loglevel="FATAL",
                lm=str(directory / "vocabulary.arpa"),
                dict=str(directory / "vocabulary.dict"),
            )
        decoder.start_utt()
        decoder.process_raw(utterance, full_utt=True)
        return _finish(decoder, b"")

    def _write(self, directory: Path) -> None:
        lm = ArpaBoLM(text="\n".join(" ".join(p) for p in self.phrases), add_start=True)
        lm.compute()
        lm.write_file(str(directory / "vocabulary.arpa"))
        lines = "".join(f"{word} {phones}\n" for word, phones in self.pronunciations.items())
        (directory / "vocabulary.dict").write_text(lines)

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
