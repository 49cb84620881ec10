"""One Live session: the setup handshake, the read loop, the turn loop, the single writer, interruption."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from live import parity, settled
from live.activity import Activity
from live.api_errors import ApiError
from live.backends.errors import BackendError
from live.backends.registry import Backends, model_id
from live.calls import CallScheduler, Scheduling
from live.events import NO_EVENTS, SessionEvents
from live.files import CallerFiles
from live.generation import Unsupported, check
from live.lifecycle import SessionLife
from live.metrics import Metrics
from live.outbox import INTERNAL_ERROR, Close, Outbox, write
from live.transport import Transport, TransportClosed
from live.turns import Conversation, TurnEngine, TurnLimits, TurnUsage
from live.voice import SpeechTurn, VoiceEngines, truncate_unheard
from live.voice.link import SessionVoice, TranscriptTurns, VoiceSetup, is_turn_output
from protocol import (
    ClientMessage,
    Content,
    ContextUpdate,
    FunctionResponse,
    Outbound,
    Part,
    ProtocolError,
    RealtimeInput,
    ServerContent,
    ServerMessage,
    Setup,
    SetupComplete,
    dump_server_message,
    parse_client_frame,
    parse_client_message,
)
from sandbox import Executor

log = logging.getLogger("openlive.session")


@dataclass(frozen=True)
class SessionLimits:
    max_message_bytes: int
    setup_timeout_s: float
    turn: TurnLimits


@dataclass(frozen=True)
class _Input:
    """User content waiting for the turn loop; `respond` starts a turn once it is in the history."""

    contents: list[Content]
    respond: bool


@dataclass
class _Live:
    """What a session has once set up (made in `_handshake`)."""

    conv: Conversation
    engine: TurnEngine
    calls: CallScheduler
    activity: Activity
    voice: SessionVoice
    seeding: bool  # historyConfig.initialHistoryInClientContent: clientContent seeds until turnComplete


class Session:
    """One connection: reads client frames, runs turns one at a time in arrival order, writes through one
    queue. `interrupt` and `user_input` are the two ways in for whatever ends or starts a user turn."""

    def __init__(
        self,
        transport: Transport,
        backends: Backends,
        executor: Executor,
        limits: SessionLimits,
        session_id: str,
        metrics: Metrics,
        life: SessionLife,
        voice: VoiceEngines,
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
        self._out = Outbox()
        self._inbox: list[_Input] = []  # read by the turn loop, a task only while there is input
        self._held = False  # the user holds the floor (an open activity)
        self._floor: asyncio.Future[None] | None = None  # what the turn loop waits on while held
        self._tasks: asyncio.TaskGroup | None = None
        self._writer: asyncio.Task[None] | None = None  # made by the first message out (`_send`)
        self._turns: asyncio.Task[None] | None = None  # the turn loop; a turn runs in it
        self._live: _Live | None = None
        self._running = False  # a turn runs (in the turn loop's task)
        self._turn_ended: asyncio.Future[None] | None = None  # made by `interrupt` while it waits
        self._interrupting = False
        self._closing = False
        self._engines = voice
        self._speech: SpeechTurn | None = None  # the spoken turn in progress, which orders its output
        self._log = logging.LoggerAdapter(log, {"session": session_id})

    # --- the interruption point and user input (voice calls these too) ---------------------------

    async def interrupt(self, reason: str) -> bool:
        """Stops the running turn; returns False if none was running.

        The model stream is closed, a running sandbox job's process tree is killed (gone before this
        returns), unanswered BLOCKING calls are listed in `toolCallCancellation`, then the client gets
        `interrupted` and `turnComplete` (with the turn's usage, no `generationComplete`). The history keeps
        what was already sent. NON_BLOCKING calls stay open. `reason` names the cause in logs ("input",
        "activity", "function_result", "voice", ...). Call it from any task on the session's loop:
        `await session.interrupt("voice")`; concurrent callers all wait for the one interruption.
        """
        turns = self._turns
        if not self._running or turns is None:
            return False
        if self._turn_ended is None:
            self._turn_ended = asyncio.get_running_loop().create_future()
        ended = self._turn_ended
        if self._interrupting:  # another caller is stopping this turn: wait for it
            await asyncio.wait([ended])
            return False
        self._interrupting = True
        started = time.perf_counter()
        turns.cancel()  # raised inside the turn; the turn loop goes on with the next input
        await asyncio.wait([ended])
        took = time.perf_counter() - started
        self._metrics.interruption.observe(took)
        self._log.info("interrupted turn (%s) in %.1f ms", reason, took * 1000)
        return True

    async def user_input(
        self, contents: list[Content], respond: bool = True, interrupts: bool = True
    ) -> None:
        """New user content, answered in arrival order (FIFO). `respond` starts a turn on it.

        With `interrupts` it first interrupts the running turn, unless that turn waits for BLOCKING call
        results: input then queues behind the turn and is answered after it, as on Google. A voice turn
        whose start already interrupted: `await session.user_input([Content(role="user", parts=[...])],
        interrupts=False)`.
        """
        self._resolve_files(contents)
        live = self._live
        if interrupts and not (live is not None and live.calls.waiting):
            await self.interrupt("input")
        self._inbox.append(_Input(contents, respond))
        if self._turns is None and live is not None and self._tasks is not None:
            self._turns = self._tasks.create_task(self._serve_turns(live))

    def hold(self, held: bool) -> None:
        """While the user has the floor (an open activity) no new turn starts."""
        self._held = held
        if not held and self._floor is not None and not self._floor.done():
            self._floor.set_result(None)

    # --- lifecycle --------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Runs the session until the client leaves or an error closes it."""
        try:
            live = await self._handshake()
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
            await self._run(live)
        finally:
            self._metrics.sessions_active.dec()
            await self._life.end()
            self._events.closed()
        self._log.info("session ended")

    async def _run(self, live: _Live) -> None:
        """While idle a session holds only this task (reading); the writer is a task from the first
        message out, and the turn loop, the voice input's transcriber and the resumption writer are
        tasks only while they have work."""
        self._live = live
        async with asyncio.TaskGroup() as tg:
            self._tasks = tg
            life = tg.create_task(self._life.run()) if self._life.resumable else None
            self._life.arm(self._send)  # after the resumption writer: its first handle goes out first
            try:
                await self._read(live)
            finally:
                self._tasks = None
                turns = self._turns
                for task in (life, turns, live.voice.listener):
                    if task is not None:
                        task.cancel()
                if turns is not None:  # a running turn's code job is gone before the writer stops
                    await asyncio.wait([turns])
                if not self._closing and self._writer is not None:
                    self._writer.cancel()

    def _listen(self, transcribing: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """The voice input's transcriber, started with the input (`SessionVoice.input`)."""
        assert self._tasks is not None
        return self._tasks.create_task(self._transcribe(transcribing))

    async def _transcribe(self, transcribing: Coroutine[Any, Any, None]) -> None:
        """A failing speech upstream closes the session."""
        try:
            await transcribing
        except BackendError as exc:
            self._log.warning("speech upstream error code=%d reason=%r", exc.code, exc.reason)
            self._close(exc.code, exc.reason)

    async def _handshake(self) -> _Live:
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
        calls = CallScheduler(self._send, self._emit, conv.non_blocking)
        engine = TurnEngine(backend, self._executor, self._limits.turn, self._emit, calls.call, self._metrics)
        history = setup.history_config
        activity = Activity(setup.realtime_input_config, self)
        voice_setup = VoiceSetup.from_setup(setup, self._engines)
        voice = SessionVoice(
            self._engines,
            voice_setup,
            TranscriptTurns(self, activity, self._send, voice_setup.input_transcription),
            lambda: (conv.system_instruction, conv.history),
            self._listen,
        )
        live = _Live(
            conv,
            engine,
            calls,
            activity,
            voice,
            seeding=bool(history and history.initial_history_in_client_content),
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
        return live

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

    # --- reading ----------------------------------------------------------------------------------

    async def _read(self, live: _Live) -> None:
        while not self._closing:
            try:
                raw = await self._transport.recv()
            except TransportClosed:
                return
            try:
                await self._receive(raw, live)
            except ProtocolError as exc:
                self._log.info("closing code=%d reason=%r", exc.code, exc.reason)
                self._close(exc.code, exc.reason)
            del raw

    async def _receive(self, raw: str | bytes, live: _Live) -> None:
        """One client frame. Its own function, so that the message is not kept while the session waits
        for the next one (objects that outlive a turn make every garbage collection longer)."""
        self._check_size(raw)
        message, plain_text = parse_client_frame(raw)
        if not plain_text:  # plain text turns set only fields openlive supports (tests/test_parity.py)
            parity.check(message)
        await self._dispatch(message, live)

    async def _dispatch(self, msg: ClientMessage, live: _Live) -> None:
        if msg.setup is not None:
            raise ProtocolError(1007, "Invalid request: setup may only be sent once, as the first message.")
        if msg.client_content is not None:
            content = msg.client_content
            if live.seeding:  # initial history: no generation, nothing to interrupt
                live.seeding = not content.turn_complete
                await self.user_input(content.turns, respond=False, interrupts=False)
            else:
                await self.user_input(content.turns, respond=content.turn_complete)
            return
        live.seeding = False
        if msg.realtime_input is not None:
            await self._on_realtime_input(msg.realtime_input, live)
        elif msg.tool_response is not None:
            for response in msg.tool_response.function_responses:
                await self._on_result(response, live)
        elif msg.context_update is not None:
            _on_context_update(msg.context_update, live.conv)

    async def _on_result(self, response: FunctionResponse, live: _Live) -> None:
        late = live.calls.answer(response)
        if late is None:
            return
        content = [Content(role="user", parts=[Part(function_response=late.response)])]
        if late.scheduling == Scheduling.INTERRUPT:
            await self.interrupt("function_result")
        await self.user_input(content, respond=late.scheduling != Scheduling.SILENT, interrupts=False)

    async def _on_realtime_input(self, rt: RealtimeInput, live: _Live) -> None:
        """Text and activity marks go to `Activity`; audio to the voice input, whose transcript ends a
        manual activity (so `activityEnd` waits for it) or is the turn of a detected one."""
        voice = live.voice
        if rt.video is not None or any(
            (b.mime_type or "").startswith("image/") for b in rt.media_chunks or []
        ):
            raise ProtocolError(1008, "realtimeInput.video is not supported: no model here takes images.")
        if rt.activity_start is not None:
            await live.activity.receive(RealtimeInput(activity_start=rt.activity_start))
            voice.input.start()
        if rt.text:
            await live.activity.receive(RealtimeInput(text=rt.text))
        for blob in [*([rt.audio] if rt.audio else []), *(rt.media_chunks or [])]:
            await voice.input.audio(blob.mime_type, blob.data)
        if rt.audio_stream_end:
            voice.input.stream_end()
        if rt.activity_end is not None:
            if live.activity.automatic:  # refused there, with its reason
                await live.activity.receive(RealtimeInput(activity_end=rt.activity_end))
            voice.input.end()

    # --- turns ------------------------------------------------------------------------------------

    def _resolve_files(self, turns: list[Content]) -> None:
        """`fileData` parts must name the caller's live uploads (else the REST answer, as a close)."""
        if self._files is None:
            return
        try:
            self._files.resolve(turns)
        except ApiError as exc:
            raise ProtocolError(1007 if exc.code == 400 else 1008, exc.message) from None

    async def _serve_turns(self, live: _Live) -> None:
        """The one task that adds user input to the history and runs its turns, in arrival order; it
        ends when no input waits (`user_input` starts it again). A turn runs in this task, not one of its
        own (one task switch less per turn): `interrupt` cancels this task inside the turn, and the
        loop goes on."""
        try:
            while self._inbox:
                await self._next_turn(live, self._inbox.pop(0))
        finally:
            self._turns = None

    async def _next_turn(self, live: _Live, item: _Input) -> None:
        live.conv.add(item.contents)
        if item.respond:
            while self._held:
                self._floor = asyncio.get_running_loop().create_future()
                try:
                    await self._floor
                finally:
                    self._floor = None
            self._metrics.turns.inc()
            self._events.turn_started()
            self._running = True
            try:
                await self._run_turn(live, TurnUsage())
            finally:
                self._running = False
                if self._interrupting:  # the cancellation was the interruption's, and it is handled
                    self._interrupting = False
                    task = asyncio.current_task()
                    assert task is not None
                    task.uncancel()
                ended, self._turn_ended = self._turn_ended, None
                if ended is not None:
                    ended.set_result(None)
                settled.settle(live.conv.history)

    async def _run_turn(self, live: _Live, usage: TurnUsage) -> None:
        """One turn; a cancellation is an interruption (answered, the turn loop goes on) or the end of
        the session (raised on)."""
        try:
            await self._life.before_turn()
            await self._generate(live, usage)
            self._life.after_turn(resumable=not live.calls.open)
        except asyncio.CancelledError:
            if self._interrupting:  # not the session ending
                self._metrics.interruptions.inc()
                self._out.drop_unsent_speech()
                self._send(ServerMessage(server_content=ServerContent(interrupted=True)))
                self._send(
                    ServerMessage(
                        server_content=ServerContent(turn_complete=True), usage_metadata=usage.metadata()
                    )
                )
            else:
                raise
        except ProtocolError as exc:  # the history no longer fits the model's window
            self._log.info("closing code=%d reason=%r", exc.code, exc.reason)
            self._close(exc.code, exc.reason)
        except BackendError as exc:
            self._log.warning("backend error code=%d reason=%r", exc.code, exc.reason)
            self._close(exc.code, exc.reason)
        except Exception:
            self._log.exception("turn failed")
            self._close(1011, INTERNAL_ERROR)

    async def _generate(self, live: _Live, usage: TurnUsage) -> None:
        """One model turn, spoken when the session answers in audio; an interrupted spoken turn keeps in
        its history only the words the client's playback clock says were heard."""
        speech = live.voice.speech_turn(self._emit_now)
        if speech is None:
            await live.engine.run(live.conv, usage)
            return
        start = len(live.conv.history)
        self._speech = speech
        try:
            await speech.run(live.engine.run(live.conv, usage))
        except asyncio.CancelledError:
            truncate_unheard(live.conv.history, start, speech.heard_chars())
            raise
        finally:
            self._speech = None

    def _busy(self) -> bool:
        """A turn (with its code jobs and BLOCKING calls) runs or input waits for one: the session cannot
        be resumed now, and a draining server gives it its grace period. Open NON_BLOCKING calls make
        `after_turn` checkpoint a session as not resumable, but do not hold a drain."""
        return self._running or bool(self._inbox)

    # --- writing ----------------------------------------------------------------------------------

    def _send(self, message: Outbound) -> None:
        """Queues a message for the writer (in order, after everything queued before it)."""
        if not self._closing:
            self._out.put_nowait(message)
            if self._writer is None:
                self._start_writer()

    def _start_writer(self) -> None:
        if self._tasks is not None:
            self._writer = self._tasks.create_task(self._write())

    async def _emit(self, message: Outbound) -> None:
        if self._speech is not None and is_turn_output(message):
            await self._speech.emit(message)
        else:
            self._send(message)

    def _sent(self, message: Outbound) -> None:
        """The writer put `message` on the socket."""
        self._events.sent(message)
        if self._speech is not None:
            self._speech.written(message)  # its audio starts playing now

    async def _emit_now(self, message: ServerMessage) -> None:
        self._send(message)

    def _close(self, code: int, reason: str) -> None:
        """Closes after what is already queued has been sent."""
        if not self._closing:
            self._closing = True
            self._metrics.closes.labels(code=code).inc()
            self._out.put_nowait(Close(code, reason))
            if self._writer is None:
                self._start_writer()

    async def _write(self) -> None:
        """The only place that sends, so message order is defined here (live/outbox.py)."""
        await write(self._out, self._transport, self._log, self._sent)
        self._closing = True


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
