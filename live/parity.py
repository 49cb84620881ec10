"""What openlive does with every field of the Live protocol, and the refusal of what it does not do.

`FIELDS` is the registry: one row per field of every protocol model, keyed `Model.field` (the wire
name). A client field is supported, accepted and ignored (only where ignoring is the right answer: there
is nothing for it to act on), or rejected: a client message that sets a rejected field, or a refused
value, closes with 1008 naming the field (`check`). Fields no model defines are refused by the parser
(1007, Google's "Unknown name"). Server fields are sent or not sent.

`docs/parity.md` is generated from this registry (`openlive parity > docs/parity.md`) and a test
fails when they differ. To flip a row, edit it here and regenerate.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from pydantic.alias_generators import to_camel

from protocol import ClientMessage, ProtocolError, ServerMessage
from protocol.fields import known_fields, nested_model


class Status(StrEnum):
    SUPPORTED = "supported"
    IGNORED = "accepted, ignored"
    REJECTED = "rejected"
    SENT = "sent"
    NOT_SENT = "not sent"


@dataclass(frozen=True)
class Row:
    status: Status
    note: str = ""
    refuses: Callable[[Any], bool] | None = None  # a supported field whose value this returns True for
    refused_example: Any = None  # such a value, for the tests


S, IGN, R = Status.SUPPORTED, Status.IGNORED, Status.REJECTED
SENT, NOT = Status.SENT, Status.NOT_SENT
NO_VOICE = "no proactive or affective audio"


FIELDS: dict[str, Row] = {
    # Client messages
    "ClientMessage.setup": Row(S),
    "ClientMessage.clientContent": Row(S),
    "ClientMessage.realtimeInput": Row(S, "audio, text and activity marks; see RealtimeInput"),
    "ClientMessage.toolResponse": Row(S),
    "ClientMessage.contextUpdate": Row(S, "SDK 3.4; instruction and tools change between turns"),
    "Setup.model": Row(S, "routed by name; unknown names close 1008 as Google"),
    "Setup.generationConfig": Row(S),
    "Setup.systemInstruction": Row(S, "text parts"),
    "Setup.tools": Row(S),
    "Setup.realtimeInputConfig": Row(S, "see RealtimeInputConfig"),
    "Setup.inputAudioTranscription": Row(S, "inputTranscription of each utterance, finished: true"),
    "Setup.outputAudioTranscription": Row(S, "outputTranscription of each spoken sentence"),
    "Setup.sessionResumption": Row(S, "sessionResumptionUpdate after setup and after each turn"),
    "Setup.contextWindowCompression": Row(S, "sliding window, counted in the backend's tokens"),
    "Setup.proactivity": Row(R, NO_VOICE),
    "Setup.historyConfig": Row(S, "see HistoryConfig"),
    "Setup.avatarConfig": Row(R, "no avatars"),
    "Setup.safetySettings": Row(IGN, "openlive filters nothing, so no threshold applies"),
    "Setup.labels": Row(IGN, "billing labels: nothing is billed"),
    "GenerationConfig.responseModalities": Row(S, "TEXT or AUDIO (the default: spoken by the speech engine)"),
    "GenerationConfig.temperature": Row(S, "llama, openai; the scripted model is deterministic"),
    "GenerationConfig.topP": Row(S, "llama, openai"),
    "GenerationConfig.topK": Row(S, "llama; openai as extra body field top_k"),
    "GenerationConfig.maxOutputTokens": Row(S, "the whole turn's budget, code steps included"),
    "GenerationConfig.seed": Row(S, "llama, openai"),
    "GenerationConfig.candidateCount": Row(
        S, "1 only; more rejected (Live has one candidate)", refuses=lambda n: n != 1, refused_example=2
    ),
    "GenerationConfig.presencePenalty": Row(S, "llama, openai"),
    "GenerationConfig.frequencyPenalty": Row(S, "llama, openai"),
    "GenerationConfig.mediaResolution": Row(IGN, "applies to video input, which is refused"),
    "GenerationConfig.speechConfig": Row(S, "voice and language of spoken answers"),
    "GenerationConfig.thinkingConfig": Row(IGN, "the backends do not think: no thoughts, no budget to spend"),
    "GenerationConfig.enableAffectiveDialog": Row(R, NO_VOICE),
    "GenerationConfig.translationConfig": Row(R, "no translation mode"),
    "GenerationConfig.stopSequences": Row(S, "up to 5; the turn's text ends before the first one"),
    "GenerationConfig.responseMimeType": Row(
        S, "text/plain; application/json on llama (grammar) and openai (response_format), without tools"
    ),
    "GenerationConfig.responseSchema": Row(S, "with application/json: the output follows it"),
    "GenerationConfig.responseJsonSchema": Row(S, "with application/json: the output follows it"),
    "GenerationConfig.responseLogprobs": Row(R, "no log probabilities"),
    "GenerationConfig.logprobs": Row(R, "no log probabilities"),
    "GenerationConfig.enableEnhancedCivicAnswers": Row(R, "no civic-answer mode"),
    "GenerationConfig.imageConfig": Row(R, "no image output"),
    "SpeechConfig.voiceConfig": Row(S),
    "SpeechConfig.languageCode": Row(S, "the synthesizer's language; 1007 when it cannot speak it"),
    "VoiceConfig.prebuiltVoiceConfig": Row(S),
    "PrebuiltVoiceConfig.voiceName": Row(
        S, "the 30 Gemini voices, each a distinct espeak-ng voice; 1007 for others"
    ),
    "ThinkingConfig.thinkingBudget": Row(IGN, "with thinkingConfig"),
    "ThinkingConfig.includeThoughts": Row(IGN, "with thinkingConfig"),
    "ThinkingConfig.thinkingLevel": Row(IGN, "with thinkingConfig"),
    "Content.role": Row(S, "absent means user"),
    "Content.parts": Row(S),
    "Part.text": Row(S),
    "Part.thought": Row(S, "thought parts stay in history but are not shown to the model"),
    "Part.thoughtSignature": Row(IGN, "opaque to the client; openlive signs nothing"),
    "Part.inlineData": Row(S, "attachments become files in the code's working directory"),
    "Part.fileData": Row(S, "a Files API upload of the caller's: a file in the code's working directory"),
    "Part.executableCode": Row(S, "history"),
    "Part.codeExecutionResult": Row(S, "history"),
    "Part.functionCall": Row(S, "history"),
    "Part.functionResponse": Row(S, "history"),
    "Blob.mimeType": Row(S),
    "Blob.data": Row(S, "standard or URL-safe base64, padded or not"),
    "Blob.displayName": Row(S, "the attachment's file name"),
    "FileData.mimeType": Row(S, "the upload's when absent"),
    "FileData.fileUri": Row(S, "another key's, deleted or expired: 1008 as Google's 403"),
    "FileData.displayName": Row(S, "the file's name for code; the upload's displayName when absent"),
    "ExecutableCode.language": Row(S, "PYTHON"),
    "ExecutableCode.code": Row(S),
    "ExecutableCode.id": Row(IGN, "code is matched to its result by order"),
    "CodeExecutionResult.outcome": Row(S),
    "CodeExecutionResult.output": Row(S),
    "CodeExecutionResult.id": Row(IGN, "code is matched to its result by order"),
    "FunctionCall.id": Row(S),
    "FunctionCall.name": Row(S),
    "FunctionCall.args": Row(S),
    "FunctionResponse.id": Row(S, "matches the toolCall"),
    "FunctionResponse.name": Row(S),
    "FunctionResponse.response": Row(S),
    "FunctionResponse.scheduling": Row(
        S,
        "NON_BLOCKING: INTERRUPT, WHEN_IDLE (default), SILENT; top level or in response; BLOCKING ignores it",
    ),
    "FunctionResponse.willContinue": Row(S, "NON_BLOCKING: the call stays open for more results"),
    "FunctionResponse.parts": Row(S, "reach the model with the response"),
    "FunctionResponsePart.inlineData": Row(S, "the model is told its type and size"),
    "FunctionResponsePart.fileData": Row(R, "file references in function responses are not read"),
    "Tool.functionDeclarations": Row(S),
    "Tool.codeExecution": Row(S, "the sandbox"),
    "Tool.googleSearch": Row(R, "openlive cannot search the web"),
    "Tool.googleSearchRetrieval": Row(R, "openlive cannot search the web"),
    "Tool.urlContext": Row(R, "openlive fetches no URLs"),
    "Tool.googleMaps": Row(R, "no Maps grounding"),
    "Tool.computerUse": Row(R, "no computer use"),
    "Tool.fileSearch": Row(R, "no file search stores"),
    "Tool.enterpriseWebSearch": Row(R, "openlive cannot search the web"),
    "Tool.retrieval": Row(R, "no retrieval"),
    "FunctionDeclaration.name": Row(S),
    "FunctionDeclaration.description": Row(S),
    "FunctionDeclaration.parameters": Row(S, "OpenAPI schema, converted for the model"),
    "FunctionDeclaration.parametersJsonSchema": Row(S),
    "FunctionDeclaration.response": Row(IGN, "the model is not shown the response schema"),
    "FunctionDeclaration.responseJsonSchema": Row(IGN, "the model is not shown the response schema"),
    "FunctionDeclaration.behavior": Row(S, "BLOCKING holds the turn; NON_BLOCKING lets it go on"),
    "RealtimeInputConfig.automaticActivityDetection": Row(S, "Silero VAD"),
    "RealtimeInputConfig.activityHandling": Row(
        S, "NO_INTERRUPTION: speech and activityStart do not interrupt"
    ),
    "RealtimeInputConfig.turnCoverage": Row(S, "TURN_INCLUDES_ALL_INPUT keeps audio between activities"),
    "RealtimeInputConfig.interimTranscriptTimestampEnabled": Row(R, "no interim transcripts"),
    "AutomaticActivityDetection.disabled": Row(S, "activityStart/activityEnd mark the turn"),
    "AutomaticActivityDetection.startOfSpeechSensitivity": Row(
        S, "speech probability threshold, default padding"
    ),
    "AutomaticActivityDetection.endOfSpeechSensitivity": Row(
        S, "silence probability threshold, default silence"
    ),
    "AutomaticActivityDetection.prefixPaddingMs": Row(S, "speech needed before a start is committed"),
    "AutomaticActivityDetection.silenceDurationMs": Row(S, "silence that ends speech"),
    "AudioTranscriptionConfig.languageCodes": Row(
        S, "the embedded recogniser is English only (1008 otherwise)"
    ),
    "AudioTranscriptionConfig.customVocabulary": Row(S, "biases recognition toward these phrases"),
    "AudioTranscriptionConfig.wordTimestamp": Row(R, "no word timestamps"),
    "AudioTranscriptionConfig.diarization": Row(R, "no diarization"),
    "AudioTranscriptionConfig.mode": Row(R, "one transcription mode"),
    "SessionResumptionConfig.handle": Row(S, "unknown, expired or another key's: 1008 as Google"),
    "SessionResumptionConfig.transparent": Row(R, "Vertex AI only; the SDK refuses it for the Gemini API"),
    "ContextWindowCompression.triggerTokens": Row(S, "default 80% of the model's window"),
    "ContextWindowCompression.slidingWindow": Row(S, "absent or {}: the sliding window with defaults"),
    "SlidingWindow.targetTokens": Row(S, "default half the trigger"),
    "ProactivityConfig.proactiveAudio": Row(R, NO_VOICE),
    "ProactivityConfig.proactiveVideo": Row(R, NO_VOICE),
    "HistoryConfig.initialHistoryInClientContent": Row(S, "clientContent seeds until turnComplete"),
    "ClientContent.turns": Row(S),
    "ClientContent.turnComplete": Row(S, "false: turns join history, no generation"),
    "RealtimeInput.audio": Row(S, "audio/pcm;rate=N, resampled to 16 kHz"),
    "RealtimeInput.video": Row(R, "no model here takes images"),
    "RealtimeInput.text": Row(S, "a user turn each; with detection disabled, part of the activity"),
    "RealtimeInput.mediaChunks": Row(S, "audio chunks, in order; images refused"),
    "RealtimeInput.audioStreamEnd": Row(S, "ends the current utterance"),
    "RealtimeInput.activityStart": Row(
        S, "needs automatic detection disabled; interrupts per activityHandling"
    ),
    "RealtimeInput.activityEnd": Row(S, "the activity's text and transcript are the user turn"),
    "ToolResponse.functionResponses": Row(S),
    "ContextUpdate.systemInstruction": Row(S),
    "ContextUpdate.tools": Row(S, "a list, or {tools: [...]}; [] removes all"),
    "ToolsUpdate.tools": Row(S),
    # Server messages
    "ServerMessage.setupComplete": Row(SENT, "with sessionId"),
    "ServerMessage.serverContent": Row(SENT),
    "ServerMessage.toolCall": Row(SENT),
    "ServerMessage.toolCallCancellation": Row(SENT, "on interruption"),
    "ServerMessage.usageMetadata": Row(SENT, "with turnComplete"),
    "ServerMessage.goAway": Row(SENT, "before the connection limit and on shutdown"),
    "ServerMessage.sessionResumptionUpdate": Row(SENT, "when setup asked for resumption"),
    "ServerMessage.voiceActivity": Row(NOT, "optional; not sent"),
    "ServerMessage.voiceActivityDetectionSignal": Row(NOT, "allowlisted only at Google"),
    "SetupComplete.sessionId": Row(SENT),
    "ServerContent.modelTurn": Row(SENT, "one part per message, as Gemini 2.5 Live"),
    "ServerContent.generationComplete": Row(SENT, "not on an interrupted turn"),
    "ServerContent.turnComplete": Row(SENT),
    "ServerContent.interrupted": Row(SENT),
    "ServerContent.groundingMetadata": Row(NOT, "no grounding tools"),
    "ServerContent.urlContextMetadata": Row(NOT, "no URL context"),
    "ServerContent.inputTranscription": Row(SENT),
    "ServerContent.outputTranscription": Row(SENT),
    "ServerContent.interimInputTranscription": Row(NOT, "no interim transcripts"),
    "ServerContent.turnCompleteReason": Row(SENT, "MALFORMED_FUNCTION_CALL, MAX_REGENERATION_REACHED"),
    "ServerContent.waitingForInput": Row(NOT),
    "Transcription.text": Row(SENT),
    "Transcription.finished": Row(SENT, "true on input transcriptions"),
    "Transcription.languageCode": Row(NOT),
    "ToolCall.functionCalls": Row(SENT, "ids function-call-N, unique per session"),
    "ToolCallCancellation.ids": Row(SENT),
    "UsageMetadata.promptTokenCount": Row(SENT),
    "UsageMetadata.cachedContentTokenCount": Row(NOT, "no context cache"),
    "UsageMetadata.responseTokenCount": Row(SENT),
    "UsageMetadata.toolUsePromptTokenCount": Row(SENT, "what code results and function responses added"),
    "UsageMetadata.thoughtsTokenCount": Row(NOT, "no thoughts"),
    "UsageMetadata.totalTokenCount": Row(SENT),
    "UsageMetadata.promptTokensDetails": Row(SENT, "TEXT"),
    "UsageMetadata.cacheTokensDetails": Row(NOT, "no context cache"),
    "UsageMetadata.responseTokensDetails": Row(SENT, "TEXT"),
    "UsageMetadata.toolUsePromptTokensDetails": Row(SENT, "TEXT"),
    "ModalityTokenCount.modality": Row(SENT),
    "ModalityTokenCount.tokenCount": Row(SENT),
    "GoAway.timeLeft": Row(SENT, "50s, or a quarter of a shorter --max-connection-s"),
    "SessionResumptionUpdate.newHandle": Row(SENT, "empty while not resumable"),
    "SessionResumptionUpdate.resumable": Row(SENT, "false while a turn, job or call is in flight"),
    "SessionResumptionUpdate.lastConsumedClientMessageIndex": Row(NOT, "only with transparent (Vertex AI)"),
    "VoiceActivity.type": Row(NOT, "voiceActivity is not sent"),
    "VoiceActivity.audioOffset": Row(NOT, "voiceActivity is not sent"),
    "VoiceActivityDetectionSignal.vadSignalType": Row(NOT, "not sent"),
}


def check(message: ClientMessage) -> None:
    """Refuses (1008, naming the field) a message that sets a rejected field or a refused value."""
    refusal = _refusal(message, "")
    if refusal is not None:
        raise refusal


@functools.cache
def _rows(model: type[BaseModel]) -> dict[str, tuple[str, Row]]:
    """Field name -> (wire name, row), per model, looked up once."""
    return {
        name: (key, FIELDS[f"{model.__name__}.{key}"])
        for name, field in model.model_fields.items()
        for key in [field.alias or name]
    }


def _refusal(obj: BaseModel, path: str) -> ProtocolError | None:
    rows = _rows(type(obj))
    for name in obj.model_fields_set:
        value = getattr(obj, name)
        if value is None:
            continue
        key, row = rows[name]
        if row.status is Status.REJECTED or (row.refuses is not None and row.refuses(value)):
            where = f"{path}.{key}" if path else key
            detail = f" ({row.note})" if row.note else ""
            return ProtocolError(1008, f"{where} is not supported by openlive{detail}.")
        if isinstance(value, BaseModel):
            found = _refusal(value, f"{path}.{key}" if path else key)
            if found is not None:
                return found
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    found = _refusal(item, f"{path}.{key}[{i}]" if path else f"{key}[{i}]")
                    if found is not None:
                        return found
    return None


def model_fields(root: type[BaseModel]) -> Iterator[str]:
    """Every `Model.field` reachable from `root`, each once, in wire order."""
    seen: set[type[BaseModel]] = set()
    pending = [root]
    while pending:
        model = pending.pop(0)
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            yield f"{model.__name__}.{field.alias or name}"
            inner = known_fields(model)[name]
            if inner is not None:
                pending.append(inner)


def sdk_only_fields() -> list[str]:
    """Fields the installed google-genai SDK models for a client message that openlive does not define:
    the parser refuses them (1007 Unknown name)."""
    from google.genai import types  # a test dependency; only the documentation needs it

    found: list[str] = []
    seen: set[tuple[type[BaseModel], type[BaseModel]]] = set()
    pending: list[tuple[type[BaseModel], type[BaseModel], str]] = [
        (types.LiveClientMessage, ClientMessage, "")
    ]
    while pending:
        sdk, ours, path = pending.pop(0)
        if (sdk, ours) in seen:
            continue
        seen.add((sdk, ours))
        for name, field in sdk.model_fields.items():
            wire = to_camel(name)
            where = f"{path}.{wire}" if path else wire
            if name not in ours.model_fields:
                found.append(f"{ours.__name__}.{wire}")
                continue
            inner_sdk = nested_model(field.annotation)
            inner_ours = known_fields(ours)[name]
            if inner_sdk is not None and inner_ours is not None:
                pending.append((inner_sdk, inner_ours, where))
    return sorted(set(found))


HEADER = """# Protocol parity

