"""The fenced code mode: models without tool calling run code by writing ```python blocks.

The stream is parsed as it arrives. Text is released as soon as it cannot be the start of a fence, so
streaming stays live, and a runnable block is complete at its closing fence line, so the backend can stop
generation there instead of letting the model invent the output.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from typing import Any

from live.backends.base import CodeCall, FunctionCallRequest, FunctionCalls, ModelEvent, TextDelta

FENCE = "```"
RUNNABLE = frozenset({"python", "py", "python3"})
HOST_MODULE = "default_api"


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Code:
    """A closed (or, at end of stream, unclosed) python block; `source` is its raw text, fences included."""

    code: str
    source: str


class FenceParser:
    """Splits streamed Markdown into text and python blocks; other fences (```text) stay text.

    Follows CommonMark where it matters: fences start a line (after optional indentation), the info
    string's first word is the language, a block left open at end of stream runs to the end.
    """

    def __init__(self) -> None:
        self._pending = ""  # input not yet classified: at most the current, incomplete line
        self._line_start = True
        self._mode = "text"  # "text" | "code" (a runnable block) | "other" (a non-runnable fence)
        self._indent = 0
        self._code: list[str] = []
        self._source: list[str] = []

    def feed(self, delta: str) -> list[Text | Code]:
        self._pending += delta
        out: list[Text | Code] = []
        while self._pending:
            if not self._line_start:
                self._emit_through_newline(out)
                continue
            line, newline, _ = self._pending.partition("\n")
            stripped = line.lstrip(" \t")
            if not newline and len(stripped) < len(FENCE) and FENCE.startswith(stripped):
                break  # may still become a fence: wait for more input
            if self._mode == "code":
                if stripped.startswith(FENCE):  # the closing fence: the block ends at its backticks
                    end = len(line) - len(stripped.lstrip("`"))
                    self._source.append(self._pending[:end])
                    self._pending = self._pending[end:]
                    out.append(self._close_block())
                    self._line_start = False  # the rest of the fence line is text
                    continue
                self._emit_through_newline(out)
                continue
            if stripped.startswith(FENCE):
                if not newline:
                    break  # the info string is not complete yet
                self._fence_line(line, stripped, out)
                continue
            self._emit_through_newline(out)
        return _merged(out)

    def finish(self) -> list[Text | Code]:
        """Ends the stream: held text is released and an unclosed python block is complete."""
        out: list[Text | Code] = []
        if self._mode == "code":
            self._source.append(self._pending)  # held back only as a possible closing fence: not code
            out.append(self._close_block())
        elif self._pending:
            out.append(Text(self._pending))
        self._pending = ""
        return out

    def _fence_line(self, line: str, stripped: str, out: list[Text | Code]) -> None:
        info = stripped.lstrip("`").strip()
        language = info.split(maxsplit=1)[0].lower() if info else ""
        full = line + "\n"
        self._pending = self._pending[len(full) :]
        if self._mode == "other":
            if not info:
                self._mode = "text"
            out.append(Text(full))
        elif language in RUNNABLE:
            self._mode = "code"
            self._indent = len(line) - len(stripped)
            self._code, self._source = [], [full]
        else:
            self._mode = "other"
            out.append(Text(full))

    def _emit_through_newline(self, out: list[Text | Code]) -> None:
        line, newline, rest = self._pending.partition("\n")
        chunk = line + newline
        self._pending = rest
        self._line_start = bool(newline)
        if self._mode == "code":
            self._code.append(self._dedent(chunk) if self._at_code_line_start() else chunk)
            self._source.append(chunk)
        else:
            out.append(Text(chunk))

    def _at_code_line_start(self) -> bool:
        return not self._code or self._code[-1].endswith("\n")

    def _dedent(self, chunk: str) -> str:
        """Removes the opening fence's indentation from a code line, as CommonMark does."""
        drop = len(chunk) - len(chunk.lstrip(" "))
        return chunk[min(drop, self._indent) :]

    def _close_block(self) -> Text | Code:
        """The finished block; an empty one is nothing to run, so it stays text."""
        code = "".join(self._code).removesuffix("\n")
        source = "".join(self._source)
        self._mode, self._line_start = "text", True
        self._code, self._source = [], []
        return Code(code, source) if code.strip() else Text(source)


def _merged(items: list[Text | Code]) -> list[Text | Code]:
    out: list[Text | Code] = []
    for item in items:
        if isinstance(item, Text) and out and isinstance(out[-1], Text):
            out[-1] = Text(out[-1].text + item.text)
        elif not (isinstance(item, Text) and not item.text):
            out.append(item)
    return out


class FencedStream:
    """Turns a model's text stream into events; a CodeCall or FunctionCalls event means: stop generating.

    With code execution on, every python block runs (client functions are reachable from the code as
    `default_api.<name>(...)`). With it off, a block made only of such calls is a direct function call,
    and any other block is plain text.
    """

    def __init__(self, code_execution: bool, function_names: set[str]) -> None:
        self._parser = FenceParser()
        self._code_execution = code_execution
        self._names = function_names

    def feed(self, delta: str) -> list[ModelEvent]:
        return self._events(self._parser.feed(delta))

    def finish(self) -> list[ModelEvent]:
        return self._events(self._parser.finish())

    def _events(self, items: list[Text | Code]) -> list[ModelEvent]:
        out: list[ModelEvent] = []
        for item in items:
            if isinstance(item, Text):
                out.append(TextDelta(item.text))
                continue
            if self._code_execution:
                out.append(CodeCall(item.code))
                return out
            calls = direct_calls(item.code, self._names)
            if calls:
                out.append(FunctionCalls(calls))
                return out
            out.append(TextDelta(item.source))
        return out


def direct_calls(code: str, names: set[str]) -> list[FunctionCallRequest] | None:
    """`default_api.f(a=1)` statements (also inside print) as calls; None if the code is anything else."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    calls: list[FunctionCallRequest] = []
    for stmt in tree.body:
        if not isinstance(stmt, ast.Expr) or not isinstance(stmt.value, ast.Call):
            return None
        call = stmt.value
        if _is_name(call.func, "print") and len(call.args) == 1 and isinstance(call.args[0], ast.Call):
            call = call.args[0]
        func = call.func
        if not (isinstance(func, ast.Attribute) and _is_name(func.value, HOST_MODULE) and func.attr in names):
            return None
        if call.args or any(kw.arg is None for kw in call.keywords):
            return None
        try:
            args = {str(kw.arg): ast.literal_eval(kw.value) for kw in call.keywords}
        except ValueError:
            return None
        calls.append(FunctionCallRequest(func.attr, args))
    return calls or None


def _is_name(node: ast.expr, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def instructions(code_execution: bool, tools: list[dict[str, Any]]) -> str | None:
    """The system-prompt text that teaches a model the fenced mode; `tools` are OpenAI function tools."""
    signatures = "\n".join(_signature(t["function"]) for t in tools)
    if code_execution:
        text = (
            "You can run Python code. To run code, write a block that starts with a line ```python and ends "
            "with a line ```. The block runs as soon as it is closed and you are then shown its output, so "
            "do not write the output yourself. Use print() to show values. After seeing the output, continue "
            "your answer. If the code fails, fix it and try again."
        )
        if signatures:
            text += (
                f"\n\nInside the code you can call these functions as {HOST_MODULE}.<name>(...) with keyword "
                f"arguments; each returns a dict:\n{signatures}"
            )
        return text
    if signatures:
        return (
            f"You can call these functions:\n{signatures}\n\nTo call one, reply with a python block that "
            f"contains only the call, for example:\n```python\n{_example_call(tools[0]['function'])}\n```\n"
            "You are then shown its result."
        )
    return None


def _example_call(function: dict[str, Any]) -> str:
    props: dict[str, Any] = (function.get("parameters") or {}).get("properties") or {}
    args = ", ".join(f'{name}="..."' for name in list(props)[:2])
    return f"{HOST_MODULE}.{function['name']}({args})"


def _signature(function: dict[str, Any]) -> str:
    params = function.get("parameters") or {}
    props: dict[str, Any] = params.get("properties") or {}
    args = ", ".join(f"{name}: {_type_name(schema)}" for name, schema in props.items())
    line = f"- {HOST_MODULE}.{function['name']}({args})"
    if function.get("description"):
        line += f": {function['description']}"
    return line


def _type_name(schema: Any) -> str:
    kind = schema.get("type", "any") if isinstance(schema, dict) else "any"
    return kind if isinstance(kind, str) else json.dumps(kind)
