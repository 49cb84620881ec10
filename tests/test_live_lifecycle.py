"""Session lifecycle through the real SDK: goAway and the connection limit, resumption (after a forced
close, a cut socket, a server restart on SQLite), refused handles, compression, shutdown drain."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.genai import errors, live, types

from live.lifecycle import CONNECTION_LIMIT_REASON, SESSION_LIMIT_REASON, SHUTDOWN_REASON
from live.resumption import SESSION_EXPIRED
from tests.conftest import Server, start_server
from tests.live_helpers import CODE_TOOLS, Turn, record, scrape

MODEL = "gemini-live-2.5-flash-preview"
SCRIPT: dict[str, Any] = {
    "context_window": 60,  # words: a handful of turns fill it
    "rules": [
        {"match": r"remember (\d+)", "reply": [{"code": "print({{match.1}} * 3)"}, {"text": "Stored."}]},
        {"match": "what did the code print", "reply": [{"text": "The code printed {{history_output}}."}]},
        {"match": "take your time", "reply": [
            {"code": "import time\ntime.sleep(1.5)\nprint('rested')"}, {"text": "Finished: {{output}}"}]},
        {"match": r"^say (.*)", "reply": [{"text": "ok {{match.1}}"}]},
        {"match": "clock after a rest", "reply": [
            {"code": "import time\ntime.sleep(1.5)\nprint(time.time())"}, {"text": "ok"}]},
        {"match": "clock now", "reply": [{"code": "import time\nprint(time.time())"}, {"text": "ok"}]},
    ],
}  # fmt: skip
LIMIT_S = 6.0  # --max-connection-s: goAway 1.5 s before the close


def write_script(directory: Path) -> Path:
    path = directory / "lifecycle.yaml"
    path.write_text(yaml.safe_dump(SCRIPT))
    return path


def serve(certs: Path, directory: Path, store: str, *extra: str) -> Server:
    return start_server(
        certs, directory / "server.log", "--backend", "scripted", "--script", str(write_script(directory)),
        "--api-key", "second-key", "--resumption-store", store, "--max-connection-s", str(LIMIT_S), *extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def lifecycle_server(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("lifecycle")
    srv = serve(certs, directory, "memory")
    yield srv
    srv.stop()


def config(handle: str | None = None, **extra: Any) -> types.LiveConnectConfig:
    return types.LiveConnectConfig(
        response_modalities=[types.Modality.TEXT],
        tools=CODE_TOOLS,
        session_resumption=types.SessionResumptionConfig(handle=handle),
        **extra,
    )


class Log:
    """Every message of a session in order, with turn events, handles and goAway as events."""

    def __init__(self) -> None:
        self.turn = Turn()
        self.handles: list[str] = []

    def add(self, msg: types.LiveServerMessage) -> None:
        update = msg.session_resumption_update
        if update is not None:
            self.turn.events.append(("update", update.resumable))
            if update.resumable and update.new_handle:
                self.handles.append(update.new_handle)
        if msg.go_away is not None:
            self.turn.events.append(("go_away", msg.go_away.time_left))
        record(self.turn, msg)

    async def until(self, session: live.AsyncSession, kind: str) -> None:
        """Reads messages until one of `kind` arrives."""
        async with asyncio.timeout(30):
            while True:
                async for msg in session.receive():
                    self.add(msg)
                    if self.turn.events and self.turn.events[-1][0] == kind:
                        return

    async def ask(self, session: live.AsyncSession, text: str) -> None:
        await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=text)]))
        await self.until(session, "turn_complete")
        await self.until(session, "update")  # the handle of the state after the turn


async def closed(session: live.AsyncSession, log: Log) -> errors.APIError:
    """Reads until the server closes; returns the SDK's error for the close."""
    with pytest.raises(errors.APIError) as caught:
        async with asyncio.timeout(30):
            while True:
                async for msg in session.receive():
                    log.add(msg)
    return caught.value


