"""Ephemeral tokens (`POST /{version}/auth_tokens`, used on `...Constrained`) and per-key limits.

A token is minted with an API key and opens sessions on that key's behalf: its sessions, their
resumption handles and their limits belong to that key. Tokens live in the session store, so with
`--resumption-store sqlite:PATH` every server process on the machine honours them (uses are counted
atomically there).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from live.auth import UNREGISTERED_CALLER, is_authorized, presented_credential
from live.store import SessionStore, TokenRecord, digest
from protocol import ProtocolError, Setup
from sandbox import Executor, HostCall, Job, Outcome, PoolStatus, Result

TOKEN_PREFIX = "auth_tokens/"
MAX_LIFETIME_S = 20 * 3600
DEFAULT_EXPIRE_S = 30 * 60
DEFAULT_NEW_SESSION_S = 60


class AuthTokenRequest(BaseModel):
    """The body `client.auth_tokens.create` sends (flat: no `config` wrapper)."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_alias=True, validate_by_name=True,
                              extra="forbid")  # fmt: skip
    name: str | None = None
    uses: int | None = Field(default=None, ge=0)
    expire_time: datetime | None = None
    new_session_expire_time: datetime | None = None
    bidi_generate_content_setup: dict[str, Any] | None = None
    field_mask: str | None = None


@dataclass(frozen=True)
class Caller:
    """Who opened a connection: the owner is the digest of the API key (of the minting key for a token)."""

    owner: str
    token: str | None = None  # the token's digest


def _error(code: int, status: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "status": status}}, status_code=code)


def _epoch(value: datetime | None, default_s: float, now: float) -> float:
    return now + default_s if value is None else value.timestamp()


def token_router(
    api_keys: list[str], store: Callable[[], SessionStore], issued: Callable[[], None]
) -> APIRouter:
    router = APIRouter()

    @router.post("/{version}/auth_tokens", include_in_schema=False)
    async def create(version: str, request: Request) -> JSONResponse:
        if version not in ("v1alpha", "v1beta"):
            return _error(404, "NOT_FOUND", f"Method not found: {version}/auth_tokens.")
        credential = presented_credential(request.headers, request.query_params)
        if credential is None or credential.startswith(TOKEN_PREFIX):
            return _error(403, "PERMISSION_DENIED", UNREGISTERED_CALLER)
        if not is_authorized(credential, api_keys):
            return _error(403, "PERMISSION_DENIED", UNREGISTERED_CALLER)
        try:
            body = AuthTokenRequest.model_validate_json(await request.body() or b"{}")
        except ValidationError as exc:
            return _error(400, "INVALID_ARGUMENT", _invalid_body(exc))
        now = time.time()
        expire = _epoch(body.expire_time, DEFAULT_EXPIRE_S, now)
        new_session = _epoch(body.new_session_expire_time, DEFAULT_NEW_SESSION_S, now)
        for field, at in (("expire_time", expire), ("new_session_expire_time", new_session)):
            if at - now > MAX_LIFETIME_S:
                message = f"{field} is too far in the future. Maximum lifetime is 20h"
                return _error(400, "INVALID_ARGUMENT", message)
        constraints = None
        if body.bidi_generate_content_setup is not None:
            try:
                # A constraint need not name the model; the client's then stands.
                locked = Setup.model_validate({"model": ""} | body.bidi_generate_content_setup)
            except ValidationError as exc:
                return _error(400, "INVALID_ARGUMENT", _invalid_body(exc, "bidi_generate_content_setup"))
            fields = locked.model_dump(mode="json", by_alias=True, exclude_unset=True)
            constraints = json.dumps({k: v for k, v in fields.items() if v != ""})
        name = TOKEN_PREFIX + secrets.token_urlsafe(32)
        await store().add_token(
            TokenRecord(
                digest=digest(name),
                owner=digest(credential),
                uses=1 if body.uses is None else body.uses,
                used=0,
                expire_time=expire,
                new_session_expire_time=new_session,
                constraints=constraints,
                field_mask=body.field_mask,
            )
        )
        issued()
        return JSONResponse({"name": name})

    return router


def _invalid_body(exc: ValidationError, prefix: str = "") -> str:
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in (prefix, *first["loc"]) if p != "")
    if first["type"] == "extra_forbidden":
        return f'Invalid JSON payload received. Unknown name "{first["loc"][-1]}": Cannot find field.'
    return f"Invalid value at '{where}': {first['msg']}"


