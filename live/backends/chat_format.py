"""A ModelRequest as OpenAI-style chat messages and tools: one converter for every chat-template backend.

Two code modes exist because models differ: `tools` offers code execution as the `run_python` function
tool (for models trained on tool calling); `fenced` describes ```python blocks in the system prompt and
replays earlier code and results as plain text, which any instruct model can follow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from live.backends import fenced
from live.backends.base import ModelRequest
from protocol import Content, FunctionDeclaration, GenerationConfig, Part

CodeMode = Literal["fenced", "tools"]
RUN_PYTHON = "run_python"
Message = dict[str, Any]

_OUTCOME_NOTES = {
    "OUTCOME_OK": "Output of the code",
    "OUTCOME_FAILED": "The code failed",
    "OUTCOME_DEADLINE_EXCEEDED": "The code ran out of time; its output so far",
}
_LATER = "(running in the background: its result will come in a later message)"
_INTERRUPTED = "(no result: the run was interrupted)"
# Gemini Schema fields whose JSON Schema spelling differs or that JSON Schema lacks.
_SCHEMA_DROP = frozenset({"propertyOrdering", "example", "nullable"})


@dataclass(frozen=True)
class ChatRequest:
    messages: list[Message]
    tools: list[dict[str, Any]]  # OpenAI function tools; empty means none are offered


def to_chat(request: ModelRequest, mode: CodeMode, system_role: bool = True) -> ChatRequest:
    """`system_role=False` folds the system prompt into the first user message, for templates without one."""
    functions = [function_tool(d) for d in request.functions]
    tools: list[dict[str, Any]] = []
    system = [request.system_instruction] if request.system_instruction else []
    if mode == "tools":
        tools = [*functions, _run_python_tool(request.functions)] if request.code_execution else functions
    else:
        note = fenced.instructions(request.code_execution, functions)
        system += [note] if note else []
    messages = _Messages(mode)
    for content in request.history:
        messages.add(content)
    messages.settle()
    out = messages.out
    if system:
        text = "\n\n".join(system)
        if system_role:
            out.insert(0, {"role": "system", "content": text})
        elif out and out[0]["role"] == "user" and isinstance(out[0].get("content"), str):
            out[0] = {**out[0], "content": f"{text}\n\n{out[0]['content']}"}
        else:
            out.insert(0, {"role": "user", "content": text})
    return ChatRequest(out, tools)


def sampling(generation: GenerationConfig | None) -> dict[str, Any]:
    """The client's sampling options under their OpenAI names; unset ones are left to the model's defaults."""
    if generation is None:
        return {}
    values = {
        "temperature": generation.temperature,
        "top_p": generation.top_p,
        "top_k": None if generation.top_k is None else int(generation.top_k),
        "max_tokens": generation.max_output_tokens,
        "seed": generation.seed,
        "presence_penalty": generation.presence_penalty,
        "frequency_penalty": generation.frequency_penalty,
    }
    return {k: v for k, v in values.items() if v is not None}


def function_tool(declaration: FunctionDeclaration) -> dict[str, Any]:
    if declaration.parameters_json_schema is not None:
        parameters = declaration.parameters_json_schema
    elif declaration.parameters is not None:
        parameters = json_schema(declaration.parameters)
    else:
        parameters = {"type": "object", "properties": {}}
    function: dict[str, Any] = {"name": declaration.name, "parameters": parameters}
    if declaration.description:
        function["description"] = declaration.description
    return {"type": "function", "function": function}


def json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Gemini's OpenAPI-style Schema (UPPERCASE types, `nullable`, either casing) as JSON Schema."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        name = _camel(key)
        if name in _SCHEMA_DROP:
            continue
        if name == "type":
            if value == "TYPE_UNSPECIFIED":
                continue
            out["type"] = value.lower() if isinstance(value, str) else value
        elif name == "properties" and isinstance(value, dict):
            out["properties"] = {k: json_schema(v) for k, v in value.items()}
        elif name == "items" and isinstance(value, dict):
            out["items"] = json_schema(value)
        elif name == "anyOf" and isinstance(value, list):
            out["anyOf"] = [json_schema(v) for v in value]
        else:
            out[name] = value
    if "properties" in out and "type" not in out:
        out["type"] = "object"
    if _camel_get(schema, "nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(word.title() for word in rest)


def _camel_get(schema: dict[str, Any], name: str) -> Any:
    return next((v for k, v in schema.items() if _camel(k) == name), None)


def _run_python_tool(functions: list[FunctionDeclaration]) -> dict[str, Any]:
    description = (
        "Run Python code in a sandbox and get back its printed output (or the error). Use print() to show "
        "values; numpy, sympy and matplotlib are available."
    )
    if functions:
        names = ", ".join(f"{fenced.HOST_MODULE}.{f.name}" for f in functions)
        description += f" The user's functions can be called inside the code with keyword arguments: {names}."
    return {
        "type": "function",
        "function": {
            "name": RUN_PYTHON,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {"code": {"type": "string", "description": "The Python program to run."}},
                "required": ["code"],
            },
        },
    }


class _Messages:
    """Builds the message list part by part: code steps inside a model turn become their own messages."""

    def __init__(self, mode: CodeMode) -> None:
        self.mode = mode
        self.out: list[Message] = []
        self._open_calls: list[tuple[str, str]] = []  # (tool_call id, function name) awaiting a result
        self._count = 0

    def add(self, content: Content) -> None:
        role = "assistant" if content.role == "model" else "user"
        for part in content.parts:
            self._part(role, part)

    def _part(self, role: str, part: Part) -> None:
        if part.text is not None and not part.thought:
            self._text(role, part.text)
        elif part.executable_code is not None:
            code = part.executable_code.code
            if self.mode == "tools":
                self._tool_call(part.executable_code.id, RUN_PYTHON, {"code": code})
            else:
                self._fence(code)
        elif part.code_execution_result is not None:
            result = part.code_execution_result
            note = _OUTCOME_NOTES.get(result.outcome, f"Code outcome {result.outcome}")
            output = result.output if result.output and result.output.strip() else "(no output)\n"
            text = f"{note}:\n```\n{output.removesuffix(chr(10))}\n```"
            self._result(RUN_PYTHON, text)
        elif part.function_call is not None:
            call = part.function_call
            if self.mode == "tools":
                self._tool_call(call.id, call.name, call.args or {})
            else:
                args = ", ".join(f"{k}={v!r}" for k, v in (call.args or {}).items())
                self._fence(f"{fenced.HOST_MODULE}.{call.name}({args})")
        elif part.function_response is not None:
            response = part.function_response
            text = json.dumps(response.response or {}, ensure_ascii=False, default=str)
            for blob in (p.inline_data for p in response.parts or [] if p.inline_data is not None):
                text += f"\n[attached: {blob.mime_type or 'data'}, {len(blob.data)} bytes]"
            if self.mode == "fenced":
                text = f"{fenced.HOST_MODULE}.{response.name} returned: {text}"
            self._result(response.name, text, response.id)
        elif part.inline_data is not None:
            blob = part.inline_data
            name = blob.display_name
            where = f" {name}, in the working directory of your code" if name else ""
            self._note(role, f"[attached{where}: {blob.mime_type or 'data'}, {len(blob.data)} bytes]")
        elif part.file_data is not None:
            data = part.file_data
            name = data.display_name
            where = f" {name}, in the working directory of your code" if name else ""
            self._note(role, f"[attached{where}: {data.mime_type or 'data'}, {data.file_uri}]")

    def _text(self, role: str, text: str) -> None:
        last = self.out[-1] if self.out else None
        if last and last["role"] == role and "tool_calls" not in last and isinstance(last["content"], str):
            sep = "" if role == "assistant" or not last["content"] else "\n\n"
            last["content"] += sep + text
        else:
            self.settle()
            self.out.append({"role": role, "content": text})

    def settle(self) -> None:
        """Answers calls still open where the conversation moves on, as chat APIs require every tool
        call to be followed by its result: a NON_BLOCKING call whose result comes later, or code whose
        run was interrupted."""
        for call_id, name in self._open_calls:
            note = _INTERRUPTED if name == RUN_PYTHON else _LATER
            self.out.append({"role": "tool", "tool_call_id": call_id, "content": note})
        self._open_calls.clear()

    def _note(self, role: str, text: str) -> None:
        """Non-text data is described, not sent; a figure joins the code result it belongs to."""
        last = self.out[-1] if self.out else None
        after_result = role == "assistant" and last is not None and last["role"] in ("tool", "user")
        if last is not None and (last["role"] == role or after_result) and isinstance(last["content"], str):
            last["content"] += f"\n{text}"
        else:
            self._text(role, text)

    def _fence(self, code: str) -> None:
        last = self.out[-1] if self.out else None
        open_line = last and last["role"] == "assistant" and last["content"] and last["content"][-1] != "\n"
        lead = "\n" if open_line else ""
        self._text("assistant", f"{lead}```python\n{code}\n```\n")

    def _tool_call(self, call_id: str | None, name: str, args: dict[str, Any]) -> None:
        self._count += 1
        call_id = call_id or f"call_{self._count}"
        call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
        last = self.out[-1] if self.out else None
        if last and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            # "" rather than null: llama_cpp.server rejects a null content
            self.out.append({"role": "assistant", "content": "", "tool_calls": [call]})
        self._open_calls.append((call_id, name))

    def _result(self, name: str, text: str, call_id: str | None = None) -> None:
        if self.mode == "fenced":
            self._text("user", text)
            return
        match = next((c for c in self._open_calls if c[0] == call_id), None)
        match = match or next((c for c in self._open_calls if c[1] == name), None)
        if match is None:  # a result whose call is not in the history (e.g. cut by context compression)
            self._text("user", text)
            return
        self._open_calls.remove(match)
        self.out.append({"role": "tool", "tool_call_id": match[0], "content": text})
