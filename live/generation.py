"""Generation config: every field is honoured or refused by name, never dropped.

`check` runs before a REST turn or a Live session starts. What it lets through is carried out: sampling
by the backends, `maxOutputTokens` as a budget for the whole turn and `stopSequences` by the turn engine,
`responseMimeType: application/json` with a schema by the backend's constrained decoding (a llama.cpp
grammar, an upstream's `response_format`).
"""

from __future__ import annotations

from typing import Any

from live.backends.chat_format import json_schema
from protocol import GenerationConfig

JSON = "application/json"
MAX_STOP_SEQUENCES = 5  # Google's limit
# Fields the backends and the engine carry out (others are refused by name).
_HONOURED = frozenset({
    "temperature", "top_p", "top_k", "max_output_tokens", "seed", "presence_penalty", "frequency_penalty",
    "stop_sequences", "candidate_count", "response_mime_type", "response_schema", "response_json_schema",
})  # fmt: skip
# Live's own fields: the session (speech, modalities) decides about them, REST refuses what it cannot do.
_LIVE_FIELDS = frozenset({
    "response_modalities", "speech_config", "media_resolution", "thinking_config", "enable_affective_dialog",
    "translation_config",
})  # fmt: skip


class Unsupported(ValueError):
    """A configuration this server cannot honour; the message names the field."""


def check(config: GenerationConfig | None, *, structured_output: bool, tools: bool, live: bool) -> None:
    """Raises Unsupported naming the first field that cannot be honoured as asked."""
    if config is None:
        return
    for name in config.model_fields_set - _HONOURED - (_LIVE_FIELDS if live else frozenset()):
        if not _harmless(config, name):
            raise Unsupported(f"generationConfig.{_camel(name)} is not supported by this server.")
    if config.candidate_count is not None and config.candidate_count != 1:
        raise Unsupported("generationConfig.candidateCount: only 1 candidate is supported.")
    if config.stop_sequences is not None and len(config.stop_sequences) > MAX_STOP_SEQUENCES:
        raise Unsupported(f"generationConfig.stopSequences: at most {MAX_STOP_SEQUENCES} are allowed.")
    if config.max_output_tokens is not None and config.max_output_tokens < 1:
        raise Unsupported("generationConfig.maxOutputTokens must be positive.")
    mime = config.response_mime_type
    if mime not in (None, "text/plain", JSON):
        raise Unsupported(
            f"generationConfig.responseMimeType {mime!r} is not supported: "
            "use text/plain or application/json."
        )
    schema = config.response_schema is not None or config.response_json_schema is not None
    if config.response_schema is not None and config.response_json_schema is not None:
        raise Unsupported("generationConfig: set responseSchema or responseJsonSchema, not both.")
    if schema and mime != JSON:
        raise Unsupported("generationConfig.responseSchema requires responseMimeType application/json.")
    if mime == JSON and tools:
        raise Unsupported("Function calling with a response mime type: 'application/json' is unsupported")
    if mime == JSON and not structured_output:
        raise Unsupported(
            "generationConfig.responseMimeType application/json is not supported by this model "
            "(it cannot constrain its output)."
        )


def _harmless(config: GenerationConfig, name: str) -> bool:
    """REST fields whose value asks for nothing beyond what a text model does anyway."""
    value = getattr(config, name)
    if name == "response_modalities":
        return all(m.upper() == "TEXT" for m in value or [])
    if name == "thinking_config":
        return not value.include_thoughts and value.thinking_budget in (None, 0)
    return False


def output_schema(config: GenerationConfig | None) -> dict[str, Any] | None:
    """The JSON Schema the output must follow in JSON mode ({} for any JSON value); None outside it."""
    if config is None or config.response_mime_type != JSON:
        return None
    if config.response_json_schema is not None:
        return dict(config.response_json_schema)
    if config.response_schema is not None:
        return json_schema(config.response_schema)
    return {}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)
