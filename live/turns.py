"""One model turn: stream model output, run code in the sandbox, call client functions, loop until done.

The engine only appends to the conversation and emits server messages; the session owns the socket,
pending function calls and interruption (it cancels the task running `TurnEngine.run`).
"""

from __future__ import annotations

import contextlib
import logging
import mimetypes
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from live.backends.base import (
    CodeCall,
    Finish,
    FunctionCalls,
    ModelBackend,
    ModelEvent,
    ModelRequest,
    TextDelta,
    Usage,
)
from live.metrics import Metrics
from protocol import (
    Blob,
    CodeExecutionResult,
    Content,
    ExecutableCode,
    FunctionCall,
    FunctionDeclaration,
    FunctionResponse,
    GenerationConfig,
    ModalityTokenCount,
    Part,
    ServerContent,
    ServerMessage,
    Tool,
    UsageMetadata,
)
from sandbox import Executor, File, Job, Outcome, Result

log = logging.getLogger("openlive.turns")

Emit = Callable[[ServerMessage], Awaitable[None]]
CallFunctions = Callable[[list[FunctionCall]], Awaitable[list[FunctionResponse]]]


class FunctionCallsPending(Exception):
    """Raised by a CallFunctions that cannot wait for answers (plain HTTP): the turn ends at the calls."""


# Inline data larger than this cannot travel in one server message (base64 grows it by 4/3; the SDK
# aborts on messages over 1 MiB), so it is reported in the result text instead.
MAX_INLINE_BYTES = 700 * 1024
# Text can be split anywhere, so a long delta goes out in pieces: at most 4 bytes a character and JSON
# escapes of up to 6 bytes (\uXXXX) keep each message under 1 MiB.
MAX_TEXT_CHARS = 128 * 1024
_MEDIA_PREFIXES = ("audio/", "video/")
# turnCompleteReason values openlive produces (Google's enum): the model called a function nobody declared;
# a turn ran out of code attempts or model calls and answered without more.
MALFORMED_FUNCTION_CALL = "MALFORMED_FUNCTION_CALL"
MAX_REGENERATION_REACHED = "MAX_REGENERATION_REACHED"


@dataclass
class Conversation:
    """What a session knows: the model, its configuration and the history turns run against."""

    model: str
    session: str = ""  # the sandbox queues fairly across sessions and caps each one's concurrent jobs
    history: list[Content] = field(default_factory=list)
    system_instruction: str | None = None
    functions: list[FunctionDeclaration] = field(default_factory=list)
    code_execution: bool = False
    generation: GenerationConfig | None = None

    def add(self, contents: list[Content]) -> None:
        """Appends client turns, naming unnamed attachments `input_file_N.ext`, the name under which the
        code finds them in its working directory, so the model and the sandbox agree on it."""
        count = sum(1 for _ in _attachments(self.history))
        self.history.extend(contents)
        for blob in _attachments(contents):
            if not blob.display_name:
                extension = mimetypes.guess_extension(blob.mime_type or "") or ""
                blob.display_name = f"input_file_{count}{extension}"
            count += 1

    def non_blocking(self) -> set[str]:
        """Functions declared `behavior: NON_BLOCKING`: the turn goes on without their results."""
        return {f.name for f in self.functions if f.behavior == "NON_BLOCKING"}

    def set_tools(self, tools: list[Tool]) -> None:
        """Client functions and the code-execution tool; other Gemini tools are not offered."""
        self.functions = [f for t in tools for f in (t.function_declarations or [])]
        self.code_execution = any(t.code_execution is not None for t in tools)


@dataclass(frozen=True)
class TurnLimits:
    code_deadline_s: float = 30.0
    max_code_attempts: int = 5  # failed runs per turn; then the model must answer without code
    max_code_runs: int = 10  # all runs per turn, so a model that keeps writing code still finishes
    max_output_chars: int = 256 * 1024
    max_model_calls: int = 32  # model calls per turn, so a model that keeps calling functions finishes


def new_call_id() -> str:
    """Function call ids in the form the Gemini API uses."""
    return f"function-call-{secrets.randbits(63)}"


def model_message(part: Part) -> ServerMessage:
    return ServerMessage(server_content=ServerContent(model_turn=Content(role="model", parts=[part])))