async def test_go_away_then_close_then_resume_with_the_last_handle(lifecycle_server: Server) -> None:
    client = lifecycle_server.client()
    log = Log()
    loop = asyncio.get_running_loop()
    before = scrape(lifecycle_server.url, lifecycle_server.ssl_context())
    async with client.aio.live.connect(model=MODEL, config=config()) as session:
        started = loop.time()
        await log.until(session, "update")
        await log.ask(session, "remember 14")
        error = await closed(session, log)
        ended = loop.time()
    assert log.turn.kinds() == [
        "update", "code", "result", "text", "generation_complete", "turn_complete", "update", "go_away",
    ]  # fmt: skip
    assert log.turn.of("update") == [True, True]
    (time_left,) = log.turn.of("go_away")
    assert time_left.endswith("s") and 0 < float(time_left[:-1]) <= LIMIT_S / 4
    assert error.code == 1008 and error.details == CONNECTION_LIMIT_REASON
    assert len(CONNECTION_LIMIT_REASON.encode()) == 123
    assert LIMIT_S - 0.5 <= ended - started <= LIMIT_S + 3
    assert len(set(log.handles)) == 2  # a fresh handle after the turn

    resumed = Log()
    async with client.aio.live.connect(model=MODEL, config=config(log.handles[-1])) as session:
        await resumed.until(session, "update")
        await resumed.ask(session, "what did the code print?")
    assert "The code printed 42." in resumed.turn.text()
    after = scrape(lifecycle_server.url, lifecycle_server.ssl_context())
    for key in (
        'openlive_go_aways_total{cause="limit"}',
        'openlive_session_resumptions_total{outcome="resumed"}',
    ):
        assert after[key] >= before.get(key, 0) + 1


async def test_resume_after_the_socket_is_cut_mid_turn(lifecycle_server: Server) -> None:
    client = lifecycle_server.client()
    log = Log()
    async with client.aio.live.connect(model=MODEL, config=config()) as session:
        await log.until(session, "update")
        await log.ask(session, "remember 5")
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="take your time")])
        )
        await log.until(session, "code")  # the slow job is running now
        assert log.turn.of("update")[-1] is True
        session._ws.transport.abort()  # the network goes away: no close frame
    resumed = Log()
    async with client.aio.live.connect(model=MODEL, config=config(log.handles[-1])) as session:
        await resumed.until(session, "update")
        await resumed.ask(session, "what did the code print?")
    # The turn that was cut never completed, so the session resumes from the turn before it.
    assert "The code printed 15." in resumed.turn.text()


async def test_resumption_restores_tools_and_configuration(lifecycle_server: Server) -> None:
    client = lifecycle_server.client()
    log = Log()
    async with client.aio.live.connect(model=MODEL, config=config()) as session:
        await log.until(session, "update")
        await log.ask(session, "say first")
    bare = types.LiveConnectConfig(session_resumption=types.SessionResumptionConfig(handle=log.handles[-1]))
    resumed = Log()  # no tools and no modality sent again: the stored ones apply
    async with client.aio.live.connect(model=MODEL, config=bare) as session:
        await resumed.until(session, "update")
        await resumed.ask(session, "remember 5")
    assert resumed.turn.of("result")[0][1].strip() == "15"  # the code-execution tool came back


async def test_resuming_takes_over_from_a_connection_still_open(lifecycle_server: Server) -> None:
    client = lifecycle_server.client()
    log, taken = Log(), Log()
    async with client.aio.live.connect(model=MODEL, config=config()) as old:
        await log.until(old, "update")
        await log.ask(old, "remember 2")
        async with client.aio.live.connect(model=MODEL, config=config(log.handles[-1])) as new:
            await taken.until(new, "update")
            # The old connection still answers, but cannot save its turn: the session is no longer its own.
            await old.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="say hi")]))
            error = await closed(old, log)
            await taken.ask(new, "what did the code print?")
    assert log.turn.kinds()[-3:] == ["text", "generation_complete", "turn_complete"]
    assert error.code == 1008 and error.details == "Session resumed on another connection."
    assert "The code printed 6." in taken.turn.text()


@pytest.mark.parametrize("who", ["another key", "unknown handle"])
async def test_a_foreign_or_unknown_handle_is_refused(lifecycle_server: Server, who: str) -> None:
    log = Log()
    async with lifecycle_server.client().aio.live.connect(model=MODEL, config=config()) as session:
        await log.until(session, "update")
    handle = log.handles[-1] if who == "another key" else "AAAA" + log.handles[-1][4:]
    client = lifecycle_server.client(api_key="second-key" if who == "another key" else "test-key")
    with pytest.raises(errors.APIError) as caught:
        async with client.aio.live.connect(model=MODEL, config=config(handle)) as session:
            await session.receive().__anext__()
    assert caught.value.code == 1008 and caught.value.details == SESSION_EXPIRED


