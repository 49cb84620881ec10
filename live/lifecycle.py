"""A session's life beyond its turns: admission, limits with goAway, resumption, compression, drain.

The session calls six hooks (`admit`, `attach`, `run`, `before_turn`, `after_turn`, `end`) and knows
nothing else of this; everything here talks back through the session's `emit` and `close`.

- Connection limit (`--max-connection-s`): `goAway` with `timeLeft` (50 s, or a quarter of the limit if
  shorter) before the server closes with 1008 and Google's reason. Sessions without context window
  compression also end `--max-session-s` after they first started, across resumptions; a token's
  `expireTime` ends its sessions with 1011, as Google's do.
- Shutdown (SIGTERM/SIGINT): every session gets `goAway`, running turns get `--drain-grace-s` to finish,
  then each closes with 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from live import context
from live.backends.base import ModelBackend
from live.metrics import Metrics
from live.resumption import Resumption, Snapshot
from live.store import SessionStore
from live.tokens import Caller, KeyLimits, admit_token
from live.turns import Conversation
from protocol import ContextWindowCompression, GoAway, ProtocolError, ServerMessage, Setup, duration

log = logging.getLogger("openlive.lifecycle")

# Google's reason, cut by Google at 123 bytes (live-behaviour.md F3.2).
CONNECTION_LIMIT_REASON = (
    "Connection aborted because the client failed to close the connection after receiving a GoAway "
    "signal once the session durat"
)
SESSION_LIMIT_REASON = "Session duration limit reached; enable contextWindowCompression for longer sessions."
TOKEN_EXPIRED_REASON = "auth token has expired"  # Google's, mid-session (F5.5)
SHUTDOWN_REASON = "The server is shutting down."
MAX_GO_AWAY_LEAD_S = 50.0  # what Google sends


@dataclass(frozen=True)
class LifecycleConfig:
    max_connection_s: float = 600.0
    max_session_s: float = 900.0  # without compression; 0 = unlimited
    resumption_ttl_s: float = 7200.0
    drain_grace_s: float = 10.0


def go_away_lead(limit_s: float) -> float:
    """How long before a limit `goAway` comes: Google's 50 s, or a quarter of a shorter limit."""
    return min(MAX_GO_AWAY_LEAD_S, limit_s / 4)


def go_away(seconds: float) -> ServerMessage:
    return ServerMessage(go_away=GoAway(time_left=duration(round(max(seconds, 0.0), 3))))


Emit = Callable[[ServerMessage], Awaitable[None]]
Limit = tuple[float, int, str]  # when (time.monotonic()), the close code, its reason


class Lifecycle:
    """Server-wide: the store, the limits and every live session, for the shutdown drain."""

    def __init__(
        self, config: LifecycleConfig, store: SessionStore, limits: KeyLimits, metrics: Metrics
    ) -> None:
        self.config = config
        self.store = store
        self.limits = limits
        self.draining = False
        self._sessions: set[SessionLife] = set()
        self.go_aways = metrics.counter("go_aways", "goAway messages sent, by cause.", ["cause"])
        self.resumptions = metrics.counter(
            "session_resumptions", "Resumption attempts, by outcome.", ["outcome"]
        )
        self.compressions = metrics.counter(
            "context_compressions", "Times a session's oldest turns were dropped."
        )
        self.tokens_issued = metrics.counter("auth_tokens_issued", "Ephemeral tokens created.")

    def open(self, caller: Caller) -> SessionLife:
        return SessionLife(self, caller)

    async def drain(self) -> None:
        """goAway to every session; each closes 1001 once idle or after the grace period."""
        self.draining = True
        sessions = list(self._sessions)
        if sessions:
            log.info("draining %d sessions (grace %.1f s)", len(sessions), self.config.drain_grace_s)
            await asyncio.gather(*(s.drain(self.config.drain_grace_s) for s in sessions))


