"""Session resumption: a snapshot at each turn boundary, announced under a fresh opaque handle.

A handle is 32 random bytes (URL-safe base64); the store keeps only its digest, bound to the API key
that created the session (for an ephemeral token, the key that minted it). Every handle of a session
resumes its newest snapshot until `ttl` after the last connection ends. The snapshot is persisted first
and announced after, and only while nothing (turn, code job, function call) is in flight.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, Field

from live.backends.registry import model_id
from live.store import SavedSession, SessionStore, digest
from live.turns import Conversation
from protocol import (
    Content,
    ProtocolError,
    ServerMessage,
    SessionResumptionUpdate,
    Setup,
)

log = logging.getLogger("openlive.resumption")

SESSION_EXPIRED = "BidiGenerateContent session expired"  # Google's reason (live-behaviour.md F3.4)
SUPERSEDED = "Session resumed on another connection."


class Snapshot(BaseModel):
    """What a resumed session continues from; versioned because SQLite keeps it across upgrades."""

    version: Literal[1] = 1
    started_at: float  # when the session first started, for the session length limit
    setup: dict[str, Any]  # the effective setup (camelCase) as of the snapshot, without the handle
    history: list[Content] = Field(default_factory=list)


def setup_dict(setup: Setup) -> dict[str, Any]:
    data = setup.model_dump(mode="json", by_alias=True, exclude_none=True)
    data.get("sessionResumption", {}).pop("handle", None)
    return data


def current_setup(setup: dict[str, Any], conv: Conversation) -> dict[str, Any]:
    """The setup with the instruction and tools a contextUpdate may have changed since."""
    current = dict(setup)
    current.pop("systemInstruction", None)
    if conv.system_instruction is not None:
        current["systemInstruction"] = {"parts": [{"text": conv.system_instruction}], "role": "user"}
    tools: list[dict[str, Any]] = []
    if conv.functions:
        declarations = [f.model_dump(mode="json", by_alias=True, exclude_none=True) for f in conv.functions]
        tools.append({"functionDeclarations": declarations})
    if conv.code_execution:
        tools.append({"codeExecution": {}})
    current["tools"] = tools
    return current


def resumed_setup(snapshot: Snapshot, setup: Setup) -> Setup:
    """The stored setup with every field the client sent again replacing it; the model cannot change."""
    if model_id(setup.model) != model_id(snapshot.setup["model"]):
        raise ProtocolError(1007, "Invalid request: the model cannot change when a session is resumed.")
    return Setup.model_validate(snapshot.setup | setup_dict(setup))


Emit = Callable[[ServerMessage], Awaitable[None]]


class Resumption:
    """One connection's side of a resumable session: saves snapshots and announces handles."""

    def __init__(
        self,
        store: SessionStore,
        owner: str,
        saved: SavedSession,
        snapshot: Snapshot,
        ttl_s: float,
        connection_s: float,
    ) -> None:
        self._store = store
        self._owner = owner
        self._saved = saved
        self._setup = snapshot.setup
        self.started_at = snapshot.started_at
        self._ttl_s = ttl_s
        self._connection_s = connection_s
        self._pending: asyncio.Queue[str | None] = asyncio.Queue()  # snapshot JSON; None: not resumable

    @classmethod
    async def open(
        cls, store: SessionStore, owner: str, setup: Setup, ttl_s: float, connection_s: float
    ) -> tuple[Resumption, Setup, Snapshot | None]:
        """Claims the session a handle names (1008 if there is none for this key), or starts a new one."""
        handle = setup.session_resumption.handle if setup.session_resumption else None
        if handle:
            saved = await store.claim_session(digest(handle), owner, time.time())
            if saved is None:
                raise ProtocolError(1008, SESSION_EXPIRED)
            snapshot = Snapshot.model_validate_json(saved.snapshot)
            setup = resumed_setup(snapshot, setup)
            snapshot = snapshot.model_copy(update={"setup": setup_dict(setup)})
        else:
            saved = SavedSession(lineage=secrets.token_hex(16), generation=0, snapshot="")
            snapshot = Snapshot(started_at=time.time(), setup=setup_dict(setup))
        return cls(store, owner, saved, snapshot, ttl_s, connection_s), setup, snapshot if handle else None

    def checkpoint(self, conv: Conversation, resumable: bool) -> None:
        """Called at a turn boundary, synchronously, so the snapshot is exactly that boundary."""
        snapshot = Snapshot(started_at=self.started_at, setup=current_setup(self._setup, conv),
                            history=conv.history)  # fmt: skip
        self._pending.put_nowait(snapshot.model_dump_json(by_alias=True) if resumable else None)

    async def run(self, emit: Emit, busy: Callable[[], bool], superseded: Callable[[], None]) -> None:
        """Persists each checkpoint, then announces its handle unless the session is busy again by then."""
        while True:
            snapshot = await self._pending.get()
            try:
                if not await self._save(snapshot, emit, busy):
                    superseded()
                    return
            finally:
                self._pending.task_done()

    async def flush(self) -> None:
        """Waits until every checkpoint so far is saved and announced."""
        await self._pending.join()

    async def _save(self, snapshot: str | None, emit: Emit, busy: Callable[[], bool]) -> bool:
        if snapshot is None:
            await emit(_update(None))
            return True
        handle = secrets.token_urlsafe(32)
        self._saved = SavedSession(self._saved.lineage, self._saved.generation, snapshot)
        now = time.time()
        # While connected, a crash must not leave the handle valid forever: it lapses `ttl` after
        # the longest this connection can last, and exactly `ttl` after a clean end (`end`).
        expires = now + self._connection_s + self._ttl_s
        if not await self._store.save_session(self._saved, self._owner, digest(handle), expires, now):
            log.info("session %s resumed elsewhere; closing this connection", self._saved.lineage)
            return False
        await emit(_update(None if busy() else handle))
        return True

    async def end(self) -> None:
        if self._saved.snapshot:
            await self._store.expire_session(self._saved, time.time() + self._ttl_s)


def _update(handle: str | None) -> ServerMessage:
    update = SessionResumptionUpdate(new_handle=handle or "", resumable=handle is not None)
    return ServerMessage(session_resumption_update=update)
