"""Jobs waiting for a runner, served round-robin across sessions so one busy session cannot starve others."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(eq=False)
class Ticket(Generic[T]):
    session: str
    granted: asyncio.Future[T] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class FairQueue(Generic[T]):
    def __init__(self) -> None:
        self._sessions: dict[str, deque[Ticket[T]]] = {}  # insertion order is the round-robin order

    def __len__(self) -> int:
        return sum(len(q) for q in self._sessions.values())

    def push(self, session: str) -> Ticket[T]:
        ticket: Ticket[T] = Ticket(session)
        self._sessions.setdefault(session, deque()).append(ticket)
        return ticket

    def remove(self, ticket: Ticket[T]) -> None:
        queue = self._sessions.get(ticket.session)
        if queue is not None and ticket in queue:
            queue.remove(ticket)
            if not queue:
                del self._sessions[ticket.session]

    def pop(self, running: Mapping[str, int], per_session_limit: int) -> Ticket[T] | None:
        """The next session's oldest ticket, skipping sessions at their limit; that session goes last."""
        for session, queue in self._sessions.items():
            if running.get(session, 0) < per_session_limit:
                ticket = queue.popleft()
                del self._sessions[session]
                if queue:
                    self._sessions[session] = queue
                return ticket
        return None
