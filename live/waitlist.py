"""A list with at most one waiting reader: what a connection's or a session's single reader needs of a
queue. Every idle session holds two (its ASGI input, its outbox), so not `asyncio.Queue`: four deques
and an event, about 3 KB each (bench/bench_idle.py)."""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class Waitlist(Generic[T]):
    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[T] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    def waiter(self) -> asyncio.Future[None]:
        """Done once something is queued; the one reader awaits it while the list is empty. A future, not
        a coroutine around one: a waiting session holds one object less for every collection to walk."""
        self._waiter = asyncio.get_running_loop().create_future()
        return self._waiter
