"""A deterministic model driven by a YAML/JSON script, for tests and for client developers' CI.

The backend is stateless: every request carries the turn so far, so the position in a rule's reply is
recovered from the history (which code and call steps already ran), exactly as a real model would see it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import weakref
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from live.backends.base import (
    CodeCall,
    Finish,
    FunctionCallRequest,
    FunctionCalls,
    ModelEvent,
    ModelRequest,
    TextDelta,
    Usage,
)
from protocol import Content, FunctionResponse, Part

DEFAULT_SCRIPT = Path(__file__).resolve().parent.parent / "data" / "demo_script.yaml"
_TEMPLATE = re.compile(r"\{\{\s*(output|history_output|response|match\.(\d+))\s*\}\}")
_CHUNK = re.compile(r"\s*\S+(?:\s+\S+){0,3}\s*")


class CallSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class Step(BaseModel):
    """One of `text` (streamed in chunks), `code` (run in the sandbox) or `call` (a client function).

    `pace_s` makes a text stream at that many seconds per chunk, like a slow model, so that a client
    can be shown interrupting it.
    """

    model_config = ConfigDict(extra="forbid")
    text: str | None = None
    code: str | None = None
    call: CallSpec | None = None
    pace_s: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        if sum(x is not None for x in (self.text, self.code, self.call)) != 1:
            raise ValueError("a step has exactly one of text, code, call")
        if self.pace_s is not None and self.text is None:
            raise ValueError("pace_s paces a text step")
        return self


class Rule(BaseModel):
    """`match` (a regex) is tried on the user's latest text; `result` names a NON_BLOCKING function whose
    late result started the turn (its reply sees the result as `{{response}}`)."""

    model_config = ConfigDict(extra="forbid")
    match: str | None = None
    result: str | None = None
    reply: list[Step]

    @model_validator(mode="after")
    def _one_trigger(self) -> Rule:
        if (self.match is None) == (self.result is None):
            raise ValueError("a rule has exactly one of match, result")
        re.compile(self.match or "")
        return self


class Script(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[Rule]
    fallback: str = "I have no scripted reply for that."
    context_window: int = Field(32768, ge=1)  # in the scripted model's tokens: words

    @classmethod
    def load(cls, path: Path) -> Script:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        return cls.model_validate(data)


@dataclass(frozen=True)
class _Action:
    """A code or call step that already ran in this turn, as the history shows it."""

    kind: str  # "code" | "call"
    ok: bool = True


@dataclass(frozen=True)
class _TurnView:
    start: int  # index of the latest user text in the history: the turns before it are settled
    user_text: str
    result_of: str | None  # the NON_BLOCKING function whose late result started this turn
    actions: list[_Action]
    output: str  # of the last code result this turn
    response: str  # the last function response this turn, as JSON
    history: Sequence[Content]

    def history_output(self) -> str:
        """The last code result anywhere in the history (earlier turns too); only read when a reply
        asks for it, since it may look back through the whole history."""
        return next(
            (
                (p.code_execution_result.output or "").strip()
                for c in reversed(self.history)
                for p in reversed(c.parts)
                if p.code_execution_result is not None
            ),
            "",
        )


def _view(history: Sequence[Content], non_blocking: set[str]) -> _TurnView:
    """Finds what started the turn, the latest user text or a late NON_BLOCKING result (BLOCKING results
    answer calls within a turn), and what the model has done since."""
    start = 0
    user_text = ""
    result_of = None
    for i in range(len(history) - 1, -1, -1):
        c = history[i]
        if c.role not in (None, "user"):
            continue
        if any(p.function_response is None for p in c.parts):
            start, user_text = i, "".join(p.text or "" for p in c.parts)
            break
        late = [r.name for p in c.parts if (r := p.function_response) is not None and r.name in non_blocking]
        if late:
            start, result_of = i, late[0]
            break
    actions: list[_Action] = []
    output = response = ""
    after = start if result_of is not None else start + 1  # a result is part of what the reply sees
    for c in history[after:]:
        for p in c.parts:
            if p.executable_code is not None:
                actions.append(_Action("code"))
            elif p.code_execution_result is not None:
                ok = p.code_execution_result.outcome == "OUTCOME_OK"
                if actions and actions[-1].kind == "code":
                    actions[-1] = _Action("code", ok)
                output = (p.code_execution_result.output or "").strip()
            elif p.function_call is not None and c.role == "model":
                actions.append(_Action("call"))
            elif p.function_response is not None:
                response = _response_text(p.function_response)
    return _TurnView(start, user_text, result_of, actions, output, response, history)


def _response_text(response: FunctionResponse) -> str:
    """The response as JSON, then any inline parts as `[mime: N bytes]`."""
    blobs = [p.inline_data for p in response.parts or [] if p.inline_data is not None]
    notes = "".join(f" [{b.mime_type}: {len(b.data)} bytes]" for b in blobs)
    return json.dumps(response.response or {}, sort_keys=True) + notes


def _plan(steps: list[Step], actions: list[_Action], code_enabled: bool) -> list[Step]:
    """The steps to emit now: texts not yet streamed, up to and including the next code or call step.

    A failed code step is emitted again (the model regenerates) while code execution is still allowed.
    """
    ai, start = 0, 0
    for idx, step in enumerate(steps):
        if step.code is not None:
            taken: list[_Action] = []
            while ai < len(actions) and actions[ai].kind == "code":
                taken.append(actions[ai])
                ai += 1
                if taken[-1].ok:
                    break
            if not taken:
                if code_enabled:
                    return steps[start : idx + 1]
                continue  # no code tool: the text around it is still said
            if not taken[-1].ok and ai == len(actions) and code_enabled:
                return [step]
            start = idx + 1
        elif step.call is not None:
            if ai < len(actions) and actions[ai].kind == "call":
                ai += 1
                start = idx + 1
            else:
                return steps[start : idx + 1]
    return steps[start:]


def _render(template: str, match: re.Match[str], view: _TurnView) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(1) == "output":
            return view.output
        if m.group(1) == "history_output":
            return view.history_output()
        if m.group(1) == "response":
            return view.response
        group = int(m.group(2))
        return (match.group(group) or "") if group <= (match.re.groups or 0) else ""

    return _TEMPLATE.sub(sub, template)


def _render_args(args: dict[str, Any], match: re.Match[str], view: _TurnView) -> dict[str, Any]:
    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return _render(value, match, view)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    rendered: dict[str, Any] = walk(args)
    return rendered


@functools.lru_cache(maxsize=256)
def _chunks(text: str) -> tuple[tuple[str, int], ...]:
    """A reply's text as streamed (up to four words a chunk), each chunk with its word count. A script's
    replies are few and mostly the same text every time: each is split once."""
    return tuple((chunk, len(chunk.split())) for chunk in _CHUNK.findall(text))


def _words(contents: Sequence[Content]) -> int:
    """The scripted model's token count: words of text, code, code output and function responses."""
    return sum(len(_part_text(p).split()) for c in contents for p in c.parts)


