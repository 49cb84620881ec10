"""The non-live HTTP calls the same SDKs make: generateContent (plain and SSE) and the model list."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .base import WireModel
from .parts import Content
from .setup import GenerationConfig, SystemInstruction, Tool


class GenerateContentRequest(WireModel):
    contents: list[Content] = Field(default_factory=list)
    tools: list[Tool] | None = None
    system_instruction: SystemInstruction = None
    generation_config: GenerationConfig | None = None
    tool_config: dict[str, Any] | None = None
    safety_settings: list[dict[str, Any]] | None = None
    cached_content: str | None = None


class Candidate(WireModel):
    content: Content
    finish_reason: str | None = None
    index: int = 0


class GenerateContentUsage(WireModel):
    """REST names the response side `candidates*`, unlike Live's `response*`."""

    prompt_token_count: int | None = None
    candidates_token_count: int | None = None
    tool_use_prompt_token_count: int | None = None
    total_token_count: int | None = None


class GenerateContentResponse(WireModel):
    candidates: list[Candidate] = Field(default_factory=list)
    usage_metadata: GenerateContentUsage | None = None
    model_version: str | None = None


class ModelInfo(WireModel):
    name: str
    display_name: str | None = None
    supported_generation_methods: list[str] = Field(default_factory=list)


class ModelList(WireModel):
    models: list[ModelInfo] = Field(default_factory=list)


class ErrorBody(WireModel):
    code: int
    message: str
    status: str


class ErrorResponse(WireModel):
    """Google's JSON error envelope, which the SDKs turn into ClientError/ServerError."""

    error: ErrorBody