async def identify(
    credential: str | None,
    constrained: bool,
    api_keys: list[str],
    store: SessionStore,
) -> Caller:
    """The caller of a Live connection presenting `credential` (`presented_credential`), or the
    ProtocolError to close it with.

    Tokens work only on the `...Constrained` method, as on Google; API keys work on both. Whether a
    token is still good is decided once the setup shows whether the connection resumes (`admit_token`).
    """
    if credential is not None and credential.startswith(TOKEN_PREFIX):
        token = await store.get_token(digest(credential)) if constrained else None
        if token is None:
            raise ProtocolError(1008, UNREGISTERED_CALLER)
        return Caller(owner=token.owner, token=token.digest)
    if not is_authorized(credential, api_keys):
        raise ProtocolError(1008, UNREGISTERED_CALLER)
    return Caller(owner=digest(credential or ""))


async def admit_token(caller: Caller, setup: Setup, store: SessionStore) -> tuple[Setup, float | None]:
    """Uses the caller's token for this connection (a resumption does not count) and applies its locked
    constraints; returns the effective setup and when the token expires (None without a token)."""
    if caller.token is None:
        return setup, None
    resuming = bool(setup.session_resumption and setup.session_resumption.handle)
    outcome = await store.use_token(caller.token, time.time(), new_session=not resuming)
    if outcome is None:
        raise ProtocolError(1008, UNREGISTERED_CALLER)
    if isinstance(outcome, str):
        raise ProtocolError(1011, outcome)
    return constrained_setup(setup, outcome), outcome.expire_time


def constrained_setup(setup: Setup, token: TokenRecord) -> Setup:
    """Locked fields replace the client's. Without a field mask the whole constraint setup is locked:
    it replaces the client's setup (the model too, if it names one); a mask locks only its paths."""
    if token.constraints is None:
        return setup
    locked: dict[str, Any] = json.loads(token.constraints)
    client = setup.model_dump(mode="json", by_alias=True, exclude_none=True)
    keep = {k: client[k] for k in ("model", "sessionResumption") if k in client}
    if token.field_mask is None:
        return Setup.model_validate(keep | locked)
    for path in filter(None, (p.strip() for p in token.field_mask.split(","))):
        _copy_path(locked, client, path.split("."))
    return Setup.model_validate(client)


def _copy_path(source: dict[str, Any], target: dict[str, Any], path: list[str]) -> None:
    key = to_camel(path[0]) if "_" in path[0] else path[0]
    if len(path) == 1:
        if key in source:
            target[key] = source[key]
        else:
            target.pop(key, None)
        return
    inner_source = source.get(key)
    inner_target = target.setdefault(key, {})
    if isinstance(inner_source, dict) and isinstance(inner_target, dict):
        _copy_path(inner_source, inner_target, path[1:])
    elif isinstance(inner_target, dict):
        _copy_path({}, inner_target, path[1:])


class QuotaExceeded(ProtocolError):
    """A per-key limit refused the connection; answered after the client's setup, as Google's quota errors."""


class KeyLimits:
    """Concurrent sessions and code jobs per API key, in this process (0 = unlimited)."""

    def __init__(self, max_sessions: int, max_jobs: int) -> None:
        self._max_sessions = max_sessions
        self._max_jobs = max_jobs
        self._sessions: Counter[str] = Counter()
        self._jobs: dict[str, asyncio.Semaphore] = {}

    @contextlib.asynccontextmanager
    async def session(self, owner: str) -> AsyncIterator[None]:
        """Holds one of the key's session slots; 1011 when they are all taken."""
        if self._max_sessions and self._sessions[owner] >= self._max_sessions:
            reason = f"Resource has been exhausted: at most {self._max_sessions} concurrent sessions per key."
            raise QuotaExceeded(1011, reason)
        self._sessions[owner] += 1
        try:
            yield
        finally:
            self._sessions[owner] -= 1
            if not self._sessions[owner]:
                del self._sessions[owner]

    def executor(self, executor: Executor, owner: str) -> Executor:
        if not self._max_jobs:
            return executor
        semaphore = self._jobs.setdefault(owner, asyncio.Semaphore(self._max_jobs))
        return _KeyedExecutor(executor, semaphore, self._max_jobs)


class _KeyedExecutor:
    """Runs a key's jobs at most N at a time; a job that waits its whole deadline for a slot fails."""

    def __init__(self, inner: Executor, slots: asyncio.Semaphore, limit: int) -> None:
        self._inner = inner
        self._slots = slots
        self._limit = limit

    async def start(self) -> None:
        await self._inner.start()

    async def close(self) -> None:
        await self._inner.close()

    def status(self) -> PoolStatus:
        return self._inner.status()

    async def run(self, job: Job, host_call: HostCall | None = None) -> Result:
        try:
            async with asyncio.timeout(job.deadline_s):
                await self._slots.acquire()
        except TimeoutError:
            return Result(
                outcome=Outcome.FAILED,
                output=f"Resource has been exhausted: this API key already runs {self._limit} code jobs.",
            )
        try:
            return await self._inner.run(job, host_call)
        finally:
            self._slots.release()
