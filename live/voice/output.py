"""Speaking one model turn: the turn's messages in, audio out at the pace it is made, the client's
playback clock kept, and on interruption the model's text cut to what the user actually heard.

As Google's server does (live-behaviour.md §1): audio goes out as fast as it is synthesized, in
`audio/pcm;rate=24000` parts, one part per message; `generationComplete` follows the last audio, and
`turnComplete` waits until the client's playback would have finished (the window in which speech still
interrupts). Other parts (executableCode, codeExecutionResult, figures, toolCall) keep their place
between the sentences around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from live.voice.base import Synthesizer, Voice
from live.voice.pcm import OUTPUT_MIME, OUTPUT_RATE
from live.voice.sentences import Sentence, SentenceSplitter
from protocol import Blob, Content, ModelText, Outbound, Part, ServerContent, ServerMessage, Transcription

Send = Callable[[ServerMessage], Awaitable[None]]


class PlaybackClock:
    """Where the client's playback is, assuming it plays audio back to back from its arrival (an
    underrun, when audio comes slower than real time, delays the rest). Audio counts from when the
    session's writer put it on the socket, not from when it was queued."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._end = 0.0
        self.sent_s = 0.0

    def add(self, seconds: float) -> None:
        self._end = max(self._end, self._now()) + seconds
        self.sent_s += seconds

    def remaining_s(self) -> float:
        return max(0.0, self._end - self._now())

    def heard_s(self) -> float:
        return self.sent_s - self.remaining_s()


@dataclass(frozen=True)
class _Spoken:
    """One sentence's place in the audio timeline and in the model's text."""

    audio_start_s: float
    audio_end_s: float
    raw_start: int
    raw_end: int


class SpeechTurn:
    """Created per spoken turn; `emit` is what the turn engine sends through while it runs."""

    def __init__(
        self, tts: Synthesizer, voice: Voice, send: Send, transcribe: bool, clock: PlaybackClock | None = None
    ) -> None:
        self._tts = tts
        self._voice = voice
        self._send = send
        self._transcribe = transcribe
        self._items: asyncio.Queue[str | ServerMessage | None] = asyncio.Queue()
        self._splitter = SentenceSplitter()
        self._clock = clock or PlaybackClock()
        self._queued_s = 0.0  # audio sent to the writer; the clock counts what it has written
        self._unwritten: dict[int, float] = {}  # id of a queued audio message -> its seconds
        self._all_written = asyncio.Event()
        self._all_written.set()
        self._spoken: list[_Spoken] = []
        self._raw = 0  # characters of model text spoken or skipped so far
        self.first_audio_at: float | None = None

    async def emit(self, message: Outbound) -> None:
        if isinstance(message, ModelText):
            self._items.put_nowait(message.text)
            return
        content = message.server_content
        parts = content.model_turn.parts if content and content.model_turn else []
        if len(parts) == 1 and parts[0].text is not None and not parts[0].thought:
            self._items.put_nowait(parts[0].text)
        else:
            self._items.put_nowait(message)

    async def run(self, turn: Awaitable[object]) -> None:
        """Runs the model turn while speaking it; returns once turnComplete has been sent. A failure of
        either (a BackendError from the synthesis upstream, say) is raised as itself."""
        try:
            async with asyncio.TaskGroup() as tg:
                speaker = tg.create_task(self._speak())
                await turn
                self._items.put_nowait(None)
                await speaker
        except ExceptionGroup as group:
            raise group.exceptions[0] from None

    def written(self, message: Outbound) -> None:
        """The session's writer sent `message`: if it is this turn's audio, the client starts playing it."""
        seconds = self._unwritten.pop(id(message), None)
        if seconds is not None:
            self._clock.add(seconds)
            if not self._unwritten:
                self._all_written.set()

    def heard_chars(self) -> int:
        """How much of the model's text the user has heard by now, by the playback clock."""
        heard = self._clock.heard_s()
        chars = 0
        for s in self._spoken:
            if heard >= s.audio_end_s:
                chars = s.raw_end
            elif heard > s.audio_start_s:
                fraction = (heard - s.audio_start_s) / (s.audio_end_s - s.audio_start_s)
                chars = s.raw_start + int(fraction * (s.raw_end - s.raw_start))
        return chars

    async def _speak(self) -> None:
        while (item := await self._items.get()) is not None:
            if isinstance(item, str):
                for sentence in self._splitter.push(item):
                    await self._say(sentence)
                continue
            for sentence in self._splitter.flush():
                await self._say(sentence)
            if item.server_content is not None and item.server_content.turn_complete:
                await self._all_written.wait()
                await asyncio.sleep(self._clock.remaining_s())  # the client is still playing
            await self._send(item)
        for sentence in self._splitter.flush():
            await self._say(sentence)

    async def _say(self, sentence: Sentence) -> None:
        start_s, raw_start = self._queued_s, self._raw
        self._raw += sentence.raw_chars
        if not sentence.text:
            return
        if self._transcribe:
            text = sentence.text if not self._spoken else " " + sentence.text
            said = ServerContent(output_transcription=Transcription(text=text))
            await self._send(ServerMessage(server_content=said))
        async with contextlib.aclosing(self._tts.synthesize(sentence.text, self._voice)) as audio:
            async for pcm in audio:
                if self.first_audio_at is None:
                    self.first_audio_at = time.monotonic()
                part = Part(inline_data=Blob(mime_type=OUTPUT_MIME, data=pcm))
                message = ServerMessage(
                    server_content=ServerContent(model_turn=Content(role="model", parts=[part]))
                )
                seconds = len(pcm) / 2 / OUTPUT_RATE
                self._unwritten[id(message)] = seconds
                self._all_written.clear()
                self._queued_s += seconds
                await self._send(message)
        self._spoken.append(_Spoken(start_s, self._queued_s, raw_start, self._raw))


def truncate_unheard(history: list[Content], start: int, heard_chars: int) -> None:
    """Cuts the model text of the turn that began at `history[start]` to its first `heard_chars`
    characters (at a word boundary). Code, results and calls stay: they were sent and are facts."""
    seen = 0
    for content in history[start:]:
        if content.role != "model":
            continue
        kept: list[Part] = []
        for part in content.parts:
            if part.text is None or part.thought:
                kept.append(part)
                continue
            keep = max(0, heard_chars - seen)
            seen += len(part.text)
            if keep >= len(part.text):
                kept.append(part)
            elif keep > 0:
                cut = part.text[:keep]
                cut = cut[: cut.rfind(" ")] if not part.text[keep].isspace() and " " in cut else cut
                if cut.strip():
                    kept.append(Part(text=cut.rstrip()))
        content.parts = kept
    history[start:] = [c for c in history[start:] if c.parts]
