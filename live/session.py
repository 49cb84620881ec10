"""One Live session: the setup handshake, the read loop, the single writer, turns and interruption."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from live import parity
from live.api_errors import ApiError
from live.backends.errors import BackendError
from live.backends.registry import Backends, model_id
from live.events import NO_EVENTS, SessionEvents
from live.files import CallerFiles
from live.generation import Unsupported, check
from live.lifecycle import SessionLife
from live.metrics import Metrics
from live.transport import Transport, TransportClosed
from live.turns import Conversation, TurnEngine, TurnLimits
from protocol import (
    ClientContent,
    ClientMessage,
    Content,
    ContextUpdate,
    FunctionCall,
    FunctionResponse,
    MessageTooLarge,
    Part,
    ProtocolError,
    RealtimeInput,
    ServerContent,
    ServerMessage,
    Setup,
    SetupComplete,
    ToolCall,
    ToolCallCancellation,
    ToolResponse,
    dump_server_message,
    parse_client_message,
)
from sandbox import Executor

log = logging.getLogger("openlive.session")

INTERNAL_ERROR = "Internal error encountered."


@dataclass(frozen=True)
class SessionLimits:
    max_message_bytes: int
    setup_timeout_s: float
    turn: TurnLimits


@dataclass(frozen=True)
class _Close:
    code: int
    reason: str


class Session:
    def __init__(
        self,
        transport: Transport,
        backends: Backends,
        executor: Executor,
        limits: SessionLimits,
        session_id: str,
        metrics: Metrics,
        life: SessionLife,
        api_version: str = "v1beta",
        events: SessionEvents = NO_EVENTS,
        files: CallerFiles | None = None,
    ) -> None:
        self.id = session_id
        self._life = life  # limits, goAway, resumption, compression (live/lifecycle.py)
        self._files = files
        self._metrics = metrics
        self._transport = transport
        self._backends = backends
        self._events = events
        self._executor = events.observe(executor)
        self._limits = limits
        self._api_version = api_version
        self._out: asyncio.Queue[ServerMessage | _Close] = asyncio.Queue()
        self._pending: dict[str, asyncio.Future[FunctionResponse]] = {}
        self._turn: asyncio.Task[None] | None = None
        self._closing = False
        self._log = logging.LoggerAdapter(log, {"session": session_id})

    async def serve(self) -> None:
        """Runs the session until the client leaves or an error closes it."""
        try:
            conv, engine = await self._handshake()
        except (ProtocolError, BackendError) as exc:
            self._log.info("setup rejected code=%d reason=%r", exc.code, exc.reason)
            self._metrics.closes.labels(code=exc.code).inc()
            await self._transport.close(exc.code, exc.reason)
            return
        except (TransportClosed, TimeoutError):
            self._metrics.closes.labels(code=1008).inc()
            await self._transport.close(1008, "No setup message received.")
            return
        self._metrics.sessions.inc()
        self._metrics.sessions_active.inc()
        try:
            await self._run(conv, engine)
        finally:
            self._metrics.sessions_active.dec()
            await self._life.end()
            self._events.closed()
        self._log.info("session ended")

    async def _run(self, conv: Conversation, engine: TurnEngine) -> None:
        async with asyncio.TaskGroup() as tg:
            writer = tg.create_task(self._write())
            life = tg.create_task(self._life.run())
            try:
                await self._read(conv, engine, tg)
            finally:
                life.cancel()
                await self._cancel_turn()
                if not self._closing:
                    writer.cancel()

    async def _handshake(self) -> tuple[Conversation, TurnEngine]:
        raw = await asyncio.wait_for(self._transport.recv(), self._limits.setup_timeout_s)
        self._check_size(raw)
        message = parse_client_message(raw)
        setup = message.setup
        if setup is None:
            raise ProtocolError(1007, "Invalid request: the first message must be setup.")
        parity.check(message)  # what openlive does not do is refused, naming the field
        setup = await self._life.admit(setup)
        backend = self._backends.resolve(setup.model, self._api_version)
        conv = _conversation(setup)
        conv.session = self.id
        conv.files = self._files
        try:
            check(conv.generation, structured_output=backend.structured_output,
                  tools=bool(conv.functions) or conv.code_execution, live=True)  # fmt: skip
        except Unsupported as exc:
            raise ProtocolError(1007, str(exc)) from None
        engine = TurnEngine(
            backend, self._executor, self._limits.turn, self._emit, self._call_functions, self._metrics
        )
        self._life.attach(conv, backend, self._emit, self._close, self._busy)
        await self._transport.send(
            dump_server_message(ServerMessage(setup_complete=SetupComplete(session_id=self.id)))
        )
        self._events.opened(setup)
        self._log.info(
            "setup model=%s code_execution=%s functions=%d",
            conv.model,
            conv.code_execution,
            len(conv.functions),
        )
        return conv, engine

    def _check_size(self, raw: str | bytes) -> None:
        size = (
            len(raw)
            if isinstance(raw, bytes) or len(raw) * 4 <= self._limits.max_message_bytes
            else len(raw.encode())
        )
        if size > self._limits.max_message_bytes:
            raise ProtocolError(
                1007, f"Request payload exceeds the limit of {self._limits.max_message_bytes} bytes."
            )

    async def _read(self, conv: Conversation, engine: TurnEngine, tg: asyncio.TaskGroup) -> None:
        while not self._closing:
            try:
                raw = await self._transport.recv()
            except TransportClosed:
                return
            try:
                self._check_size(raw)
                message = parse_client_message(raw)
                parity.check(message)
                await self._dispatch(message, conv, engine, tg)
            except ProtocolError as exc:
                self._log.info("closing code=%d reason=%r", exc.code, exc.reason)
                self._close(exc.code, exc.reason)

    async def _dispatch(
        self, msg: ClientMessage, conv: Conversation, engine: TurnEngine, tg: asyncio.TaskGroup
    ) -> None:
        if msg.setup is not None:
            raise ProtocolError(1007, "Invalid request: setup may only be sent once, as the first message.")
        if msg.client_content is not None:
            await self._on_client_content(msg.client_content, conv, engine, tg)
        elif msg.realtime_input is not None:
            await self._on_realtime_input(msg.realtime_input, conv, engine, tg)
        elif msg.tool_response is not None:
            self._on_tool_response(msg.tool_response)
        elif msg.context_update is not None:
            _on_context_update(msg.context_update, conv)

    async def _on_client_content(
        self, content: ClientContent, conv: Conversation, engine: TurnEngine, tg: asyncio.TaskGroup
    ) -> None:
        await self._interrupt()
        self._resolve_files(content.turns)
        conv.add(content.turns)
        if content.turn_complete:
            self._start_turn(conv, engine, tg)

    async def _on_realtime_input(
        self, rt: RealtimeInput, conv: Conversation, engine: TurnEngine, tg: asyncio.TaskGroup
    ) -> None:
        if rt.text:
            await self._interrupt()
            conv.add([Content(role="user", parts=[Part(text=rt.text)])])
            self._start_turn(conv, engine, tg)

    def _resolve_files(self, turns: list[Content]) -> None:
        """`fileData` parts must name the caller's live uploads (else the REST answer, as a close)."""
        if self._files is None:
            return
        try:
            self._files.resolve(turns)
        except ApiError as exc:
            raise ProtocolError(1007 if exc.code == 400 else 1008, exc.message) from None

    def _on_tool_response(self, response: ToolResponse) -> None:
        for fr in response.function_responses:
            future = self._pending.pop(fr.id or "", None)
            if future is None:
                self._log.info("tool response for unknown or cancelled call id=%r", fr.id)
            elif not future.done():
                future.set_result(fr)

    def _start_turn(self, conv: Conversation, engine: TurnEngine, tg: asyncio.TaskGroup) -> None:
        self._metrics.turns.inc()
        self._events.turn_started()
        self._turn = tg.create_task(self._run_turn(conv, engine))

    async def _run_turn(self, conv: Conversation, engine: TurnEngine) -> None:
        try:
            await self._life.before_turn()
            await engine.run(conv)
            self._life.after_turn(resumable=not self._pending)
        except ProtocolError as exc:
            self._log.info("closing code=%d reason=%r", exc.code, exc.reason)
            self._close(exc.code, exc.reason)
        except BackendError as exc:
            self._log.warning("backend error code=%d reason=%r", exc.code, exc.reason)
            self._close(exc.code, exc.reason)
        except Exception:
            self._log.exception("turn failed")
            self._close(1011, INTERNAL_ERROR)

    def _busy(self) -> bool:
        """A turn, a code job or a function call is in flight: the session cannot be resumed now."""
        return bool(self._pending) or (self._turn is not None and not self._turn.done())

    async def _interrupt(self) -> None:
        """Cancels a running turn: pending calls are cancelled, then `interrupted` and `turnComplete`."""
        if self._turn is None or self._turn.done():
            return
        await self._cancel_turn()
        self._metrics.interruptions.inc()
        await self._emit(ServerMessage(server_content=ServerContent(interrupted=True)))
        await self._emit(ServerMessage(server_content=ServerContent(turn_complete=True)))

    async def _cancel_turn(self) -> None:
        if self._turn is not None and not self._turn.done():
            self._turn.cancel()
            await asyncio.wait([self._turn])
        self._turn = None

    async def _call_functions(self, calls: list[FunctionCall]) -> list[FunctionResponse]:
        """Sends a toolCall and waits for every response (BLOCKING behaviour)."""
        loop = asyncio.get_running_loop()
        futures = {c.id or "": loop.create_future() for c in calls}
        self._pending.update(futures)
        await self._emit(ServerMessage(tool_call=ToolCall(function_calls=calls)))
        try:
            return list(await asyncio.gather(*futures.values()))
        except asyncio.CancelledError:
            abandoned = [i for i in futures if self._pending.pop(i, None) is not None]
            if abandoned:
                self._out.put_nowait(
                    ServerMessage(tool_call_cancellation=ToolCallCancellation(ids=abandoned))
                )
            raise

    async def _emit(self, message: ServerMessage) -> None:
        if not self._closing:
            self._out.put_nowait(message)

    def _close(self, code: int, reason: str) -> None:
        """Closes after what is already queued has been sent."""
        if not self._closing:
            self._closing = True
            self._metrics.closes.labels(code=code).inc()
            self._out.put_nowait(_Close(code, reason))

    async def _write(self) -> None:
        """The only place that sends, so message order is defined here."""
        while True:
            item = await self._out.get()
            if isinstance(item, _Close):
                await self._transport.close(item.code, item.reason)
                return
            try:
                data = dump_server_message(item)
            except MessageTooLarge as exc:  # a bug of ours, never the client's: say so and stop
                self._log.error("server message too large: %s", exc)
                self._closing = True
                await self._transport.close(1011, INTERNAL_ERROR)
                return
            try:
                await self._transport.send(data)
            except TransportClosed:
                return
            self._events.sent(item)


def _conversation(setup: Setup) -> Conversation:
    conv = Conversation(
        model=model_id(setup.model),
        system_instruction=setup.system_text(),
        generation=setup.generation_config,
    )
    conv.set_tools(setup.tools or [])
    return conv


def _on_context_update(update: ContextUpdate, conv: Conversation) -> None:
    if update.system_instruction is not None:
        conv.system_instruction = update.system_instruction.text()
    if update.tools is not None:
        conv.set_tools(update.tools.tools)
