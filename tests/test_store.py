"""The session store, memory and SQLite: handle expiry, key binding, takeover, token uses; and two SQLite
stores on one file (as two server processes have) seeing each other's records and counting uses once;
processes started together opening one fresh file."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from live.files import FileLimits, FileStore
from live.store import (
    TOKEN_EXPIRED,
    TOKEN_NEW_SESSION_EXPIRED,
    TOKEN_USED_UP,
    MemoryStore,
    SavedSession,
    SessionStore,
    SqliteStore,
    TokenRecord,
)

NOW = 1_000_000.0


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionStore]:
    made: SessionStore = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "s.db")
    yield made
    await made.close()


async def test_handles_resume_the_newest_snapshot_until_they_expire(store: SessionStore) -> None:
    saved = SavedSession("lineage", 0, '{"n": 1}')
    assert await store.save_session(saved, "key-a", "h1", expires_at=NOW + 10, now=NOW)
    assert await store.save_session(SavedSession("lineage", 0, '{"n": 2}'), "key-a", "h2", NOW + 10, NOW)
    claimed = await store.claim_session("h1", "key-a", NOW + 1)
    assert claimed == SavedSession("lineage", 1, '{"n": 2}')  # an older handle, the newest state
    assert await store.claim_session("h2", "key-b", NOW + 1) is None  # bound to the key
    assert await store.claim_session("nope", "key-a", NOW + 1) is None
    await store.expire_session(claimed, NOW + 5)
    assert await store.claim_session("h2", "key-a", NOW + 5) is None  # expired


async def test_a_superseded_connection_cannot_save(store: SessionStore) -> None:
    first = SavedSession("lineage", 0, "{}")
    assert await store.save_session(first, "k", "h1", NOW + 10, NOW)
    taken = await store.claim_session("h1", "k", NOW)
    assert taken is not None and taken.generation == 1
    assert not await store.save_session(first, "k", "h2", NOW + 10, NOW)  # the old connection
    assert await store.save_session(taken, "k", "h3", NOW + 10, NOW)


def token(uses: int) -> TokenRecord:
    return TokenRecord("t", "owner", uses, 0, NOW + 100, NOW + 10, None, None)


async def test_token_uses_and_deadlines(store: SessionStore) -> None:
    await store.add_token(token(uses=2))
    for _ in range(2):
        assert isinstance(await store.use_token("t", NOW, new_session=True), TokenRecord)
    assert await store.use_token("t", NOW, new_session=True) == TOKEN_USED_UP
    assert isinstance(await store.use_token("t", NOW, new_session=False), TokenRecord)  # resumption
    assert await store.use_token("t", NOW + 10, new_session=False) == TOKEN_NEW_SESSION_EXPIRED
    assert await store.use_token("t", NOW + 100, new_session=True) == TOKEN_EXPIRED
    assert await store.use_token("other", NOW, new_session=True) is None


async def test_sqlite_is_shared_by_processes(tmp_path: Path) -> None:
    one, two = SqliteStore(tmp_path / "s.db"), SqliteStore(tmp_path / "s.db")
    try:
        await one.add_token(token(uses=5))
        outcomes = await asyncio.gather(*(s.use_token("t", NOW, True) for s in [one, two] * 4))
        assert sum(isinstance(o, TokenRecord) for o in outcomes) == 5  # never more uses than granted
        assert outcomes.count(TOKEN_USED_UP) == 3
        await one.save_session(SavedSession("l", 0, "{}"), "k", "h", NOW + 10, NOW)
        assert await two.claim_session("h", "k", NOW) == SavedSession("l", 1, "{}")
    finally:
        await one.close()
        await two.close()


ROUNDS = 25


def open_fresh_files_together(root: str, barrier: Barrier) -> None:
    """One `--workers` process at start-up, round after round: both stores on a file no one made yet."""
    for n in range(ROUNDS):
        barrier.wait(timeout=30)
        asyncio.run(SqliteStore(Path(root) / f"{n}.db").close())
        files = FileStore(FileLimits(directory=Path(root) / f"files-{n}"))
        files.open()
        files.close()


def test_processes_starting_together_open_one_fresh_file(tmp_path: Path) -> None:
    # Switching a new file to WAL fails at once ("database is locked") for all but one of the
    # processes that race for it; the server's `--workers 2` start-up failed this way.
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    procs = [
        context.Process(target=open_fresh_files_together, args=(str(tmp_path), barrier)) for _ in range(4)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
