"""The pocketsphinx side of speech recognition, run in worker processes (this file, run as a script).

pocketsphinx holds the GIL while it decodes (two threads decoding at once took 2.4x as long as one after
the other), so decoding on threads would stall the event loop and use one core. Each worker process
owns one general decoder and reads one utterance at a time, streamed while it is spoken.

Wire (stdin/stdout): a request is one byte (S start, A audio, E end) and a 4-byte little-endian length
with its payload (S: the vocabulary as a JSON list, A: 16 kHz PCM16); E is answered with a 4-byte length
and the utterance's text in UTF-8.
"""

from __future__ import annotations

import json
import re
import struct
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import BinaryIO

from pocketsphinx import Decoder
from pocketsphinx.lm import ArpaBoLM

INPUT_RATE = 16_000
HEADER = struct.Struct("<cI")
LENGTH = struct.Struct("<I")
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
# The vocabulary decoder can only say vocabulary words, so it forces some reading onto any sound. Its
# reading wins only when it is (nearly) one whole vocabulary phrase and about as long as the general
# reading: then the user said an expected phrase. Measured on espeak-ng speech: phrases that were said
# match at 0.95-1.0; unrelated speech yields fragments ("what plot", "the weather in") at 0.3-0.67.
_PHRASE_MATCH = 0.8


def request(op: bytes, payload: bytes = b"") -> bytes:
    return HEADER.pack(op, len(payload)) + payload


class Utterances:
    """One general decoder reading utterances one after another."""

    def __init__(self) -> None:
        # Without the second (flat) and lattice passes the end of an utterance costs ~30 ms, not
        # ~150 ms: the first pass ran while the user spoke. The vocabulary decoder keeps both.
        self._general = Decoder(samprate=INPUT_RATE, loglevel="FATAL", fwdflat=False, bestpath=False)
        self._vocabulary: list[str] = []
        self._audio = bytearray()

    def start(self, vocabulary: list[str]) -> None:
        self._vocabulary = vocabulary
        self._audio = bytearray()
        self._general.start_utt()

    def feed(self, pcm: bytes) -> None:
        self._audio += pcm
        self._general.process_raw(pcm)

    def end(self) -> str:
        reading = _finish(self._general)
        known = _Vocabulary.of(self._general, self._vocabulary)
        if not known.phrases or not self._audio:
            return reading
        biased = known.read(bytes(self._audio))
        return biased if known.matches(biased, reading) else reading


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
        return _finish(decoder)

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


def _finish(decoder: Decoder) -> str:
    decoder.end_utt()
    hyp = decoder.hyp()
    words = hyp.hypstr.split() if hyp is not None else []
    return " ".join(w for w in words if not w.startswith(("<", "[")))  # <sil>, [NOISE]


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    utterances = Utterances()
    while header := requests.read(HEADER.size):
        op, size = HEADER.unpack(header)
        payload = requests.read(size)
        if op == b"S":
            utterances.start(json.loads(payload))
        elif op == b"A":
            utterances.feed(payload)
        elif op == b"E":
            text = utterances.end().encode()
            replies.write(LENGTH.pack(len(text)) + text)
            replies.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
