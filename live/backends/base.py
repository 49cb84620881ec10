"""The model interface: a backend turns a request into a stream of events and never touches the socket."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Protocol

from protocol import Content, FunctionDeclaration, GenerationConfig


@dataclass(frozen=True)
class ModelRequest:
    model: str
    history: list[Content]  # user/model turns, including executableCode/codeExecutionResult and
    #                         functionCall/functionResponse parts from earlier steps of this turn
    system_instruction: str | None = None
    functions: list[FunctionDeclaration] = field(default_factory=list)
    code_execution: bool = False  # False also once a turn has used up its failed-code attempts
    generation: GenerationConfig | None = None


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class CodeCall:
    """The model wants this Python run; the stream ends here and resumes with a new request."""

    code: str


@dataclass(frozen=True)
class FunctionCallRequest:
    name: str
    args: dict[str, Any]


@dataclass(frozen=True)
class FunctionCalls:
    """The model calls client functions; the stream ends here and resumes after the responses."""

    calls: list[FunctionCallRequest]


@dataclass(frozen=True)
class Usage:
    """Token counts of this model call so far; a stream may report more than once (the latest counts)."""

    prompt_tokens: int
    response_tokens: int


@dataclass(frozen=True)
class Finish:
    reason: str = "STOP"


ModelEvent = TextDelta | CodeCall | FunctionCalls | Usage | Finish


class ModelBackend(Protocol):
    structured_output: bool
    """True when the backend can hold its output to a JSON schema (JSON mode); False: it is refused."""

    def models(self) -> list[str]:
        """Model names this backend serves (without the `models/` prefix)."""
        ...

    def stream(self, request: ModelRequest) -> AsyncGenerator[ModelEvent, None]:
        """Closing the generator (aclose) must stop generation promptly."""
        ...

    async def count_tokens(self, request: ModelRequest) -> int:
        """The prompt's size in the model's tokens: exact where the backend has the tokenizer."""
        ...

    def context_window(self) -> int:
        """The most tokens a prompt and its answer may take together."""
        ...

    async def close(self) -> None: ...
