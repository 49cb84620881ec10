"""Streaming model text cut into sentences to speak, so the first audio leaves before the answer ends."""

from __future__ import annotations

import re
from dataclasses import dataclass

_END = re.compile(r"[.!?;:](?=\s)|\n")
_MARKUP = re.compile(r"`{3}.*?(`{3}|$)|[*_#`>|~]+|\[([^\]]*)\]\([^)]*\)", re.DOTALL)
_SPACE = re.compile(r"\s+")
_FIRST_CLAUSE_CHARS = 40  # the first sentence may be cut at a comma once this long: first audio sooner
_MAX_CHARS = 300  # a sentence without punctuation is cut at a space past this


@dataclass(frozen=True)
class Sentence:
    text: str  # what is spoken (markup removed)
    raw_chars: int  # how many characters of the model's text it covers


class SentenceSplitter:
    """Fed text deltas in order; returns the sentences completed so far (and the rest on `flush`)."""

    def __init__(self) -> None:
        self._buffer = ""
        self._spoken = 0

    def push(self, text: str) -> list[Sentence]:
        self._buffer += text
        out = []
        while (cut := self._cut()) is not None:
            out.append(self._take(cut))
        return out

    def flush(self) -> list[Sentence]:
        return [self._take(len(self._buffer))] if self._buffer else []

    def _cut(self) -> int | None:
        match = _END.search(self._buffer)
        if match is not None:
            return match.end()
        if not self._spoken and len(self._buffer) >= _FIRST_CLAUSE_CHARS:
            comma = self._buffer.rfind(", ")
            if comma > 0:
                return comma + 1
        if len(self._buffer) > _MAX_CHARS:
            space = self._buffer.rfind(" ", 0, _MAX_CHARS)
            return space + 1 if space > 0 else _MAX_CHARS
        return None

    def _take(self, end: int) -> Sentence:
        raw, self._buffer = self._buffer[:end], self._buffer[end:]
        self._spoken += 1
        return Sentence(text=speakable(raw), raw_chars=len(raw))


def speakable(text: str) -> str:
    """Markdown and code fences removed; what a voice should say."""
    return _SPACE.sub(" ", _MARKUP.sub(_replacement, text)).strip()


def _replacement(match: re.Match[str]) -> str:
    if match.group(2) is not None:  # a link: its text
        return match.group(2)
    return " " if match.group(0).startswith("```") else ""
