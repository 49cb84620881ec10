"""Content and its parts: the payload shared by client turns and model output."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from .base import Base64Bytes, WireModel

SCHEDULING_VALUES = frozenset({"SCHEDULING_UNSPECIFIED", "SILENT", "WHEN_IDLE", "INTERRUPT"})
"""FunctionResponse.scheduling values; used to spot the docs' in-``response`` form."""


class Blob(WireModel):
    """Inline bytes: client audio/images in, model audio and plots out."""

    mime_type: str | None = None
    data: Base64Bytes = b""
    display_name: str | None = None


class FileData(WireModel):
    """A file referenced by URI rather than sent inline."""

    mime_type: str | None = None
    file_uri: str | None = None
    display_name: str | None = None


class ExecutableCode(WireModel):
    """Code the model wants run by the code-execution tool."""

    language: str = "PYTHON"
    code: str = ""
    id: str | None = None


class CodeExecutionResult(WireModel):
    """Outcome of an ExecutableCode run (OUTCOME_OK / _FAILED / _DEADLINE_EXCEEDED)."""

    outcome: str = "OUTCOME_OK"
    output: str | None = None
    id: str | None = None


class FunctionCall(WireModel):
    """A call to a client-declared function; ``args`` is kept verbatim."""

    id: str | None = None
    name: str = ""
    args: dict[str, Any] | None = None


class FunctionResponsePart(WireModel):
    """Multimodal piece of a function result (SDK ``FunctionResponsePart``)."""

    inline_data: Blob | None = None
    file_data: FileData | None = None


class FunctionResponse(WireModel):
    """The client's result for a FunctionCall, matched by ``id``.

    The docs put ``scheduling`` inside ``response`` while the SDK sends it as a
    field of its own; both are accepted and end up in ``scheduling``.
    """

    id: str | None = None
    name: str = ""
    response: dict[str, Any] | None = None
    scheduling: str | None = None
    will_continue: bool | None = None
    parts: list[FunctionResponsePart] | None = None

    @model_validator(mode="before")
    @classmethod
    def _lift_scheduling(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        response = data.get("response")
        if not isinstance(response, dict) or response.get("scheduling") not in SCHEDULING_VALUES:
            return data
        data = dict(data)
        response = dict(response)
        inner = response.pop("scheduling")
        data["response"] = response
        if data.get("scheduling") is None:
            data["scheduling"] = inner
        return data


class Part(WireModel):
    """One part of a Content; exactly one payload field is normally set."""

    text: str | None = None
    thought: bool | None = None
    thought_signature: Base64Bytes | None = None
    inline_data: Blob | None = None
    file_data: FileData | None = None
    executable_code: ExecutableCode | None = None
    code_execution_result: CodeExecutionResult | None = None
    function_call: FunctionCall | None = None
    function_response: FunctionResponse | None = None


class Content(WireModel):
    """A turn: a role ("user" / "model") and its parts."""

    role: str | None = None
    parts: list[Part] = Field(default_factory=list)

    def text(self) -> str | None:
        """The non-thought text parts joined by newlines, or None if there are none."""
        texts = [p.text for p in self.parts if p.text is not None and not p.thought]
        return "\n".join(texts) if texts else None