async def test_the_model_cannot_change_on_resumption(lifecycle_server: Server) -> None:
    log = Log()
    async with lifecycle_server.client().aio.live.connect(model=MODEL, config=config()) as session:
        await log.until(session, "update")
    with pytest.raises(errors.APIError) as caught:
        connect = lifecycle_server.client().aio.live.connect
        async with connect(model="gemini-other", config=config(log.handles[-1])) as session:
            await session.receive().__anext__()
    assert caught.value.code == 1007 and "model cannot change" in (caught.value.details or "")


async def test_compression_keeps_a_session_alive_past_the_window(lifecycle_server: Server) -> None:
    words = "alpha beta gamma delta epsilon zeta eta theta"
    squeeze = types.ContextWindowCompressionConfig(
        trigger_tokens=40, sliding_window=types.SlidingWindow(target_tokens=20)
    )
    connect = lifecycle_server.client().aio.live.connect
    async with connect(model=MODEL, config=config(context_window_compression=squeeze)) as session:
        log = Log()
        await log.until(session, "update")
        for _ in range(8):  # 8 turns of 18 words: 144 words, more than twice the 60-word window
            await log.ask(session, f"say {words}")
    # 9 words a prompt, 9 an answer: a third turn (45 words) passes the trigger (40) and the history is
    # cut at the start of the newest user turn, the only cut that reaches the target (20).
    prompts = [u.prompt_token_count for u in log.turn.of("turn_complete")]
    assert prompts == [9, 27] * 4
    assert (
        scrape(lifecycle_server.url, lifecycle_server.ssl_context())["openlive_context_compressions_total"]
        >= 3
    )

    async with lifecycle_server.client().aio.live.connect(model=MODEL, config=config()) as session:
        log = Log()
        await log.until(session, "update")
        for _ in range(3):
            await log.ask(session, f"say {words}")
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text=f"say {words}")])
        )
        error = await closed(session, log)
    assert error.code == 1007
    assert "exceeds the maximum number of tokens allowed (60)" in (error.details or "")


async def test_resumption_survives_a_server_restart_on_sqlite(certs: Path, tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'sessions.db'}"
    first = serve(certs, tmp_path, store)
    log = Log()
    try:
        async with first.client().aio.live.connect(model=MODEL, config=config()) as session:
            await log.until(session, "update")
            await log.ask(session, "remember 7")
    finally:
        first.stop()
    second = serve(certs, tmp_path, store)
    try:
        resumed = Log()
        async with second.client().aio.live.connect(model=MODEL, config=config(log.handles[-1])) as session:
            await resumed.until(session, "update")
            await resumed.ask(session, "what did the code print?")
    finally:
        second.stop()
    assert "The code printed 21." in resumed.turn.text()


async def test_shutdown_drains_sessions(certs: Path, tmp_path: Path) -> None:
    srv = serve(certs, tmp_path, "memory", "--max-connection-s", "600", "--drain-grace-s", "20")
    log = Log()
    try:
        async with srv.client().aio.live.connect(model=MODEL, config=config()) as session:
            await log.until(session, "update")
            await session.send_client_content(
                turns=types.Content(role="user", parts=[types.Part(text="take your time")])
            )
            await log.until(session, "code")  # the 1.5 s job runs now
            srv.proc.send_signal(signal.SIGTERM)
            error = await closed(session, log)
        # uvicorn re-raises the signal once it has shut down: the conventional exit for SIGTERM.
        assert await asyncio.to_thread(srv.proc.wait, 30) == -signal.SIGTERM
    finally:
        srv.stop()
    assert log.turn.kinds() == [
        "update", "code", "go_away", "result", "text", "generation_complete", "turn_complete", "update",
    ]  # fmt: skip
    assert log.turn.of("go_away") == ["20s"]
    assert log.turn.of("result")[0][1].strip() == "rested"  # the running turn finished
    assert error.code == 1001 and error.details == SHUTDOWN_REASON


