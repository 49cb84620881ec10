"""Messages a client sends after (and including) ``setup``."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from .base import WireModel
from .parts import Blob, Content, FunctionResponse
from .setup import Setup, SystemInstruction, Tool


class ClientContent(WireModel):
    """Turns appended to history; ``turnComplete`` starts generation.

    The SDK may omit ``role``; the API treats such turns as the user's.
    """

    turns: list[Content] = Field(default_factory=list)
    turn_complete: bool = False

    @model_validator(mode="after")
    def _default_role(self) -> ClientContent:
        for turn in self.turns:
            if turn.role is None:
                turn.role = "user"
        return self


class RealtimeInput(WireModel):
    """Streaming input; the SDK sets exactly one field per message."""

    audio: Blob | None = None
    video: Blob | None = None
    text: str | None = None
    media_chunks: list[Blob] | None = None
    audio_stream_end: bool | None = None
    activity_start: dict[str, Any] | None = None
    activity_end: dict[str, Any] | None = None


class ToolResponse(WireModel):
    """Results for earlier ``toolCall`` function calls, matched by id."""

    function_responses: list[FunctionResponse] = Field(default_factory=list)


class ToolsUpdate(WireModel):
    """Wrapper so ``{"tools": []}`` (clear all) differs from absent (no change)."""

    tools: list[Tool] = Field(default_factory=list)
    bare_list_of: ClassVar[str] = "tools"  # a bare list means this field (see ContextUpdate)


class ContextUpdate(WireModel):
    """Mid-session change of system instruction and/or tools (SDK 3.4.0)."""

    system_instruction: SystemInstruction = None
    tools: ToolsUpdate | None = None

    @field_validator("tools", mode="before")
    @classmethod
    def _wrap_tool_list(cls, value: Any) -> Any:
        # A bare list is what a raw client is likely to send; mean the same thing.
        return {"tools": value} if isinstance(value, list) else value


class ClientMessage(WireModel):
    """One client frame: exactly one of the five fields is set."""

    setup: Setup | None = None
    client_content: ClientContent | None = None
    realtime_input: RealtimeInput | None = None
    tool_response: ToolResponse | None = None
    context_update: ContextUpdate | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ClientMessage:
        values = list(self.__dict__.values())  # the fields' values (no extras are kept)
        count = len(values) - values.count(None)
        if count != 1:
            raise ValueError(f"exactly one message field must be set, got {count}")
        return self

    @property
    def kind(self) -> str:
        """Python name of the field that is set, for dispatch ("setup", "client_content", ...)."""
        return next(name for name in type(self).model_fields if getattr(self, name) is not None)
