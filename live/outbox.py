"""A session's single writer: messages leave in the order they were queued, and nothing else sends.

When the socket or the event loop falls behind the model, the text deltas of a turn pile up in the
outbox; the writer then sends every delta it finds queued in a row as one message (fewer frames, system
calls and JSON dumps under load), and everything it finds queued in one write (`Transport.send_all`).
It never waits for more: when idle each message leaves at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from live.transport import Transport, TransportClosed
from live.turns import MAX_TEXT_CHARS
from live.waitlist import Waitlist
from protocol import MessageTooLarge, ModelText, Outbound, ServerMessage, dump_server_message

INTERNAL_ERROR = "Internal error encountered."


@dataclass(frozen=True)
class Close:
    """Queued last: close the socket with this code and reason once everything before it is sent."""

    code: int
    reason: str


Queued = Outbound | Close


class Outbox(Waitlist[Queued]):
    """What the writer has yet to send."""

    __slots__ = ()

    def drop_unsent_speech(self) -> int:
        """Drops the queued audio of the model's turn (and its output transcription): on barge-in the
        user must not hear, after `interrupted`, what was not yet sent. Returns how many were dropped."""
        kept = [item for item in self._items if not _is_speech(item)]
        dropped, self._items = len(self._items) - len(kept), kept
        return dropped

    async def take(self) -> list[Queued]:
        """Everything queued so far, in order, once there is something."""
        await self.ready()
        items, self._items = self._items, []
        return items


async def write(
    outbox: Outbox,
    transport: Transport,
    log: logging.LoggerAdapter[logging.Logger],
    sent: Callable[[Outbound], None],
) -> None:
    """Sends what is queued until a `Close` (or the peer leaving); returns when nothing more can go out."""
    while await _write_batch(await outbox.take(), transport, log, sent):
        pass


async def _write_batch(
    items: list[Queued],
    transport: Transport,
    log: logging.LoggerAdapter[logging.Logger],
    sent: Callable[[Outbound], None],
) -> bool:
    """Sends what was queued together in one write (`Transport.send_all`); False once nothing more can go
    out. Its own function, so that nothing of a batch stays referenced while the writer waits."""
    frames: list[bytes] = []
    messages: list[Outbound] = []
    close: Close | None = None
    for item in _merged(items):
        if isinstance(item, Close):
            close = item
            break
        try:
            frames.append(dump_server_message(item))
        except MessageTooLarge as exc:  # a bug of ours, never the client's: say so and stop
            log.error("server message too large: %s", exc)
            close = Close(1011, INTERNAL_ERROR)
            break
        messages.append(item)
    if frames:
        try:
            await transport.send_all(frames)
        except TransportClosed:
            return False
        for message in messages:
            sent(message)
    if close is not None:
        await transport.close(close.code, close.reason)
        return False
    return True


def _merged(items: list[Queued]) -> Iterator[Queued]:
    """The items with each run of text deltas joined into one (split no finer than the engine's pieces,
    so each stays under the message limit)."""
    texts: list[str] = []
    size = 0
    for item in items:
        if isinstance(item, ModelText) and size + len(item.text) <= MAX_TEXT_CHARS:
            texts.append(item.text)
            size += len(item.text)
            continue
        if texts:
            yield ModelText(texts[0] if len(texts) == 1 else "".join(texts))
        texts, size = [], 0
        if isinstance(item, ModelText):
            texts, size = [item.text], len(item.text)
        else:
            yield item
    if texts:
        yield ModelText(texts[0] if len(texts) == 1 else "".join(texts))


def _is_speech(item: Queued) -> bool:
    """A message that carries only model audio, or only the transcription of model audio."""
    if not isinstance(item, ServerMessage) or item.model_fields_set != {"server_content"}:
        return False
    content = item.server_content
    if content is None or not content.model_fields_set <= {"model_turn", "output_transcription"}:
        return False
    parts = content.model_turn.parts if content.model_turn is not None else []
    blobs = [p.inline_data for p in parts]
    return all(b is not None and (b.mime_type or "").startswith("audio/") for b in blobs)
