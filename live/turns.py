"""One model turn: stream model output, run code in the sandbox, call client functions, loop until done.

The engine only appends to the conversation and emits server messages; the session owns the socket,
pending function calls and interruption (it cancels the task running `TurnEngine.run`).
"""

from __future__ import annotations

import logging
import mimetypes
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from live import tracing
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
    GENERATION_COMPLETE,
    Blob,
    CodeExecutionResult,
    Content,
    ExecutableCode,
    FileData,
    FunctionCall,
    FunctionDeclaration,
    FunctionResponse,
    GenerationConfig,
    ModelText,
    Outbound,
    Part,
    ServerContent,
    ServerMessage,
    Tool,
    UsageMetadata,
)
from sandbox import Executor, File, Job, Outcome, Result

log = logging.getLogger("openlive.turns")


class FileReader(Protocol):
    """Where `fileData` parts' bytes come from (the Files API store, as the caller may see it)."""

    async def read(self, uri: str) -> bytes | None:
        """The file's bytes; None when it has gone (deleted or expired) since it was attached."""
        ...


Emit = Callable[[Outbound], Awaitable[None]]
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
    attachments_added: int = 0  # counted as they come, so adding a turn costs the same at any length
    files: FileReader | None = None  # resolves `fileData` parts; None: only inline data reaches code

    def add(self, contents: list[Content]) -> None:
        """Appends client turns, naming unnamed attachments `input_file_N.ext`, the name under which the
        code finds them in its working directory, so the model and the sandbox agree on it."""
        self.history.extend(contents)
        for item in _attachments(contents):
            if not item.display_name:
                extension = mimetypes.guess_extension(item.mime_type or "") or ""
                item.display_name = f"input_file_{self.attachments_added}{extension}"
            self.attachments_added += 1

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

    @property
    def prompt(self) -> int:
        """What the turn's first model call read."""
        first = self.calls[0] if self.calls else self.current
        return first.prompt_tokens if first else 0

    def _all(self) -> list[Usage]:
        return [*self.calls, *([self.current] if self.current else [])]

    def metadata(self) -> UsageMetadata:
        prompt = self.prompt
        tool_use = max((u.prompt_tokens for u in self._all()), default=0) - prompt
        response = self.response
        counts: dict[str, Any] = {
            "prompt_token_count": prompt,
            "response_token_count": response,
            "total_token_count": prompt + tool_use + response,
            "prompt_tokens_details": [{"modality": "TEXT", "token_count": prompt}],
            "response_tokens_details": [{"modality": "TEXT", "token_count": response}],
        }
        if tool_use:
            counts["tool_use_prompt_token_count"] = tool_use
            counts["tool_use_prompt_tokens_details"] = [{"modality": "TEXT", "token_count": tool_use}]
        return UsageMetadata.model_validate(counts)  # one validation for the three models: once a turn


