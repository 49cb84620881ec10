"""`openlive chat`: a terminal client for a running server.

Text streams as it arrives, code and results are boxed apart from it, plots are saved to files, declared
demo functions are answered locally. Ctrl-C interrupts the current reply the protocol's way (new client
content), so the session survives; /quit or Ctrl-D leaves.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path

import websockets
from websockets.asyncio.client import ClientConnection

from clients.connection import add_connection_flags, dump_client_message, live_url, setup_message, ssl_context
from clients.demo_functions import DECLARATIONS, answer
from clients.terminal_view import TerminalView
from protocol import (
    ClientContent,
    ClientMessage,
    Content,
    FunctionResponse,
    Part,
    ServerMessage,
    ToolResponse,
)

SETUP_TIMEOUT_S = 15.0
QUIT_COMMANDS = {"/quit", "/exit", "/q"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="openlive chat", description=__doc__.splitlines()[0])
    add_connection_flags(parser)
    parser.add_argument("--no-code", action="store_true", help="do not enable the code-execution tool")
    parser.add_argument(
        "--function",
        action="append",
        default=[],
        choices=sorted(DECLARATIONS),
        help="declare a demo function the client answers itself (repeatable)",
    )
    parser.add_argument("--all-functions", action="store_true", help="declare every demo function")
    parser.add_argument("--system", help="system instruction")
    parser.add_argument(
        "--plots-dir", type=Path, default=Path("openlive-plots"), help="where plots are saved"
    )
    parser.add_argument("--prompt", help="send this one prompt, print the reply and exit")
    parser.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    return parser.parse_args(argv)


class Chat:
    def __init__(self, ws: ClientConnection, view: TerminalView) -> None:
        self.ws = ws
        self.view = view
        self.idle = asyncio.Event()
        self.idle.set()
        self.closed = asyncio.Event()
        self.turn_started = 0.0
        self._sending: set[asyncio.Task[None]] = set()

    async def send(self, message: ClientMessage) -> None:
        await self.ws.send(dump_client_message(message))

    async def ask(self, text: str) -> None:
        self.idle.clear()
        self.turn_started = time.monotonic()
        turn = Content(role="user", parts=[Part(text=text)])
        await self.send(ClientMessage(client_content=ClientContent(turns=[turn], turn_complete=True)))

    def interrupt(self) -> None:
        """Ctrl-C: during a reply, new (empty) client content cuts the model off; otherwise a hint."""
        if self.idle.is_set():
            self.view.hint("Ctrl-C interrupts a reply; /quit or Ctrl-D leaves.")
            self.view.prompt()
            return
        self.view.note("interrupting…")
        message = ClientMessage(client_content=ClientContent(turns=[], turn_complete=False))
        task = asyncio.get_running_loop().create_task(self.send(message))
        self._sending.add(task)  # keep a reference until it is sent
        task.add_done_callback(self._sending.discard)

    async def receive(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                await self.handle(ServerMessage.model_validate_json(raw))
        if self.ws.close_code not in (1000, 1001):
            self.view.error(
                f"server closed the connection: {self.ws.close_code} {self.ws.close_reason or ''}"
            )
        self.closed.set()
        self.idle.set()

    async def handle(self, msg: ServerMessage) -> None:
        view = self.view
        content = msg.server_content
        if content is not None:
            for part in content.model_turn.parts if content.model_turn else []:
                if part.text is not None and not part.thought:
                    view.text(part.text)
                if part.executable_code is not None:
                    view.code(part.executable_code.code, part.executable_code.language)
                if part.code_execution_result is not None:
                    view.result(part.code_execution_result.outcome, part.code_execution_result.output or "")
                if part.inline_data is not None:
                    view.inline_data(part.inline_data)
            if content.input_transcription and content.input_transcription.text:
                view.transcript("you said", content.input_transcription.text)
            if content.output_transcription and content.output_transcription.text:
                view.transcript("said", content.output_transcription.text)
            if content.interrupted:
                view.note("interrupted")
            if content.turn_complete:
                tokens = msg.usage_metadata.total_token_count if msg.usage_metadata else None
                view.turn_complete(time.monotonic() - self.turn_started, tokens)
                self.idle.set()
        if msg.tool_call is not None:
            responses = []
            for call in msg.tool_call.function_calls:
                result = answer(call.name, call.args)
                view.tool_call(call.name, call.args or {}, result)
                responses.append(FunctionResponse(id=call.id, name=call.name, response=result))
            await self.send(ClientMessage(tool_response=ToolResponse(function_responses=responses)))
        if msg.tool_call_cancellation is not None:
            view.note(f"cancelled calls: {', '.join(msg.tool_call_cancellation.ids)}")
        if msg.go_away is not None:
            view.note(f"server goAway: {msg.go_away.time_left} left on this connection")
        if msg.session_resumption_update is not None and msg.session_resumption_update.new_handle:
            view.note(f"resumable, handle {msg.session_resumption_update.new_handle}")


async def read_lines() -> asyncio.StreamReader:
    """stdin as an asyncio stream, so reading never blocks the loop or outlives it in a thread."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def converse(chat: Chat, one_prompt: str | None) -> int:
    if one_prompt is not None:
        await chat.ask(one_prompt)
        await chat.idle.wait()
        return 1 if chat.closed.is_set() else 0
    stdin = await read_lines()
    while not chat.closed.is_set():
        chat.view.prompt()
        line_task = asyncio.ensure_future(stdin.readline())
        closed_task = asyncio.ensure_future(chat.closed.wait())
        await asyncio.wait({line_task, closed_task}, return_when=asyncio.FIRST_COMPLETED)
        closed_task.cancel()
        if not line_task.done():
            line_task.cancel()
            return 1
        raw = line_task.result()
        if not raw:  # Ctrl-D
            chat.view.newline()
            return 0
        line = raw.decode(errors="replace").strip()
        if line in QUIT_COMMANDS:
            return 0
        if line:
            await chat.ask(line)
            await chat.idle.wait()
    return 1


