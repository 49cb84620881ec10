"""Client function calls in flight, and what a late result asks for.

A BLOCKING call (the default) holds its turn until the client answers; an interrupted turn announces its
unanswered BLOCKING calls in `toolCallCancellation`. A NON_BLOCKING call is sent and left open: the turn
goes on, and its results arrive later, each handled by its `scheduling` (see `Late`). A call stays open
while its results say `willContinue: true`, so one call can stream several results.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from protocol import (
    FunctionCall,
    FunctionResponse,
    ProtocolError,
    ServerMessage,
    ToolCall,
    ToolCallCancellation,
)

log = logging.getLogger("openlive.calls")

Send = Callable[[ServerMessage], None]
Emit = Callable[[ServerMessage], Awaitable[None]]


class Scheduling(StrEnum):
    """What a NON_BLOCKING result does (ignored for BLOCKING calls, as on Google)."""

    INTERRUPT = "INTERRUPT"  # interrupt the current turn, then answer
    WHEN_IDLE = "WHEN_IDLE"  # answer once the current turn is over (the default)
    SILENT = "SILENT"  # add to the history only; no model output

    @classmethod
    def of(cls, response: FunctionResponse) -> Scheduling:
        value = response.scheduling
        if value in (None, "SCHEDULING_UNSPECIFIED"):
            return cls.WHEN_IDLE
        if value not in cls.__members__:
            raise ProtocolError(1007, f"Invalid toolResponse: unknown scheduling {value!r}.")
        return cls(value)


@dataclass(frozen=True)
class Late:
    """A result for an open NON_BLOCKING call: the session adds it to history as `scheduling` says."""

    response: FunctionResponse
    scheduling: Scheduling


class CallScheduler:
    """Owns every call id the client may still answer; the session routes each `toolResponse` here."""

    def __init__(self, send: Send, emit: Emit, non_blocking: Callable[[], set[str]]) -> None:
        self._send = send  # at once (toolCallCancellation)
        self._emit = emit  # as turn output: in a spoken turn, after the audio of the text before it
        self._non_blocking = non_blocking  # names declared NON_BLOCKING now (tools can change mid-session)
        self._waiting: dict[str, asyncio.Future[FunctionResponse]] = {}
        self._open: dict[str, str] = {}  # NON_BLOCKING call id -> function name

    @property
    def open(self) -> bool:
        """Some call, BLOCKING or NON_BLOCKING, may still get a result."""
        return bool(self._waiting or self._open)

    @property
    def waiting(self) -> bool:
        """A turn is held by unanswered BLOCKING calls (new input then queues behind it)."""
        return bool(self._waiting)

    async def call(self, calls: list[FunctionCall]) -> list[FunctionResponse]:
        """Sends one `toolCall`; returns the BLOCKING calls' responses (in order) once all have come.

        NON_BLOCKING calls are left open and get no response here. Cancelling the wait (an interruption)
        sends `toolCallCancellation` with the BLOCKING ids still unanswered.
        """
        non_blocking = self._non_blocking()
        loop = asyncio.get_running_loop()
        futures: dict[str, asyncio.Future[FunctionResponse]] = {}
        try:
            for c in calls:
                assert c.id, "calls carry ids"
                if c.name in non_blocking:
                    self._open[c.id] = c.name
                else:
                    futures[c.id] = self._waiting[c.id] = loop.create_future()
            await self._emit(ServerMessage(tool_call=ToolCall(function_calls=calls)))
            return list(await asyncio.gather(*futures.values()))
        finally:
            abandoned = [i for i in futures if self._waiting.pop(i, None) is not None]
            if abandoned:
                self._send(ServerMessage(tool_call_cancellation=ToolCallCancellation(ids=abandoned)))

    def answer(self, response: FunctionResponse) -> Late | None:
        """Routes one result: a BLOCKING call's wakes its turn (None); a NON_BLOCKING call's is returned."""
        call_id = response.id or ""
        future = self._waiting.pop(call_id, None)
        if future is not None:
            if not future.done():
                future.set_result(response)
            return None
        if call_id not in self._open:
            log.info("tool response for an unknown, finished or cancelled call id=%r", call_id)
            return None
        if not response.will_continue:
            del self._open[call_id]
        return Late(response, Scheduling.of(response))
