"""A session's single writer: messages leave in the order they were queued, and nothing else sends.

When the socket or the event loop falls behind the model, the text deltas of a turn pile up in the
queue; the writer then sends every delta it finds queued in a row as one message (fewer frames, system
calls and JSON dumps under load). It never waits for more: when idle each delta leaves at once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from live.transport import Transport, TransportClosed
from live.turns import MAX_TEXT_CHARS
from protocol import MessageTooLarge, ModelText, Outbound, dump_server_message

INTERNAL_ERROR = "Internal error encountered."


@dataclass(frozen=True)
class Close:
    """Queued last: close the socket with this code and reason once everything before it is sent."""

    code: int
    reason: str


Queued = Outbound | Close


async def write(
    queue: asyncio.Queue[Queued], transport: Transport, log: logging.LoggerAdapter[logging.Logger]
) -> None:
    """Sends what is queued until a `Close` (or the peer leaving); returns when nothing more can go out."""
    held: Queued | None = None  # taken from the queue while merging, sent next
    while True:
        item = held if held is not None else await queue.get()
        held = None
        if isinstance(item, Close):
            await transport.close(item.code, item.reason)
            return
        if isinstance(item, ModelText) and not queue.empty():
            item, held = _merge_queued(item, queue)
        try:
            data = dump_server_message(item)
        except MessageTooLarge as exc:  # a bug of ours, never the client's: say so and stop
            log.error("server message too large: %s", exc)
            await transport.close(1011, INTERNAL_ERROR)
            return
        try:
            await transport.send(data)
        except TransportClosed:
            return


def _merge_queued(first: ModelText, queue: asyncio.Queue[Queued]) -> tuple[ModelText, Queued | None]:
    """`first` and the deltas queued right after it, as one delta (split no finer than the engine's
    pieces, so still under the message limit); and the item that ended the run, if one was taken."""
    texts = [first.text]
    size = len(first.text)
    while not queue.empty():
        item = queue.get_nowait()
        if not isinstance(item, ModelText) or size + len(item.text) > MAX_TEXT_CHARS:
            return ModelText("".join(texts)), item
        texts.append(item.text)
        size += len(item.text)
    return (ModelText("".join(texts)) if len(texts) > 1 else first), None
