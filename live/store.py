"""Where resumable sessions and ephemeral tokens are kept: in memory, or in SQLite shared by processes.

Both kinds of record are keyed by a SHA-256 digest of the secret (handle or token), so the store never
holds anything a client could present. Every handle a session announced resumes its newest snapshot
until the session expires. A resumed session takes its record over by bumping a generation number; a
connection that has been superseded can no longer save (compare-and-swap).

SQLite runs in WAL mode with a busy timeout, every operation a short transaction, so several server
processes on one machine (`--workers N`) share one file; calls run in a worker thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, TypeVar

from live.shared_sqlite import connect_shared

T = TypeVar("T")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class SavedSession:
    lineage: str  # the session's own id, stable across resumptions
    generation: int  # bumped by each resumption; only the newest connection may save
    snapshot: str  # JSON (resumption.Snapshot)


@dataclass(frozen=True)
class TokenRecord:
    digest: str
    owner: str  # digest of the API key that minted it: sessions it opens belong to that key
    uses: int  # 0 = unlimited
    used: int
    expire_time: float  # epoch seconds
    new_session_expire_time: float
    constraints: str | None  # bidiGenerateContentSetup as JSON
    field_mask: str | None


# Google's close reasons (live-behaviour.md F5.5), all with 1011.
TOKEN_EXPIRED = "Token has expired"
TOKEN_USED_UP = "Token has been used too many times"
TOKEN_NEW_SESSION_EXPIRED = "new_session_expire_time deadline exceeded"


def admit_token(token: TokenRecord, now: float, new_session: bool) -> TokenRecord | str:
    """The token after one more connection, or why it is refused. A resumption does not use it up."""
    if now >= token.expire_time:
        return TOKEN_EXPIRED
    if now >= token.new_session_expire_time:
        return TOKEN_NEW_SESSION_EXPIRED
    if not new_session:
        return token
    if token.uses and token.used >= token.uses:
        return TOKEN_USED_UP
    return replace(token, used=token.used + 1)


class SessionStore(Protocol):
    async def save_session(
        self, saved: SavedSession, owner: str, handle: str, expires_at: float, now: float
    ) -> bool:
        """Stores the newest snapshot under a new handle digest; False once another connection resumed it."""
        ...

    async def claim_session(self, handle: str, owner: str, now: float) -> SavedSession | None:
        """Takes over the session a handle digest names, for `owner`; None if unknown, expired or foreign."""
        ...

    async def expire_session(self, saved: SavedSession, expires_at: float) -> None:
        """Sets when the session's handle stops working (the connection ended)."""
        ...

    async def add_token(self, token: TokenRecord) -> None: ...

    async def get_token(self, token_digest: str) -> TokenRecord | None: ...

    async def use_token(self, token_digest: str, now: float, new_session: bool) -> TokenRecord | str | None:
        """Atomically applies `admit_token`; None for an unknown token."""
        ...

    async def close(self) -> None: ...


@dataclass
class _Row:
    saved: SavedSession
    owner: str
    expires_at: float
    handles: set[str]


class MemoryStore:
    """One process, lost on restart: the default."""

    def __init__(self) -> None:
        self._sessions: dict[str, _Row] = {}  # by lineage
        self._handles: dict[str, str] = {}  # handle digest -> lineage
        self._tokens: dict[str, TokenRecord] = {}

    async def save_session(
        self, saved: SavedSession, owner: str, handle: str, expires_at: float, now: float
    ) -> bool:
        self._purge(now)
        row = self._sessions.get(saved.lineage)
        if row is None:
            row = self._sessions[saved.lineage] = _Row(saved, owner, expires_at, set())
        elif row.saved.generation != saved.generation:
            return False
        row.saved, row.expires_at = saved, expires_at
        row.handles.add(handle)
        self._handles[handle] = saved.lineage
        return True

    async def claim_session(self, handle: str, owner: str, now: float) -> SavedSession | None:
        row = self._sessions.get(self._handles.get(handle, ""))
        if row is None or row.owner != owner or row.expires_at <= now:
            return None
        row.saved = replace(row.saved, generation=row.saved.generation + 1)
        return row.saved

    async def expire_session(self, saved: SavedSession, expires_at: float) -> None:
        row = self._sessions.get(saved.lineage)
        if row is not None and row.saved.generation == saved.generation:
            row.expires_at = expires_at

    async def add_token(self, token: TokenRecord) -> None:
        self._tokens[token.digest] = token

    async def get_token(self, token_digest: str) -> TokenRecord | None:
        return self._tokens.get(token_digest)

    async def use_token(self, token_digest: str, now: float, new_session: bool) -> TokenRecord | str | None:
        token = self._tokens.get(token_digest)
        if token is None:
            return None
        outcome = admit_token(token, now, new_session)
        if isinstance(outcome, TokenRecord):
            self._tokens[token_digest] = outcome
        return outcome

    async def close(self) -> None:
        return None

    def _purge(self, now: float) -> None:
        for lineage in [k for k, r in self._sessions.items() if r.expires_at <= now]:
            for handle in self._sessions.pop(lineage).handles:
                self._handles.pop(handle, None)
        for key in [k for k, t in self._tokens.items() if t.expire_time <= now]:
            del self._tokens[key]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    lineage TEXT PRIMARY KEY, generation INTEGER NOT NULL, owner TEXT NOT NULL,
    snapshot TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at);