class _StopSequences:
    """Cuts streamed text at the first stop sequence; text that may begin one is held back until it can't."""

    def __init__(self, sequences: list[str]) -> None:
        self._sequences = [s for s in sequences if s]
        self._held = ""
        self.stopped = False
        self.active = bool(self._sequences)  # False: `feed` hands every text back unchanged

    def feed(self, text: str) -> str:
        if not self._sequences:
            return text
        text = self._held + text
        cut = min((i for i in (text.find(s) for s in self._sequences) if i >= 0), default=-1)
        if cut >= 0:
            self._held, self.stopped = "", True
            return text[:cut]
        keep = max((n for s in self._sequences for n in range(1, len(s)) if text.endswith(s[:n])), default=0)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held


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

    async def run(self, conv: Conversation, usage: TurnUsage | None = None) -> str:
        """Runs one turn to `turnComplete`; returns Gemini's finishReason for it (STOP, MAX_TOKENS,
        MALFORMED_FUNCTION_CALL, ...). Cancelling it leaves what was already sent in the history;
        `usage` (the caller's, so an interrupted turn can report it) collects the turn's token counts.

        `maxOutputTokens` is the whole turn's budget (each model call gets what is left) and
        `stopSequences` end the turn where its text reaches one, as Gemini applies them to a response.
        """
        usage = usage if usage is not None else TurnUsage()
        with tracing.turn(conv.model) as span:
            finish = await self._run(conv, usage)
            span.set_attribute("gen_ai.response.finish_reasons", finish)
            span.set_attribute("gen_ai.usage.input_tokens", usage.prompt)
            span.set_attribute("gen_ai.usage.output_tokens", usage.response)
            return finish

    async def _run(self, conv: Conversation, usage: TurnUsage) -> str:
        started = self._started = time.perf_counter()
        runs = failed_runs = model_calls = 0
        reason: str | None = None
        generation = conv.generation
        budget = generation.max_output_tokens if generation else None
        stops = _StopSequences((generation.stop_sequences or []) if generation else [])
        finish = "STOP"
        while True:
            if budget is not None and usage.response >= budget:
                finish = "MAX_TOKENS"
                break
            code_allowed = failed_runs < self._limits.max_code_attempts and runs < self._limits.max_code_runs
            step_generation = generation
            if generation is not None and budget is not None:
                step_generation = generation.model_copy(update={"max_output_tokens": budget - usage.response})
            request = ModelRequest(
                model=conv.model,
                history=list(conv.history),
                system_instruction=conv.system_instruction,
                functions=list(conv.functions),
                code_execution=conv.code_execution and code_allowed,
                generation=step_generation,
            )
            if conv.code_execution and not code_allowed:
                reason = MAX_REGENERATION_REACHED
            # The model's stream (an upstream HTTP response) is closed before code runs (what
            # `contextlib.aclosing` does, without its two coroutines a call).
            with tracing.model_call(conv.model):
                events = self._backend.stream(request)
                try:
                    action = await self._read_step(conv, events, usage, stops)
                finally:
                    await events.aclose()
            await self._text(conv, stops.flush())
            usage.end_call()
            model_calls += 1
            if stops.stopped:
                break
            if isinstance(action, CodeCall) and request.code_execution:
                result = await self._run_code(conv, action.code)
                self._metrics.code_runs.labels(outcome=result.outcome.value).inc()
                runs += 1
                failed_runs += result.outcome != Outcome.OK
            elif isinstance(action, FunctionCalls):
                declared = {f.name for f in conv.functions}
                if any(c.name not in declared for c in action.calls):
                    log.info("model called undeclared functions %s", [c.name for c in action.calls])
                    reason = finish = MALFORMED_FUNCTION_CALL
                    break
                calls = [FunctionCall(id=new_call_id(), name=c.name, args=c.args) for c in action.calls]
                _model_content(conv).parts.extend(Part(function_call=c) for c in calls)
                responses = await self._call_functions(calls)  # NON_BLOCKING calls get none here
                if responses:
                    conv.history.append(
                        Content(role="user", parts=[Part(function_response=r) for r in responses])
                    )
            else:
                finish = action.reason if isinstance(action, Finish) else "STOP"
                break
            if model_calls >= self._limits.max_model_calls:
                reason = MAX_REGENERATION_REACHED
                break
        self._metrics.response_tokens.inc(usage.response)
        await self._emit(GENERATION_COMPLETE)
        await self._emit(
            ServerMessage(
                server_content=ServerContent(turn_complete=True, turn_complete_reason=reason),
                usage_metadata=usage.metadata(),
            )
        )
        self._metrics.turn_duration.observe(time.perf_counter() - started)
        return finish

    async def _read_step(
        self, conv: Conversation, events: AsyncIterator[ModelEvent], usage: TurnUsage, stops: _StopSequences
    ) -> CodeCall | FunctionCalls | Finish | None:
        """Streams one model call's text; returns the code, calls or finish it ends with (None: no Finish,
        or the text reached a stop sequence, where closing the stream stops generation)."""
        feed = stops.feed if stops.active else None
        async for event in events:
            if type(event) is TextDelta:  # the event of every token, so the first and cheapest test
                text = event.text if feed is None else feed(event.text)
                if text:
                    await self._text(conv, text)
                if stops.stopped:
                    return None
            elif type(event) is Usage:
                usage.report(event)
            elif isinstance(event, CodeCall | FunctionCalls | Finish):
                return event
        return None

    async def _text(self, conv: Conversation, text: str) -> None:
        if not text:
            return
        _append_text(conv, text)
        if self._started is not None:
            self._content_sent()
        if len(text) <= MAX_TEXT_CHARS:
            await self._emit(ModelText(text))
            return
        for start in range(0, len(text), MAX_TEXT_CHARS):
            await self._emit(ModelText(text[start : start + MAX_TEXT_CHARS]))

    async def _run_code(self, conv: Conversation, code: str) -> Result:
        call = ExecutableCode(language="PYTHON", code=code)
        _model_content(conv).parts.append(Part(executable_code=call))
        self._content_sent()
        await self._emit(model_message(Part(executable_code=call)))
        job = Job(
            code=code,
            files=await _input_files(conv),
            deadline_s=self._limits.code_deadline_s,
            host_functions=[f.name for f in conv.functions],
            session=conv.session,
        )
        with tracing.code_execution() as span:
            result = await self._executor.run(job, self._host_call)
            span.set_attribute("openlive.code.outcome", result.outcome.value)
            span.set_attribute("openlive.sandbox.queue_wait_s", result.queue_wait_s)
            if result.worker:
                span.set_attribute("openlive.sandbox.worker", result.worker)
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
    last = parts[-1] if parts else None
    if last is not None and last.text is not None and not last.thought:
        # This turn's own part, shared with nothing: no new model per delta. Its `text` is set already
        # (in its fields set), so the value is replaced in place, as pydantic's own assignment does.
        last.__dict__["text"] = last.text + text
    else:
        parts.append(Part(text=text))


def _cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[output truncated: {len(text) - limit} more characters]\n"


def _attachments(contents: list[Content]) -> Iterator[Blob | FileData]:
    """Files the user attached, inline or by URI, other than audio and video (media, not files)."""
    for content in contents:
        if content.role in (None, "user"):
            for part in content.parts:
                item = part.inline_data or part.file_data
                if item is not None and not (item.mime_type or "").startswith(_MEDIA_PREFIXES):
                    yield item


async def _input_files(conv: Conversation) -> list[File]:
    """Files the user attached are placed in the job's scratch dir (a later one wins a name)."""
    mime = "application/octet-stream"
    files: dict[str, File] = {}
    for item in _attachments(conv.history):
        if not item.display_name:
            continue
        if isinstance(item, Blob):
            data: bytes | None = item.data
        else:
            data = await conv.files.read(item.file_uri) if conv.files and item.file_uri else None
        if data is not None:
            files[item.display_name] = File(
                name=item.display_name, data=data, mime_type=item.mime_type or mime
            )
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