class SessionLife:
    """One session's hooks. Created per connection by `Lifecycle.open`."""

    def __init__(self, server: Lifecycle, caller: Caller) -> None:
        self._server = server
        self._config = server.config
        self.caller = caller
        self._started = time.monotonic()
        self._deadlines: list[Limit] = []
        self._resumption: Resumption | None = None
        self._restored: Snapshot | None = None
        self._compression: ContextWindowCompression | None = None  # all a turn needs of the setup
        self._timer: asyncio.TimerHandle | None = None
        self._ended: asyncio.Future[None] | None = None  # made by `drain`, the only one that waits

    async def admit(self, setup: Setup) -> Setup:
        """The setup the session runs with: a token's locked fields applied, a resumed session's
        configuration restored. Raises ProtocolError to refuse the connection."""
        setup, token_expiry = await admit_token(self.caller, setup, self._server.store)
        if setup.session_resumption is not None:
            try:
                self._resumption, setup, self._restored = await Resumption.open(
                    self._server.store, self.caller.owner, setup,
                    self._config.resumption_ttl_s, self._config.max_connection_s,
                )  # fmt: skip
            except ProtocolError:
                self._server.resumptions.labels(outcome="refused").inc()
                raise
            if self._restored is not None:
                self._server.resumptions.labels(outcome="resumed").inc()
        self._compression = setup.context_window_compression
        now = time.time()
        self._deadline(self._config.max_connection_s, 1008, CONNECTION_LIMIT_REASON)
        if setup.context_window_compression is None and self._config.max_session_s:
            started = self._resumption.started_at if self._resumption else now
            self._deadline(started + self._config.max_session_s - now, 1008, SESSION_LIMIT_REASON)
        if token_expiry is not None:
            self._deadline(token_expiry - now, 1011, TOKEN_EXPIRED_REASON)
        return setup

    def _deadline(self, after_s: float, code: int, reason: str) -> None:
        self._deadlines.append((self._started + after_s, code, reason))

    def attach(
        self,
        conv: Conversation,
        backend: ModelBackend,
        emit: Emit,
        close: Callable[[int, str], None],
        busy: Callable[[], bool],
    ) -> None:
        """Binds the session; a resumed session gets its history back here."""
        self._conv, self._backend = conv, backend
        self._emit, self._close, self._busy = emit, close, busy
        if self._restored is not None:
            conv.history = list(self._restored.history)
        self._server._sessions.add(self)

    @property
    def resumable(self) -> bool:
        return self._resumption is not None

    def arm(self, send: Callable[[ServerMessage], None]) -> None:
        """Arms the nearest limit: two timers (goAway, then the close), no task or closure while they wait
        (an idle session holds only the timer: bench/bench_idle.py)."""
        limit = min(self._deadlines)
        lead = min(go_away_lead(self._config.max_connection_s), max(limit[0] - time.monotonic(), 0.0))
        self._timer = _call_at(limit[0] - lead, self._warn, send, limit, lead)

    def _warn(self, send: Callable[[ServerMessage], None], limit: Limit, lead: float) -> None:
        at, code, reason = limit
        send(go_away(min(lead, at - time.monotonic())))  # a timer may fire a little early
        self._server.go_aways.labels(cause="limit").inc()
        self._timer = _call_at(at, self._expire, code, reason)

    def _expire(self, code: int, reason: str) -> None:
        log.info("session limit reached code=%d reason=%r", code, reason)
        self._close(code, reason)

    async def run(self) -> None:
        """The resumption writer (only a resumable session has it); cancelled when the session ends."""
        assert self._resumption is not None
        self._resumption.checkpoint(self._conv, resumable=True)
        superseded = lambda: self._close(1008, "Session resumed on another connection.")  # noqa: E731
        await self._resumption.run(self._emit, self._busy, superseded)

    async def before_turn(self) -> None:
        """Compression (or the window check) before a turn reads the history; 1007 when it cannot fit."""
        turns = len(self._conv.history)
        await context.fit(self._conv, self._backend, self._compression)
        if len(self._conv.history) < turns:
            self._server.compressions.inc()

    def after_turn(self, resumable: bool) -> None:
        """A turn ended: a resumable session saves a snapshot and announces a fresh handle."""
        if self._resumption is not None:
            self._resumption.checkpoint(self._conv, resumable)

    async def drain(self, grace_s: float) -> None:
        self._ended = asyncio.get_running_loop().create_future()
        if self not in self._server._sessions:  # it ended already
            self._ended.set_result(None)
        await self._emit(go_away(grace_s))
        self._server.go_aways.labels(cause="shutdown").inc()
        deadline = time.monotonic() + grace_s
        while self._busy() and time.monotonic() < deadline:  # noqa: ASYNC110 (shutdown only: polling the
            await asyncio.sleep(0.05)  # session's state is simpler than one more signal from every path)
        if self._resumption is not None:  # the handle of the finished turn still goes out
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._resumption.flush(), max(deadline - time.monotonic(), 1.0))
        self._close(1001, SHUTDOWN_REASON)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._ended), 5.0)

    async def end(self) -> None:
        self._server._sessions.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)
        if self._resumption is not None:
            try:
                await self._resumption.end()
            except Exception:
                log.exception("could not record the end of a resumable session")


def _call_at(at: float, callback: Callable[..., None], *args: object) -> asyncio.TimerHandle:
    """`loop.call_at` for a `time.monotonic()` deadline: the loop's clock may be another."""
    loop = asyncio.get_running_loop()
    return loop.call_at(loop.time() - time.monotonic() + at, callback, *args)
