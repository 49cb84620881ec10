"""Jobs waiting for a runner, served round-robin across sessions so one busy session cannot starve others.

The next job comes from the eligible session served least recently (never-served sessions first, in order
of arrival), so a session that submits many jobs at once gets one turn per round like everyone else.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(eq=False)
class Ticket(Generic[T]):
    session: str
    seq: int
    granted: asyncio.Future[T] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class FairQueue(Generic[T]):
    def __init__(self) -> None:
        self._sessions: dict[str, deque[Ticket[T]]] = {}
        self._served_at: dict[str, int] = {}  # session -> when it was last given a runner
        self._clock = itertools.count()

    def __len__(self) -> int:
        return sum(len(q) for q in self._sessions.values())

    def push(self, session: str) -> Ticket[T]:
        ticket: Ticket[T] = Ticket(session, next(self._clock))
        self._sessions.setdefault(session, deque()).append(ticket)
        return ticket

    def remove(self, ticket: Ticket[T]) -> None:
        queue = self._sessions.get(ticket.session)
        if queue is not None and ticket in queue:
            queue.remove(ticket)
            if not queue:
                del self._sessions[ticket.session]

    def pop(self, running: Mapping[str, int], per_session_limit: int) -> Ticket[T] | None:
        """The oldest ticket of the eligible session served least recently, or None."""
        eligible = [s for s in self._sessions if running.get(s, 0) < per_session_limit]
        if not eligible:
            return None
        session = min(eligible, key=lambda s: (self._served_at.get(s, -1), self._sessions[s][0].seq))
        queue = self._sessions[session]
        ticket = queue.popleft()
        if not queue:
            del self._sessions[session]
        self._served_at[session] = next(self._clock)
        if len(self._served_at) > 4 * (len(self._sessions) + len(running)) + 64:  # forget idle sessions
            keep = self._sessions.keys() | running.keys()
            self._served_at = {s: t for s, t in self._served_at.items() if s in keep}
        return ticket