async def run(args: argparse.Namespace) -> int:
    url = live_url(args.url, args.api_version)
    view = TerminalView(sys.stdout, args.plots_dir, color=args.color)
    names = sorted(DECLARATIONS) if args.all_functions else list(dict.fromkeys(args.function))
    setup = setup_message(
        args.model,
        code_execution=not args.no_code,
        functions=[DECLARATIONS[n] for n in names],
        system=args.system,
    )
    try:
        ws = await websockets.connect(
            url,
            additional_headers={"x-goog-api-key": args.key},
            ssl=ssl_context(url, args.ca, args.insecure),
            max_size=None,
            open_timeout=SETUP_TIMEOUT_S,
        )
    except (OSError, websockets.InvalidHandshake, TimeoutError) as exc:
        view.error(f"cannot connect to {url}: {exc}")
        return 1
    async with ws:
        try:
            await ws.send(dump_client_message(setup))
            first = ServerMessage.model_validate_json(await asyncio.wait_for(ws.recv(), SETUP_TIMEOUT_S))
        except websockets.ConnectionClosed as exc:
            view.error(
                f"server refused the session: {exc.rcvd.code if exc.rcvd else 1006} "
                f"{exc.rcvd.reason if exc.rcvd else ''}"
            )
            return 1
        except TimeoutError:
            view.error("no setupComplete from the server")
            return 1
        if first.setup_complete is None:
            view.error("the server's first message was not setupComplete")
            return 1
        tools = (["code execution"] if not args.no_code else []) + names
        view.banner(url, args.model, tools)
        chat = Chat(ws, view)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, chat.interrupt)
        try:
            async with asyncio.TaskGroup() as tg:
                receiver = tg.create_task(chat.receive())
                code = await converse(chat, args.prompt)
                receiver.cancel()
        finally:
            loop.remove_signal_handler(signal.SIGINT)
    return code


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run(args))
    return 130