@dataclass
class TurnUsage:
    """Token counts of one turn, for `usageMetadata` on its `turnComplete` (interrupted turns too) and REST.

    `promptTokenCount` is what the turn's first model call read; `toolUsePromptTokenCount` is how much
    more its later calls read: code, code results and function responses fed back (and the model's own
    words between them). A backend's `Usage` is cumulative within one call, so the latest report of a
    call cut off by an interruption counts as well.
    """

    calls: list[Usage] = field(default_factory=list)
    current: Usage | None = None  # the latest report of the call in progress

    def report(self, usage: Usage) -> None:
        self.current = usage

    def end_call(self) -> None:
        if self.current is not None:
            self.calls.append(self.current)
        self.current = None

    @property
    def response(self) -> int:
        return sum(u.response_tokens for u in self._all())

    def _all(self) -> list[Usage]:
        return [*self.calls, *([self.current] if self.current else [])]

    def metadata(self) -> UsageMetadata:
        calls = self._all()
        prompt = calls[0].prompt_tokens if calls else 0
        tool_use = max((u.prompt_tokens for u in calls), default=0) - prompt
        response = self.response
        return UsageMetadata(
            prompt_token_count=prompt,
            response_token_count=response,
            tool_use_prompt_token_count=tool_use or None,
            total_token_count=prompt + tool_use + response,
            prompt_tokens_details=[ModalityTokenCount(modality="TEXT", token_count=prompt)],
            response_tokens_details=[ModalityTokenCount(modality="TEXT", token_count=response)],
            tool_use_prompt_tokens_details=(
                [ModalityTokenCount(modality="TEXT", token_count=tool_use)] if tool_use else None
            ),
        )


class TurnEngine:
    def __init__(
        self,
        backend: ModelBackend,
        executor: Executor,
        limits: TurnLimits,
        emit: Emit,
        call_functions: CallFunctions,
        metrics: Metrics,
    ) -> None:
        self._metrics = metrics
        self._backend = backend
        self._executor = executor
        self._limits = limits
        self._emit = emit
        self._call_functions = call_functions
        self._started: float | None = None  # the running turn's start, until its first content

    def _content_sent(self) -> None:
        if self._started is not None:
            self._metrics.first_content.observe(time.perf_counter() - self._started)
            self._started = None

    async def run(self, conv: Conversation, usage: TurnUsage | None = None) -> None:
        """Runs one turn to `turnComplete`. Cancelling it leaves what was already sent in the history;
        `usage` (the caller's, so an interrupted turn can report it) collects the turn's token counts."""
        started = self._started = time.perf_counter()
        usage = usage if usage is not None else TurnUsage()
        runs = failed_runs = model_calls = 0
        reason: str | None = None
        while True:
            code_allowed = failed_runs < self._limits.max_code_attempts and runs < self._limits.max_code_runs
            request = ModelRequest(
                model=conv.model,
                history=list(conv.history),
                system_instruction=conv.system_instruction,
                functions=list(conv.functions),
                code_execution=conv.code_execution and code_allowed,
                generation=conv.generation,
            )
            if conv.code_execution and not code_allowed:
                reason = MAX_REGENERATION_REACHED
            # aclosing: the model's stream (an upstream HTTP response) is closed before code runs.
            async with contextlib.aclosing(self._backend.stream(request)) as events:
                action = await self._read_step(conv, events, usage)
            usage.end_call()
            model_calls += 1
            if isinstance(action, CodeCall) and request.code_execution:
                result = await self._run_code(conv, action.code)
                self._metrics.code_runs.labels(outcome=result.outcome.value).inc()
                runs += 1
                failed_runs += result.outcome != Outcome.OK
            elif isinstance(action, FunctionCalls):
                declared = {f.name for f in conv.functions}
                if any(c.name not in declared for c in action.calls):
                    log.info("model called undeclared functions %s", [c.name for c in action.calls])
                    reason = MALFORMED_FUNCTION_CALL
                    break
                calls = [FunctionCall(id=new_call_id(), name=c.name, args=c.args) for c in action.calls]
                _model_content(conv).parts.extend(Part(function_call=c) for c in calls)
                responses = await self._call_functions(calls)  # NON_BLOCKING calls get none here
                if responses:
                    conv.history.append(
                        Content(role="user", parts=[Part(function_response=r) for r in responses])
                    )
            else:
                break
            if model_calls >= self._limits.max_model_calls:
                reason = MAX_REGENERATION_REACHED
                break
        self._metrics.response_tokens.inc(usage.response)
        await self._emit(ServerMessage(server_content=ServerContent(generation_complete=True)))
        await self._emit(
            ServerMessage(
                server_content=ServerContent(turn_complete=True, turn_complete_reason=reason),
                usage_metadata=usage.metadata(),
            )
        )
        self._metrics.turn_duration.observe(time.perf_counter() - started)

    async def _read_step(
        self, conv: Conversation, events: AsyncIterator[ModelEvent], usage: TurnUsage
    ) -> CodeCall | FunctionCalls | None:
        """Streams one model call's text; returns the code or calls it ends with (None: it finished)."""
        async for event in events:
            if isinstance(event, TextDelta) and event.text:
                _append_text(conv, event.text)
                self._content_sent()
                for start in range(0, len(event.text), MAX_TEXT_CHARS):
                    piece = event.text[start : start + MAX_TEXT_CHARS]
                    await self._emit(model_message(Part(text=piece)))
            elif isinstance(event, Usage):
                usage.report(event)
            elif isinstance(event, CodeCall | FunctionCalls):
                return event
            elif isinstance(event, Finish):
                break
        return None

    async def _run_code(self, conv: Conversation, code: str) -> Result:
        call = ExecutableCode(language="PYTHON", code=code)
        _model_content(conv).parts.append(Part(executable_code=call))
        self._content_sent()
        await self._emit(model_message(Part(executable_code=call)))
        job = Job(
            code=code,
            files=_input_files(conv.history),
            deadline_s=self._limits.code_deadline_s,
            host_functions=[f.name for f in conv.functions],
            session=conv.session,
        )
        result = await self._executor.run(job, self._host_call)
        self._metrics.code_execution.observe(result.duration_s)
        self._metrics.sandbox_queue_wait.observe(result.queue_wait_s)
        blobs, notes = _inline_results(result)
        output = _cap(result.output, self._limits.max_output_chars) + notes
        parts = [Part(code_execution_result=CodeExecutionResult(outcome=result.outcome.value, output=output))]
        parts += [Part(inline_data=b) for b in blobs]
        _model_content(conv).parts.extend(parts)
        for part in parts:
            await self._emit(model_message(part))
        log.info("code outcome=%s duration_ms=%.1f", result.outcome.value, result.duration_s * 1000)
        return result

    async def _host_call(self, name: str, args: dict[str, Any]) -> Any:
        """`default_api.<name>(...)` from running code becomes a toolCall to the client; the code gets
        the response, or None at once from a NON_BLOCKING function (its results come later)."""
        responses = await self._call_functions([FunctionCall(id=new_call_id(), name=name, args=args)])
        return (responses[0].response or {}) if responses else None


