"""The ``setup`` message and its configuration objects.

Enum-valued fields stay plain ``str`` so that a newer SDK value is carried
through rather than rejecting the whole session. Free-form objects (JSON
schemas, translation config, labels, safety settings) are kept verbatim.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator

from .base import WireModel
from .parts import Content, Part


def as_content(value: Any) -> Any:
    """Accept a plain string where a Content is expected (the SDK allows it)."""
    if isinstance(value, str):
        return Content(parts=[Part(text=value)])
    return value


SystemInstruction = Annotated[Content | None, BeforeValidator(as_content)]
"""A Content that may also arrive as a bare string."""


class PrebuiltVoiceConfig(WireModel):
    voice_name: str | None = None


class VoiceConfig(WireModel):
    prebuilt_voice_config: PrebuiltVoiceConfig | None = None


class SpeechConfig(WireModel):
    """Voice and language of generated audio."""

    voice_config: VoiceConfig | None = None
    language_code: str | None = None


class ThinkingConfig(WireModel):
    thinking_budget: int | None = None
    include_thoughts: bool | None = None
    thinking_level: str | None = None


class GenerationConfig(WireModel):
    """Sampling and output options; ``topK`` arrives as a float from the SDK."""

    response_modalities: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: float | None = None
    max_output_tokens: int | None = None
    seed: int | None = None
    candidate_count: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    media_resolution: str | None = None
    speech_config: SpeechConfig | None = None
    thinking_config: ThinkingConfig | None = None
    enable_affective_dialog: bool | None = None
    translation_config: dict[str, Any] | None = None
    stop_sequences: list[str] | None = None
    response_mime_type: str | None = None
    response_schema: dict[str, Any] | None = None
    response_json_schema: dict[str, Any] | None = None
    response_logprobs: bool | None = None
    logprobs: int | None = None
    enable_enhanced_civic_answers: bool | None = None
    image_config: dict[str, Any] | None = None


class FunctionDeclaration(WireModel):
    """A client function the model may call; ``behavior`` NON_BLOCKING makes it async."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    parameters_json_schema: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    response_json_schema: dict[str, Any] | None = None
    behavior: str | None = None


class Tool(WireModel):
    """One tool entry; ``{}`` for a built-in (``codeExecution``) means enabled."""

    function_declarations: list[FunctionDeclaration] | None = None
    code_execution: dict[str, Any] | None = None
    google_search: dict[str, Any] | None = None
    google_search_retrieval: dict[str, Any] | None = None
    url_context: dict[str, Any] | None = None
    google_maps: dict[str, Any] | None = None
    computer_use: dict[str, Any] | None = None
    file_search: dict[str, Any] | None = None
    enterprise_web_search: dict[str, Any] | None = None
    retrieval: dict[str, Any] | None = None


class AutomaticActivityDetection(WireModel):
    """Server-side VAD; ``disabled`` means the client sends activityStart/End."""

    disabled: bool | None = None
    start_of_speech_sensitivity: str | None = None
    end_of_speech_sensitivity: str | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None


class RealtimeInputConfig(WireModel):
    automatic_activity_detection: AutomaticActivityDetection | None = None
    activity_handling: str | None = None
    turn_coverage: str | None = None
    interim_transcript_timestamp_enabled: bool | None = None


class AudioTranscriptionConfig(WireModel):
    """Transcription switch: its presence (even ``{}``) enables transcription."""

    language_codes: list[str] | None = None
    custom_vocabulary: list[str] | None = None
    word_timestamp: bool | None = None
    diarization: bool | None = None
    mode: str | None = None


class SessionResumptionConfig(WireModel):
    """Present means resumption updates are wanted; ``handle`` resumes a session."""

    handle: str | None = None
    transparent: bool | None = None


class SlidingWindow(WireModel):
    target_tokens: int | None = None


class ContextWindowCompression(WireModel):
    trigger_tokens: int | None = None
    sliding_window: SlidingWindow | None = None


class ProactivityConfig(WireModel):
    proactive_audio: bool | None = None
    proactive_video: bool | None = None


class HistoryConfig(WireModel):
    """``initialHistoryInClientContent``: seed history before the model runs."""

    initial_history_in_client_content: bool | None = None


class Setup(WireModel):
    """The first client message: model and session configuration."""

    model: str
    generation_config: GenerationConfig | None = None
    system_instruction: SystemInstruction = None
    tools: list[Tool] | None = None
    realtime_input_config: RealtimeInputConfig | None = None
    input_audio_transcription: AudioTranscriptionConfig | None = None
    output_audio_transcription: AudioTranscriptionConfig | None = None
    session_resumption: SessionResumptionConfig | None = None
    context_window_compression: ContextWindowCompression | None = None
    proactivity: ProactivityConfig | None = None
    history_config: HistoryConfig | None = None
    avatar_config: dict[str, Any] | None = None
    safety_settings: list[dict[str, Any]] | None = None
    labels: dict[str, Any] | None = None

    def system_text(self) -> str | None:
        """The system instruction's text parts joined by newlines, or None if it has none."""
        return None if self.system_instruction is None else self.system_instruction.text()