async def test_a_session_without_compression_ends_at_its_length_limit(certs: Path, tmp_path: Path) -> None:
    srv = serve(certs, tmp_path, "memory", "--max-connection-s", "600", "--max-session-s", "4")
    squeeze = types.ContextWindowCompressionConfig(sliding_window=types.SlidingWindow())
    loop = asyncio.get_running_loop()
    try:
        client = srv.client()
        async with client.aio.live.connect(
            model=MODEL, config=config(context_window_compression=squeeze)
        ) as kept:
            first = Log()
            async with client.aio.live.connect(model=MODEL, config=config()) as session:
                started = loop.time()
                await first.until(session, "update")
                await first.ask(session, "remember 3")
            resumed = Log()  # the limit counts from the session's start, across resumptions
            resuming = loop.time()
            async with client.aio.live.connect(model=MODEL, config=config(first.handles[-1])) as session:
                error = await closed(session, resumed)
            ended = loop.time()
            compressed = Log()  # a session with compression has no length limit
            await compressed.ask(kept, "say still here")
    finally:
        srv.stop()
    assert error.code == 1008 and error.details == SESSION_LIMIT_REASON
    assert [k for k, _ in resumed.turn.events] == ["update", "go_away"]
    (time_left,) = resumed.turn.of("go_away")  # what is left of the first connection's 4 s, no more
    assert float(time_left[:-1]) <= 4 - (resuming - started) + 0.01
    assert 3.5 <= ended - started <= 6.0
    assert "ok still here" in compressed.turn.text()


def booking_config() -> types.LiveConnectConfig:
    """The semantics script's NON_BLOCKING `book_table`, with resumption."""
    booking = types.FunctionDeclaration(
        name="book_table", description="books", behavior=types.Behavior.NON_BLOCKING
    )
    return config().model_copy(update={"tools": [types.Tool(function_declarations=[booking])]})


async def book(session: live.AsyncSession, log: Log) -> None:
    """Asks for a booking: the turn ends with the call still open."""
    await log.until(session, "update")
    await log.ask(session, "book a table")


async def test_not_resumable_while_a_call_is_open(semantics_server: Server) -> None:
    """A NON_BLOCKING call still open when its turn ends: the update says not resumable, and no handle is
    given until the result has been answered and that turn is complete."""
    log = Log()
    async with semantics_server.client().aio.live.connect(model=MODEL, config=booking_config()) as session:
        await book(session, log)
        (call,) = log.turn.of("tool_call")[0]
        await session.send_tool_response(
            function_responses=[
                types.FunctionResponse(id=call.id, name=call.name, response={"status": "booked"})
            ]
        )
        await log.until(session, "turn_complete")
        await log.until(session, "update")
    assert log.turn.kinds() == [
        "update", "tool_call", "text", "generation_complete", "turn_complete", "update",
        "text", "generation_complete", "turn_complete", "update",
    ]  # fmt: skip
    assert log.turn.of("update") == [True, False, True]
    assert len(log.handles) == 2


async def test_a_state_with_an_open_call_is_not_saved(semantics_server: Server) -> None:
    """Every handle resumes the newest saved state, so the state with the call open must not be saved."""
    log, resumed = Log(), Log()
    client = semantics_server.client()
    async with client.aio.live.connect(model=MODEL, config=booking_config()) as session:
        await book(session, log)
        async with client.aio.live.connect(model=MODEL, config=config(log.handles[0])) as again:
            await resumed.until(again, "update")
            await resumed.ask(again, "echo probe")
    (usage,) = resumed.turn.of("turn_complete")
    assert usage.prompt_token_count == 2  # "echo probe" alone: nothing of the booking turn came back


async def test_a_handle_expires_its_ttl_after_the_session_ends(certs: Path, tmp_path: Path) -> None:
    srv = serve(certs, tmp_path, "memory", "--resumption-ttl-s", "1")
    try:
        client = srv.client()
        log = Log()
        async with client.aio.live.connect(model=MODEL, config=config()) as session:
            await log.until(session, "update")
        async with client.aio.live.connect(model=MODEL, config=config(log.handles[-1])) as session:
            await log.until(session, "update")  # within the TTL: resumed
        ended = asyncio.get_running_loop().time()
        await asyncio.sleep(1.5)  # the TTL passing is what is tested, not a synchronisation
        with pytest.raises(errors.APIError) as caught:
            async with client.aio.live.connect(model=MODEL, config=config(log.handles[-1])) as session:
                await session.receive().__anext__()
        assert asyncio.get_running_loop().time() - ended >= 1.0
    finally:
        srv.stop()
    assert caught.value.code == 1008 and caught.value.details == SESSION_EXPIRED