def _model_content(conv: Conversation) -> Content:
    if not conv.history or conv.history[-1].role != "model":
        conv.history.append(Content(role="model", parts=[]))
    return conv.history[-1]


def _append_text(conv: Conversation, text: str) -> None:
    parts = _model_content(conv).parts
    if parts and parts[-1].text is not None and not parts[-1].thought:
        parts[-1] = Part(text=parts[-1].text + text)
    else:
        parts.append(Part(text=text))


def _cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[output truncated: {len(text) - limit} more characters]\n"


def _attachments(contents: list[Content]) -> Iterator[Blob]:
    """Inline data the user attached, other than audio and video (which are media, not files)."""
    for content in contents:
        if content.role in (None, "user"):
            for part in content.parts:
                blob = part.inline_data
                if blob is not None and not (blob.mime_type or "").startswith(_MEDIA_PREFIXES):
                    yield blob


def _input_files(history: list[Content]) -> list[File]:
    """Files the user attached are placed in the job's scratch dir (a later one wins a name)."""
    mime = "application/octet-stream"
    files = {
        b.display_name: File(name=b.display_name, data=b.data, mime_type=b.mime_type or mime)
        for b in _attachments(history)
        if b.display_name
    }
    return list(files.values())


def _inline_results(result: Result) -> tuple[list[Blob], str]:
    """Figures and written files as inline data, and a note for any too large to send."""
    blobs: list[Blob] = []
    notes = ""
    items: list[tuple[str, str | None, str, bytes]] = [
        (f"figure {i + 1}", None, "image/png", png) for i, png in enumerate(result.images)
    ]
    items += [(f.name, f.name, f.mime_type, f.data) for f in result.files]
    for label, name, mime, data in items:
        if len(data) > MAX_INLINE_BYTES:
            notes += f"\n[{label} omitted: {len(data)} bytes exceeds the message size limit]\n"
        else:
            blobs.append(Blob(mime_type=mime, data=data, display_name=name))
    return blobs, notes