What openlive does with every message and field of the Gemini Live protocol (`BidiGenerateContent`), as
modelled by google-genai 3.4.0; the newest release on the registry, 3.6.1, has the same Live client and
server types (checked with `pip download google-genai --no-deps`).

Generated from the registry in `live/parity.py` by `openlive parity > docs/parity.md`;
`tests/test_parity.py` fails when this file, the registry and the protocol models disagree, and sends
every rejected field to a real server to see it refused. To change a row, edit the registry and
regenerate.

- **supported**: honoured as Google documents it (notes say how).
- **accepted, ignored**: accepted without effect, only where there is nothing for it to act on.
- **rejected**: the session closes with 1008 and a reason naming the field
  (`setup.tools[0].googleSearch is not supported by openlive (...)`).
- A field no openlive model defines closes with 1007 `Invalid JSON payload received. Unknown name "x" at
  'setup': Cannot find field.`, as Google's JSON parser answers.
- Server fields are **sent** or **not sent**.
"""


def _table(rows: list[str]) -> list[str]:
    lines = ["| field | status | notes |", "|---|---|---|"]
    for key in rows:
        row = FIELDS[key]
        lines.append(f"| `{key}` | {row.status.value} | {row.note} |")
    return lines


def document() -> str:
    lines = [HEADER, "## Client messages", "", *_table(list(model_fields(ClientMessage))), ""]
    lines += ["## Server messages", "", *_table(list(model_fields(ServerMessage))), ""]
    lines += [
        "## Fields of the SDK's client messages that openlive does not define",
        "",
        "Refused by the parser (1007 `Unknown name`): Vertex AI or newer features openlive has no use for.",
        "",
        *(f"- `{key}`" for key in sdk_only_fields()),
        "",
    ]
    return "\n".join(lines)
