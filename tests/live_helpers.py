"""What a test needs to read a Live turn the way a client sees it."""

from __future__ import annotations

import base64
import os
import select
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.genai import live, types

SEED_PROMPT = (
    "What is the sum of the first 50 prime numbers? "
    "Generate and run code for the calculation, and make sure you get all 50."
)
CODE_TOOLS: list[Any] = [{"code_execution": {}}]


def text_config(tools: list[Any] | None = None) -> types.LiveConnectConfig:
    return types.LiveConnectConfig(response_modalities=[types.Modality.TEXT], tools=tools or CODE_TOOLS)


@dataclass
class Turn:
    """One turn's events in arrival order: ("text", str) ("code", str) ("result", (outcome, output))
    ("image", (mime, bytes)) ("tool_call", [FunctionCall]) ("cancel", [ids]) ("interrupted", None)
    ("generation_complete", None) ("turn_complete", UsageMetadata|None)."""

    events: list[tuple[str, Any]] = field(default_factory=list)
    turn_complete_reasons: list[Any] = field(default_factory=list)

    def kinds(self) -> list[str]:
        kinds: list[str] = []
        for kind, _ in self.events:
            if not (kind == "text" and kinds and kinds[-1] == "text"):
                kinds.append(kind)
        return kinds

    def of(self, kind: str) -> list[Any]:
        return [v for k, v in self.events if k == kind]

    def text(self) -> str:
        return "".join(self.of("text"))


def record(turn: Turn, msg: types.LiveServerMessage) -> None:
    if msg.tool_call and msg.tool_call.function_calls:
        turn.events.append(("tool_call", msg.tool_call.function_calls))
    if msg.tool_call_cancellation:
        turn.events.append(("cancel", msg.tool_call_cancellation.ids))
    sc = msg.server_content
    if sc is None:
        return
    for part in (sc.model_turn.parts or []) if sc.model_turn else []:
        if part.text is not None:
            turn.events.append(("text", part.text))
        if part.executable_code is not None:
            turn.events.append(("code", part.executable_code.code))
        if part.code_execution_result is not None:
            r = part.code_execution_result
            turn.events.append(("result", (r.outcome, r.output or "")))
        if part.inline_data is not None:
            turn.events.append(("image", (part.inline_data.mime_type, part.inline_data.data)))
    if sc.interrupted:
        turn.events.append(("interrupted", None))
    if sc.generation_complete:
        turn.events.append(("generation_complete", None))
    if sc.turn_complete:
        turn.events.append(("turn_complete", msg.usage_metadata))
        turn.turn_complete_reasons.append(sc.turn_complete_reason)


async def receive_turn(session: live.AsyncSession, turn: Turn | None = None) -> Turn:
    """Reads until turnComplete (the SDK's receive() stops there)."""
    turn = turn or Turn()
    async for msg in session.receive():
        record(turn, msg)
    return turn


async def receive_until(session: live.AsyncSession, kind: str, turn: Turn | None = None) -> Turn:
    """Reads, across turn ends, until a message brings an event of `kind` (e.g. "tool_call", "text")."""
    turn = turn or Turn()
    while True:
        async for msg in session.receive():
            seen = len(turn.events)
            record(turn, msg)
            if any(k == kind for k, _ in turn.events[seen:]):
                return turn


async def ask(session: live.AsyncSession, text: str) -> Turn:
    await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=text)]))
    return await receive_turn(session)


def assert_real_result(code: str, outcome: types.Outcome | None, output: str) -> None:
    """The sandbox's result is what this code really does: the same output, or the same final error line
    (e.g. a SyntaxError, which has no traceback). For models whose code is often wrong."""
    with tempfile.TemporaryDirectory() as scratch:
        local = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=scratch, timeout=60
        )
    if outcome == types.Outcome.OUTCOME_OK:
        assert (local.returncode, output) == (0, local.stdout)
    else:
        assert outcome == types.Outcome.OUTCOME_FAILED and local.returncode != 0
        assert local.stderr.strip().splitlines()[-1] in output


def is_png(data: bytes | str) -> bool:
    raw = data if isinstance(data, bytes) else base64.b64decode(data)
    return raw.startswith(b"\x89PNG\r\n\x1a\n")


def scrape(url: str, ssl_context: Any) -> dict[str, float]:
    """`GET /metrics` as {"name{labels}": value}."""
    import httpx

    text = httpx.get(f"{url}/metrics", verify=ssl_context).text
    return {
        key: float(value)
        for line in text.splitlines()
        if line and not line.startswith("#")
        for key, value in [line.rsplit(" ", 1)]
    }


async def until_code_runs(session: live.AsyncSession, text: str) -> None:
    """Sends a user turn and reads until its executableCode arrives (the code is running then)."""
    await session.send_client_content(turns=types.Content(role="user", parts=[types.Part(text=text)]))
    async for msg in session.receive():
        sc = msg.server_content
        if sc and sc.model_turn and any(p.executable_code for p in sc.model_turn.parts or []):
            return


def process_chain(marker: str, length: int) -> list[int]:
    """pidfds of the process whose command line carries `marker` and of its first `length - 1`
    ancestors, opened while they run (a sandbox job's child, the job, the job's monitor), so that their
    exits can be awaited without polling."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                    pids = [int(entry.name)]
                    break
            except OSError:
                continue
    else:
        raise AssertionError(f"no process carries {marker}")
    while len(pids) < length:
        pids.append(int(Path(f"/proc/{pids[-1]}/stat").read_text().rsplit(")", 1)[1].split()[1]))
    return [os.pidfd_open(pid) for pid in pids]


def wait_exited(pidfds: list[int], timeout_s: float = 10.0) -> float:
    """Blocks until every process has exited (its pidfd polls readable), closes the pidfds, and returns
    when (`time.perf_counter()`)."""
    try:
        pending, deadline = set(pidfds), time.perf_counter() + timeout_s
        while pending:
            ready, _, _ = select.select(list(pending), [], [], max(0.0, deadline - time.perf_counter()))
            if not ready:
                raise AssertionError(f"{len(pending)} processes still running after {timeout_s} s")
            pending -= set(ready)
        return time.perf_counter()
    finally:
        for fd in pidfds:
            os.close(fd)