def _part_text(part: Part) -> str:
    if part.executable_code is not None:
        return part.executable_code.code
    if part.code_execution_result is not None:
        return part.code_execution_result.output or ""
    if part.function_response is not None:
        return _response_text(part.function_response)
    return part.text or ""


class _Counted(weakref.ref[Content]):
    """The words of a history up to and including `content` (this weak reference's), while it lives. One
    object per entry (no closure per entry): a session keeps one between turns."""

    __slots__ = ("first", "key", "words")

    def __init__(
        self, content: Content, forget: Callable[[_Counted], None], *, first: Content, words: int
    ) -> None:
        # weakref.ref.__new__ took `content` and `forget`; its __init__ does nothing more.
        self.key = id(content)
        self.first = weakref.ref(first)  # the history's first content then: one cut at the front recounts
        self.words = words


class _PromptWords:
    """Words in a request's history (the scripted model's prompt tokens) without recounting old turns.

    A history grows at its end, so the count up to its last settled content (before the latest user
    text) is remembered while that content lives, and the next request counts only what came after it:
    a turn costs the same however long the session has run.
    """

    def __init__(self) -> None:
        self._counted: dict[int, _Counted] = {}  # id of a content -> its entry (one per live history)
        self._forget_entry = self._forget  # one bound method for every entry's callback

    def count(self, history: Sequence[Content], settled: int) -> int:
        if not history:
            return 0
        first = history[0]
        total = begin = 0
        for i in range(settled - 1, -1, -1):  # one step back per new content, normally
            entry = self._counted.get(id(history[i]))
            if entry is not None and entry() is history[i] and entry.first() is first:
                total, begin = entry.words, i + 1
                if begin == settled:  # counted up to here already (a turn counts twice: window, then reply)
                    return total + _words(history[settled:])
                del self._counted[id(history[i])]
                break
        total += _words(history[begin:settled])
        if settled:
            content = history[settled - 1]
            self._counted[id(content)] = _Counted(content, self._forget_entry, first=first, words=total)
        return total + _words(history[settled:])

    def _forget(self, entry: _Counted) -> None:
        if self._counted.get(entry.key) is entry:
            del self._counted[entry.key]