CREATE TABLE IF NOT EXISTS handles (
    digest TEXT PRIMARY KEY, lineage TEXT NOT NULL REFERENCES sessions ON DELETE CASCADE);
CREATE INDEX IF NOT EXISTS handles_lineage ON handles (lineage);
CREATE TABLE IF NOT EXISTS tokens (
    digest TEXT PRIMARY KEY, owner TEXT NOT NULL, uses INTEGER NOT NULL, used INTEGER NOT NULL,
    expire_time REAL NOT NULL, new_session_expire_time REAL NOT NULL, constraints TEXT, field_mask TEXT);
"""


class SqliteStore:
    """A file several processes share and a restarted server reads again."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = connect_shared(path, check_same_thread=False)
        self._lock = threading.Lock()  # one connection, used by one worker thread at a time
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    result = work(self._db)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
                return result

        return await asyncio.to_thread(locked)

    async def save_session(
        self, saved: SavedSession, owner: str, handle: str, expires_at: float, now: float
    ) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            db.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
            db.execute("DELETE FROM tokens WHERE expire_time <= ?", (now,))
            row = db.execute("SELECT generation FROM sessions WHERE lineage = ?", (saved.lineage,)).fetchone()
            if row is not None and row[0] != saved.generation:
                return False
            db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?) ON CONFLICT (lineage) DO UPDATE "
                "SET snapshot = excluded.snapshot, expires_at = excluded.expires_at",
                (saved.lineage, saved.generation, owner, saved.snapshot, expires_at),
            )
            db.execute("INSERT INTO handles VALUES (?, ?)", (handle, saved.lineage))
            return True

        return await self._run(work)

    async def claim_session(self, handle: str, owner: str, now: float) -> SavedSession | None:
        def work(db: sqlite3.Connection) -> SavedSession | None:
            row = db.execute(
                "UPDATE sessions SET generation = generation + 1 "
                "WHERE lineage = (SELECT lineage FROM handles WHERE digest = ?) AND owner = ? "
                "AND expires_at > ? RETURNING lineage, generation, snapshot",
                (handle, owner, now),
            ).fetchone()
            return None if row is None else SavedSession(row[0], row[1], row[2])

        return await self._run(work)

    async def expire_session(self, saved: SavedSession, expires_at: float) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE sessions SET expires_at = ? WHERE lineage = ? AND generation = ?",
                (expires_at, saved.lineage, saved.generation),
            )

        await self._run(work)

    async def add_token(self, token: TokenRecord) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _token_row(token))

        await self._run(work)

    async def get_token(self, token_digest: str) -> TokenRecord | None:
        return await self._run(lambda db: _read_token(db, token_digest))

    async def use_token(self, token_digest: str, now: float, new_session: bool) -> TokenRecord | str | None:
        def work(db: sqlite3.Connection) -> TokenRecord | str | None:
            token = _read_token(db, token_digest)
            if token is None:
                return None
            outcome = admit_token(token, now, new_session)
            if isinstance(outcome, TokenRecord):
                db.execute("UPDATE tokens SET used = ? WHERE digest = ?", (outcome.used, token_digest))
            return outcome

        return await self._run(work)

    async def close(self) -> None:
        def work() -> None:
            with self._lock:
                self._db.close()

        await asyncio.to_thread(work)


def _token_row(t: TokenRecord) -> tuple[object, ...]:
    return (t.digest, t.owner, t.uses, t.used, t.expire_time, t.new_session_expire_time, t.constraints,
            t.field_mask)  # fmt: skip


def _read_token(db: sqlite3.Connection, token_digest: str) -> TokenRecord | None:
    row = db.execute("SELECT * FROM tokens WHERE digest = ?", (token_digest,)).fetchone()
    return None if row is None else TokenRecord(*row)


def open_store(spec: str) -> SessionStore:
    """`memory` or `sqlite:PATH` (the `--resumption-store` flag)."""
    if spec == "memory":
        return MemoryStore()
    if spec.startswith("sqlite:") and spec[len("sqlite:") :]:
        return SqliteStore(Path(spec[len("sqlite:") :]).expanduser())
    raise ValueError(f"resumption store must be 'memory' or 'sqlite:PATH', got {spec!r}")
