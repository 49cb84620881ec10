"""Messages the server sends. Only the nine top-level keys the SDK knows exist here,
because any other top-level key makes the SDK raise or crash (protocol.md §4.8)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator

from .base import WireModel
from .parts import Content, FunctionCall, Part


def duration(seconds: float) -> str:
    """A proto Duration in JSON form: ``50`` -> ``"50s"``, ``9.5`` -> ``"9.5s"``."""
    if not math.isfinite(seconds):
        raise ValueError(f"duration must be finite, got {seconds!r}")
    nanos = round(abs(seconds) * 1_000_000_000)
    whole, frac = divmod(nanos, 1_000_000_000)
    sign = "-" if seconds < 0 and nanos else ""
    fraction = f".{frac:09d}".rstrip("0") if frac else ""
    return f"{sign}{whole}{fraction}s"


def _int_to_str(value: Any) -> Any:
    # int64 fields are strings in proto JSON; let callers pass a plain int.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class SetupComplete(WireModel):
    """Handshake reply; ``{}`` is the normal form. ``sessionId`` feeds SDK ``session.session_id``."""

    session_id: str | None = None


class Transcription(WireModel):
    text: str | None = None
    finished: bool | None = None
    language_code: str | None = None


class ServerContent(WireModel):
    """Model output and turn signals (modelTurn, generationComplete, turnComplete, ...)."""

    model_turn: Content | None = None
    generation_complete: bool | None = None
    turn_complete: bool | None = None
    interrupted: bool | None = None
    grounding_metadata: dict[str, Any] | None = None
    url_context_metadata: dict[str, Any] | None = None
    input_transcription: Transcription | None = None
    output_transcription: Transcription | None = None
    interim_input_transcription: Transcription | None = None
    turn_complete_reason: str | None = None
    waiting_for_input: bool | None = None


class ToolCall(WireModel):
    """Function calls the client must answer with a ``toolResponse``."""

    function_calls: list[FunctionCall]


class ToolCallCancellation(WireModel):
    """Ids of calls that should not have been executed (sent on interruption)."""

    ids: list[str]


class GoAway(WireModel):
    """Notice that the connection ends soon; ``time_left`` is a Duration string (see ``duration``)."""

    time_left: str


class SessionResumptionUpdate(WireModel):
    new_handle: str | None = None
    resumable: bool | None = None
    last_consumed_client_message_index: Annotated[str | None, BeforeValidator(_int_to_str)] = None


class ModalityTokenCount(WireModel):
    modality: str
    token_count: int


class UsageMetadata(WireModel):
    """Token counts. Gemini API uses ``responseTokenCount``, not ``candidatesTokenCount``."""

    prompt_token_count: int | None = None
    cached_content_token_count: int | None = None
    response_token_count: int | None = None
    tool_use_prompt_token_count: int | None = None
    thoughts_token_count: int | None = None
    total_token_count: int | None = None
    prompt_tokens_details: list[ModalityTokenCount] | None = None
    cache_tokens_details: list[ModalityTokenCount] | None = None
    response_tokens_details: list[ModalityTokenCount] | None = None
    tool_use_prompt_tokens_details: list[ModalityTokenCount] | None = None


class VoiceActivity(WireModel):
    """``type`` is ACTIVITY_START or ACTIVITY_END; ``audio_offset`` a Duration string."""

    type: str
    audio_offset: str | None = None


class VoiceActivityDetectionSignal(WireModel):
    vad_signal_type: str


class ServerMessage(WireModel):
    """One server frame. Normally one field, optionally plus ``usage_metadata``."""

    setup_complete: SetupComplete | None = None
    server_content: ServerContent | None = None
    tool_call: ToolCall | None = None
    tool_call_cancellation: ToolCallCancellation | None = None
    usage_metadata: UsageMetadata | None = None
    go_away: GoAway | None = None
    session_resumption_update: SessionResumptionUpdate | None = None
    voice_activity: VoiceActivity | None = None
    voice_activity_detection_signal: VoiceActivityDetectionSignal | None = None


@dataclass(frozen=True, slots=True)
class ModelText:
    """A model text delta on its way out: the message `serverContent.modelTurn` with one text part.

    Streaming sends one per token or word, so it skips building four validated models per delta;
    `dump_server_message` writes exactly the bytes of `message()` (tests/test_protocol_fuzz.py checks it).
    """

    text: str

    def message(self) -> ServerMessage:
        return ServerMessage(
            server_content=ServerContent(model_turn=Content(role="model", parts=[Part(text=self.text)]))
        )


GENERATION_COMPLETE = ServerMessage(server_content=ServerContent(generation_complete=True))
"""Every turn's `generationComplete` (never mutated: `dump_server_message` writes it from its bytes)."""

Outbound = ServerMessage | ModelText
"""What a session sends: any server message, or a model text delta in its cheap form."""