class ScriptedBackend:
    """Serves every model name (so unchanged Gemini examples work) from one script."""

    structured_output = False  # its replies are fixed text: JSON mode is refused, not faked

    def __init__(self, script: Script, served_name: str = "openlive-scripted") -> None:
        self._script = script
        self._rules = [(re.compile(r.match or "", re.DOTALL), r) for r in script.rules]
        self._served_name = served_name
        self._prompt_words = _PromptWords()

    @classmethod
    def from_file(cls, path: Path | None) -> ScriptedBackend:
        return cls(Script.load(path or DEFAULT_SCRIPT))

    def models(self) -> list[str]:
        return [self._served_name]

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ModelEvent, None]:
        non_blocking = {f.name for f in request.functions if f.behavior == "NON_BLOCKING"}
        view = _view(request.history, non_blocking)
        for pattern, rule in self._rules:
            if rule.result is not None:
                match = pattern.search("") if rule.result == view.result_of else None
            else:
                match = pattern.search(view.user_text) if view.result_of is None else None
            if match:
                steps = _plan(rule.reply, view.actions, request.code_execution)
                break
        else:
            match, steps = None, [Step(text=self._script.fallback)]
        budget = request.generation.max_output_tokens if request.generation else None
        produced = 0
        prompt = self._prompt_words.count(request.history, view.start)
        for step in steps:
            if step.text is not None:
                text = _render(step.text, match, view) if match else step.text
                for i, (chunk, words) in enumerate(_chunks(text)):
                    if step.pace_s and i:
                        await asyncio.sleep(step.pace_s)
                    if budget is not None and produced + words > budget:
                        kept = chunk.split()[: budget - produced]
                        if kept:
                            yield TextDelta(" ".join(kept))
                        yield Usage(prompt, budget)
                        yield Finish("MAX_TOKENS")
                        return
                    yield TextDelta(chunk)
                    produced += words
                    yield Usage(prompt, produced)  # cumulative, so a cut-off stream is counted too
            elif step.code is not None:
                if not request.code_execution:
                    continue
                assert match is not None
                code = _render(step.code, match, view)
                produced += len(code.split())
                if budget is not None and produced > budget:  # a block cut short cannot run
                    yield Usage(prompt, budget)
                    yield Finish("MAX_TOKENS")
                    return
                yield Usage(prompt, produced)
                yield CodeCall(code)
                return
            elif step.call is not None:
                yield Usage(prompt, produced)
                assert match is not None
                args = _render_args(step.call.args, match, view)
                yield FunctionCalls([FunctionCallRequest(step.call.name, args)])
                return
        yield Usage(prompt, produced)
        yield Finish()

    async def count_tokens(self, request: ModelRequest) -> int:
        """The scripted model's tokens are words (whitespace-separated), the system instruction's too."""
        settled = _view(request.history, set()).start  # a start no later than the turn's: still settled
        words = self._prompt_words.count(request.history, settled)
        return words + len((request.system_instruction or "").split())

    def context_window(self) -> int:
        return self._script.context_window

    async def close(self) -> None:
        return None
