"""The non-live HTTP calls the same SDKs make: generateContent (plain and SSE) and the model list."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field

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
    version: str | None = None
    display_name: str | None = None
    description: str | None = None
    input_token_limit: int | None = None
    output_token_limit: int | None = None
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


def _int64(value: Any) -> Any:
    """int64 travels as a JSON string, but clients (the SDK's upload) also send a number."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class FileResource(WireModel):
    """The Files API `File`: int64 sizes as strings and RFC 3339 times, as protobuf JSON writes them."""

    name: str | None = None
    display_name: str | None = None
    mime_type: str | None = None
    size_bytes: Annotated[str | None, BeforeValidator(_int64)] = None
    create_time: str | None = None
    update_time: str | None = None
    expiration_time: str | None = None
    sha256_hash: str | None = None
    uri: str | None = None
    state: str | None = None
    source: str | None = None


class CreateFileRequest(WireModel):
    """The body of an upload's `start` request (`client.files.upload` sends the metadata it knows)."""

    file: FileResource | None = None


class CreateFileResponse(WireModel):
    file: FileResource


class ListFilesResponse(WireModel):
    files: list[FileResource] = Field(default_factory=list)
    next_page_token: str | None = None


class CountTokensRequest(WireModel):
    """Either `contents` or a whole `generateContentRequest` (whose tools and system text count too)."""

    contents: list[Content] | None = None
    generate_content_request: GenerateContentRequest | None = None


class CountTokensResponse(WireModel):
    total_tokens: int
    cached_content_token_count: int | None = None
