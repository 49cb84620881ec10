"""protocol/: parsing what real clients send, and emitting what the real SDK accepts."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from protocol import (
    MAX_SERVER_MESSAGE_BYTES,
    Blob,
    ClientMessage,
    CodeExecutionResult,
    Content,
    ExecutableCode,
    FunctionCall,
    GoAway,
    MessageTooLarge,
    ModalityTokenCount,
    Part,
    ProtocolError,
    ServerContent,
    ServerMessage,
    SessionResumptionUpdate,
    Setup,
    SetupComplete,
    ToolCall,
    ToolCallCancellation,
    Transcription,
    UsageMetadata,
    VoiceActivity,
    VoiceActivityDetectionSignal,
    close_reason,
    dump_server_message,
    duration,
    parse_client_message,
)

FIXTURE = Path(__file__).resolve().parent / "data" / "sdk-3.4.0-capture.jsonl"  # from google-genai 3.4.0
SERVER_KEYS = {
    "setupComplete",
    "serverContent",
    "toolCall",
    "toolCallCancellation",
    "usageMetadata",
    "goAway",
    "sessionResumptionUpdate",
    "voiceActivity",
    "voiceActivityDetectionSignal",
}
CLIENT_KEY_TO_FIELD = {
    "setup": "setup",
    "clientContent": "client_content",
    "client_content": "client_content",
    "realtimeInput": "realtime_input",
    "realtime_input": "realtime_input",
    "toolResponse": "tool_response",
    "tool_response": "tool_response",
    "contextUpdate": "context_update",
    "context_update": "context_update",
}


def _fixture_lines() -> list[dict[str, Any]]:
    return [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]


def _frames() -> list[str]:
    return [rec["data"] for rec in _fixture_lines() if rec["kind"] == "frame"]


def _first_frame(predicate: Any) -> ClientMessage:
    for data in _frames():
        if predicate(json.loads(data)):
            return parse_client_message(data)
    raise AssertionError("no fixture frame matched")


def _set_fields(msg: ClientMessage) -> list[str]:
    return [name for name in type(msg).model_fields if getattr(msg, name) is not None]


def _reject(data: bytes | str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_client_message(data)
    err = info.value
    assert err.code == 1007
    assert len(err.reason.encode("utf-8")) <= 123
    assert "Traceback" not in err.reason and "errors.pydantic.dev" not in err.reason
    return err


# --- the SDK capture -------------------------------------------------------------------------


def test_every_fixture_frame_parses_to_exactly_its_top_level_field() -> None:
    # The capture has 129 records: 84 frames, the rest request headers and client exceptions.
    records = _fixture_lines()
    assert len(records) == 129
    frames = _frames()
    kinds: Counter[str] = Counter()
    for data in frames:
        msg = parse_client_message(data)
        (key,) = json.loads(data)
        assert _set_fields(msg) == [CLIENT_KEY_TO_FIELD[key]], data
        assert msg.kind == CLIENT_KEY_TO_FIELD[key]
        kinds[msg.kind] += 1
    assert kinds == {
        "setup": 34, "client_content": 26, "realtime_input": 16, "tool_response": 6, "context_update": 2
    }  # fmt: skip
    # Binary frames (bytes), with or without a UTF-8 BOM, parse the same as text frames.
    assert parse_client_message(frames[0].encode()) == parse_client_message(frames[0])
    assert parse_client_message(b"\xef\xbb\xbf" + frames[0].encode()) == parse_client_message(frames[0])


def test_fixture_full_setup_values() -> None:
    msg = _first_frame(lambda d: "setup" in d and "systemInstruction" in d["setup"])
    setup = msg.setup
    assert setup is not None
    assert setup.model == "models/gemini-live-2.5-flash-preview"
    gen = setup.generation_config
    assert gen is not None
    assert gen.response_modalities == ["AUDIO"]
    assert (gen.temperature, gen.top_p, gen.top_k, gen.max_output_tokens, gen.seed) == (
        0.7,
        0.9,
        40.0,
        256,
        1,
    )
    assert gen.media_resolution == "MEDIA_RESOLUTION_LOW"
    assert gen.enable_affective_dialog is True
    # snake_case nested inside camelCase, as the SDK sends it
    assert gen.speech_config is not None and gen.speech_config.voice_config is not None
    assert gen.speech_config.voice_config.prebuilt_voice_config is not None
    assert gen.speech_config.voice_config.prebuilt_voice_config.voice_name == "Kore"
    assert gen.speech_config.language_code == "en-US"
    assert gen.thinking_config is not None
    assert (gen.thinking_config.thinking_budget, gen.thinking_config.include_thoughts) == (0, False)
    assert setup.system_text() == "You are a helpful assistant."
    assert setup.system_instruction is not None and setup.system_instruction.role == "user"

    tools = setup.tools
    assert tools is not None and len(tools) == 3
    assert tools[0].code_execution == {} and tools[0].function_declarations is None
    assert tools[1].google_search == {}
    decls = tools[2].function_declarations
    assert decls is not None
    assert [d.name for d in decls] == ["get_weather", "turn_on_the_lights", "get_weather"]
    assert decls[0].behavior == "NON_BLOCKING"
    assert decls[0].parameters == {
        "properties": {"city": {"type": "STRING"}},
        "required": ["city"],
        "type": "OBJECT",
    }
    assert decls[1].description is None and decls[1].parameters is None
    assert decls[2].parameters_json_schema == {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
    assert decls[2].response_json_schema == {"type": "string"}

    assert setup.session_resumption is not None and setup.session_resumption.handle == "prev-handle"
    assert setup.input_audio_transcription is not None  # {} means enabled
    assert setup.output_audio_transcription is not None
    ric = setup.realtime_input_config
    assert ric is not None and ric.automatic_activity_detection is not None
    aad = ric.automatic_activity_detection
    assert aad.disabled is False
    assert aad.start_of_speech_sensitivity == "START_SENSITIVITY_LOW"
    assert (aad.prefix_padding_ms, aad.silence_duration_ms) == (20, 100)
    assert ric.activity_handling == "NO_INTERRUPTION"
    assert ric.turn_coverage == "TURN_INCLUDES_ALL_INPUT"
    cwc = setup.context_window_compression
    assert cwc is not None and cwc.trigger_tokens == 25600
    assert cwc.sliding_window is not None and cwc.sliding_window.target_tokens == 12800
    assert setup.proactivity is not None and setup.proactivity.proactive_audio is True
    assert setup.history_config is None


def test_fixture_url_safe_image_blob_decodes() -> None:
    msg = _first_frame(lambda d: "inlineData" in json.dumps(d))
    assert msg.client_content is not None
    (turn,) = msg.client_content.turns
    blob = turn.parts[0].inline_data
    assert blob is not None
    assert blob.mime_type == "image/jpeg"
    assert blob.data == b"\xff\xd8\xff\xfe"  # "_9j__g==" is URL-safe for "/9j//g=="


def test_fixture_realtime_input_values() -> None:
    audio = _first_frame(lambda d: "audio" in d.get("realtime_input", {})).realtime_input
    assert audio is not None and audio.audio is not None
    assert audio.audio.data == b"\x00\x01\xfb\xff\xfe"
    assert audio.audio.mime_type == "audio/pcm;rate=16000"
    video = _first_frame(lambda d: "video" in d.get("realtime_input", {})).realtime_input
    assert video is not None and video.video is not None and video.video.data == b"\xff\xd8\xff"
    text = _first_frame(lambda d: "text" in d.get("realtime_input", {})).realtime_input
    assert text is not None and text.text == "hello realtime"
    for key in ("mediaChunks", "media_chunks"):
        chunks = _first_frame(lambda d, k=key: k in d.get("realtime_input", {})).realtime_input
        assert chunks is not None and chunks.media_chunks is not None
        assert [(c.mime_type, c.data) for c in chunks.media_chunks] == [("audio/pcm", b"\x00\x01")]
    end = _first_frame(lambda d: "audioStreamEnd" in d.get("realtime_input", {})).realtime_input
    assert end is not None and end.audio_stream_end is True
    start = _first_frame(lambda d: "activityStart" in d.get("realtime_input", {})).realtime_input
    assert start is not None and start.activity_start == {} and start.activity_end is None


def test_fixture_tool_responses() -> None:
    first = _first_frame(lambda d: "fc-0" in json.dumps(d)).tool_response
    assert first is not None
    (fr,) = first.function_responses
    assert (fr.id, fr.name, fr.scheduling, fr.will_continue) == ("fc-0", "get_weather", "INTERRUPT", False)
    assert fr.response == {"result": "sunny"}
    pair = _first_frame(lambda d: "fc-a" in json.dumps(d)).tool_response
    assert pair is not None
    assert [(r.id, r.scheduling, r.response) for r in pair.function_responses] == [
        ("fc-a", None, {"output": 1}),
        ("fc-b", "SILENT", {"error": "x"}),
    ]
    snake = _first_frame(lambda d: "function_responses" in d.get("tool_response", {})).tool_response
    assert snake is not None and snake.function_responses[0].id == "fc-z"


def test_fixture_client_content_and_context_update() -> None:
    two = _first_frame(lambda d: len(d.get("client_content", {}).get("turns", [])) == 2).client_content
    assert two is not None
    assert [(t.role, t.parts[0].text) for t in two.turns] == [("user", "a"), ("model", "b")]
    assert two.turn_complete is False
    bare = _first_frame(lambda d: d == {"client_content": {"turn_complete": True}}).client_content
    assert bare is not None and bare.turns == [] and bare.turn_complete is True
    update = _first_frame(lambda d: "contextUpdate" in d).context_update
    assert update is not None and update.system_instruction is not None
    assert update.system_instruction.parts[0].text == "new si"
    assert update.tools is not None and update.tools.tools == []  # present and empty: clear all


# --- leniency --------------------------------------------------------------------------------

CAMEL_SETUP = {
    "setup": {
        "model": "m",
        "generationConfig": {
            "responseModalities": ["TEXT"],
            "maxOutputTokens": 5,
            "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Puck"}}},
        },
        "realtimeInputConfig": {"automaticActivityDetection": {"silenceDurationMs": 7}},
        "contextWindowCompression": {"triggerTokens": 10, "slidingWindow": {"targetTokens": 4}},
        "historyConfig": {"initialHistoryInClientContent": True},
        "tools": [
            {
                "functionDeclarations": [
                    {"name": "f", "parametersJsonSchema": {"maxItems": 1, "my_field": {"type": "x"}}}
                ]
            }
        ],
    }
}
SNAKE_SETUP = {
    "setup": {
        "model": "m",
        "generation_config": {
            "response_modalities": ["TEXT"],
            "max_output_tokens": 5,
            "speech_config": {"voice_config": {"prebuilt_voice_config": {"voice_name": "Puck"}}},
        },
        "realtime_input_config": {"automatic_activity_detection": {"silence_duration_ms": 7}},
        "context_window_compression": {"trigger_tokens": 10, "sliding_window": {"target_tokens": 4}},
        "history_config": {"initial_history_in_client_content": True},
        "tools": [
            {
                "function_declarations": [
                    {"name": "f", "parameters_json_schema": {"maxItems": 1, "my_field": {"type": "x"}}}
                ]
            }
        ],
    }
}


def test_camel_and_snake_case_parse_identically_at_every_level() -> None:
    camel = parse_client_message(json.dumps(CAMEL_SETUP)).setup
    snake = parse_client_message(json.dumps(SNAKE_SETUP)).setup
    assert camel is not None and snake is not None
    assert camel == snake
    gen = snake.generation_config
    assert gen is not None and gen.max_output_tokens == 5
    assert gen.speech_config is not None and gen.speech_config.voice_config is not None
    assert gen.speech_config.voice_config.prebuilt_voice_config is not None
    assert gen.speech_config.voice_config.prebuilt_voice_config.voice_name == "Puck"
    assert snake.realtime_input_config is not None
    assert snake.realtime_input_config.automatic_activity_detection is not None
    assert snake.realtime_input_config.automatic_activity_detection.silence_duration_ms == 7
    assert snake.context_window_compression is not None
    assert snake.context_window_compression.sliding_window is not None
    assert snake.context_window_compression.sliding_window.target_tokens == 4
    assert snake.history_config is not None
    assert snake.history_config.initial_history_in_client_content is True
    # Free-form schemas are verbatim: no key conversion in either direction.
    assert snake.tools is not None and snake.tools[0].function_declarations is not None
    schema = snake.tools[0].function_declarations[0].parameters_json_schema
    assert schema == {"maxItems": 1, "my_field": {"type": "x"}}


def test_mixed_casing_in_client_content_parts() -> None:
    msg = parse_client_message(
        '{"clientContent":{"turn_complete":true,"turns":[{"parts":['
        '{"inline_data":{"mimeType":"image/png","data":"AAE="}},'
        '{"fileData":{"file_uri":"gs://b/f","mime_type":"video/mp4"}},'
        '{"function_response":{"id":"c1","name":"f","response":{"a_b":1},"willContinue":true}}]}]}}'
    )
    content = msg.client_content
    assert content is not None and content.turn_complete is True
    parts = content.turns[0].parts
    assert parts[0].inline_data == Blob(mime_type="image/png", data=b"\x00\x01")
    assert parts[1].file_data is not None and parts[1].file_data.file_uri == "gs://b/f"
    fr = parts[2].function_response
    assert fr is not None and fr.response == {"a_b": 1} and fr.will_continue is True


@pytest.mark.parametrize("encoded", ["+/8=", "-_8=", "+/8", "-_8", "+/ 8=\n"])
def test_base64_alphabets_and_padding(encoded: str) -> None:
    msg = parse_client_message(json.dumps({"realtimeInput": {"audio": {"data": encoded}}}))
    assert msg.realtime_input is not None and msg.realtime_input.audio is not None
    assert msg.realtime_input.audio.data == b"\xfb\xff"


@pytest.mark.parametrize("encoded", ["A", "AAAAA", "AAAAA=", "!!!!", "AA==AA==", "+/8=="])
def test_bad_base64_is_1007_naming_the_field(encoded: str) -> None:
    err = _reject(json.dumps({"realtimeInput": {"audio": {"data": encoded}}}))
    assert "realtimeInput.audio.data" in err.reason
    assert "base64" in err.reason


def test_thought_signature_is_base64() -> None:
    msg = parse_client_message(
        '{"clientContent":{"turns":[{"role":"model","parts":[{"text":"t","thoughtSignature":"-_8"}]}]}}'
    )
    assert msg.client_content is not None
    assert msg.client_content.turns[0].parts[0].thought_signature == b"\xfb\xff"


def test_numbers_nulls_and_unknown_enums() -> None:
    msg = parse_client_message(
        json.dumps(
            {
                "setup": {
                    "model": "m",
                    "generationConfig": {
                        "topK": 40.0,
                        "maxOutputTokens": "256",  # int64 may be a string in proto JSON
                        "mediaResolution": "MEDIA_RESOLUTION_FROM_THE_FUTURE",
                        "temperature": None,
                    },
                }
            }
        )
    )
    assert msg.setup is not None and msg.setup.generation_config is not None
    gen = msg.setup.generation_config
    assert (gen.top_k, gen.max_output_tokens, gen.temperature) == (40.0, 256, None)
    assert gen.media_resolution == "MEDIA_RESOLUTION_FROM_THE_FUTURE"
    # null means absent, so defaults apply instead of a validation error
    nulls = parse_client_message('{"clientContent":{"turns":null,"turnComplete":null}}').client_content
    assert nulls is not None and nulls.turns == [] and nulls.turn_complete is False


def test_system_instruction_as_string_and_system_text() -> None:
    msg = parse_client_message('{"setup":{"model":"m","systemInstruction":"Be brief."}}')
    assert msg.setup is not None
    assert msg.setup.system_instruction == Content(parts=[Part(text="Be brief.")])
    assert msg.setup.system_text() == "Be brief."
    multi = Setup.model_validate(
        {
            "model": "m",
            "system_instruction": {"parts": [{"text": "a"}, {"inlineData": {"data": ""}}, {"text": "b"}]},
        }
    )
    assert multi.system_text() == "a\nb"
    assert Setup(model="m").system_text() is None
    update = parse_client_message('{"context_update":{"system_instruction":"new"}}').context_update
    assert update is not None and update.system_instruction is not None
    assert update.system_instruction.parts[0].text == "new" and update.tools is None


def test_context_update_accepts_bare_tool_list() -> None:
    update = parse_client_message('{"contextUpdate":{"tools":[{"codeExecution":{}}]}}').context_update
    assert update is not None and update.tools is not None
    assert [t.code_execution for t in update.tools.tools] == [{}]


def test_turn_role_defaults_to_user_but_keeps_model() -> None:
    msg = parse_client_message(
        '{"clientContent":{"turns":[{"parts":[{"text":"a"}]},{"role":"model","parts":[]}]}}'
    )
    assert msg.client_content is not None
    assert [t.role for t in msg.client_content.turns] == ["user", "model"]


def test_scheduling_inside_response_is_lifted() -> None:
    msg = parse_client_message(
        '{"toolResponse":{"functionResponses":['
        '{"id":"a","name":"f","response":{"result":"ok","scheduling":"INTERRUPT"}},'
        '{"id":"b","name":"f","scheduling":"SILENT","response":{"scheduling":"WHEN_IDLE"}},'
        '{"id":"c","name":"f","response":{"scheduling":"weekly"}}]}}'
    )
    assert msg.tool_response is not None
    a, b, c = msg.tool_response.function_responses
    assert (a.scheduling, a.response) == ("INTERRUPT", {"result": "ok"})
    assert (b.scheduling, b.response) == ("SILENT", {})  # the explicit field wins
    assert (c.scheduling, c.response) == (None, {"scheduling": "weekly"})  # data, not a control value


def test_client_message_model_requires_exactly_one_field() -> None:
    with pytest.raises(ValidationError):
        ClientMessage()
    with pytest.raises(ValidationError):
        ClientMessage.model_validate({"setup": {"model": "m"}, "clientContent": {}})
    assert ClientMessage.model_validate({"tool_response": {}}).kind == "tool_response"


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"\xff\xfe{}", "UTF-8"),
        ("not json", "Expecting value"),
        ('{"setup":{"model":NaN}}', "JSON"),
        ("[" * 100_000, "JSON"),
        ("[1, 2]", "Expected an object, got list"),
        ('"setup"', "Expected an object, got str"),
        ("{}", "Expected one of: setup, clientContent"),
        ('{"setup":null}', "Expected one of"),
        ('{"setup":{"model":"m"},"clientContent":{}}', "More than one message field: setup, clientContent"),
        ('{"foo":{}}', 'Unknown name "foo"'),
        ('{"setup":{"model":"m"},"foo":1}', 'Unknown name "foo"'),
        ('{"setup":{}}', "Invalid value at 'setup.model': Field required"),
        ('{"setup":"m"}', "Invalid value at 'setup':"),
        (
            '{"setup":{"model":"m","generationConfig":{"temperature":"hot"}}}',
            "'setup.generationConfig.temperature'",
        ),
        (
            '{"setup":{"model":"m","tools":[{"functionDeclarations":[{}]}]}}',
            "setup.tools[0].functionDeclarations[0].name",
        ),
        ('{"clientContent":{"turns":[{"parts":[{"text":1},{"text":2}]}]}}', "(and 1 more)"),
    ],
)
def test_rejections_are_1007_with_short_reasons(data: bytes | str, needle: str) -> None:
    err = _reject(data)
    assert needle in err.reason, err.reason


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"setup": {"model": "m", "someFutureField": {"x": 1}}}, "\"someFutureField\" at 'setup'"),
        ({"setup": {"model": "m", "generationConfig": {"unknownKnob": True}}},
         "\"unknownKnob\" at 'setup.generation_config'"),
        ({"clientContent": {"turns": [{"parts": [{"text": "t", "colour": 1}]}]}},
         "\"colour\" at 'client_content.turns.parts'"),
    ],
)  # fmt: skip
def test_unknown_nested_fields_are_refused_as_google_does(message: dict[str, Any], reason: str) -> None:
    """A field nobody defined would otherwise look accepted while doing nothing."""
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(json.dumps(message))
    assert caught.value.code == 1007
    assert caught.value.reason == f"Invalid JSON payload received. Unknown name {reason}: Cannot find field."


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"clientContent": {"turns": [{"role": "user", "parts": [{"text": "t"}], "x": 1}]}},
         "\"x\" at 'client_content.turns'"),
        ({"clientContent": {"turns": [{"parts": [{"text": "t"}]}], "turnComplete": True, "y": 1}},
         "\"y\" at 'client_content'"),
        ({"clientContent": {"turns": [{"role": "user", "parts": [{"text": "t", "z": None}]}]}},
         "\"z\" at 'client_content.turns.parts'"),
    ],
)  # fmt: skip
def test_unknown_fields_next_to_plain_text_turns_are_refused(message: dict[str, Any], reason: str) -> None:
    """The common text turn skips the walk for unknown names (protocol/codec.py); one more key must not."""
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(json.dumps(message))
    assert caught.value.reason == f"Invalid JSON payload received. Unknown name {reason}: Cannot find field."


@pytest.mark.parametrize(
    "message",
    [
        {"clientContent": {"turns": [{"role": "user", "parts": [{"text": "Hi!"}]}], "turnComplete": True}},
        {"clientContent": {"turns": [{"parts": [{"text": "a"}, {"text": "b"}]}, {"role": "model", "parts": []}]}},  # noqa: E501
        {"clientContent": {"turnComplete": True}},
        {"clientContent": {}},
    ],
)  # fmt: skip
def test_plain_text_turns_parse_as_validation_does(message: dict[str, Any]) -> None:
    parsed = parse_client_message(json.dumps(message))
    validated = ClientMessage.model_validate(message)
    assert parsed == validated
    assert parsed.client_content is not None and validated.client_content is not None
    assert parsed.client_content.model_fields_set == validated.client_content.model_fields_set
    roles = [t.role for t in validated.client_content.turns]
    assert [t.role for t in parsed.client_content.turns] == roles


def test_free_form_values_may_hold_any_keys() -> None:
    frame = {"toolResponse": {"functionResponses": [{"id": "1", "response": {"anyKey": {"deep": 1}}}]}}
    assert parse_client_message(json.dumps(frame)).tool_response is not None


def test_unknown_key_reason_is_truncated() -> None:
    name = "k" * 500
    err = _reject(json.dumps({name: {}}))
    assert err.reason.startswith('Invalid JSON payload received. Unknown name "kkk')
    assert len(err.reason.encode()) == 123


@pytest.mark.parametrize("char", ["é", "€", "😀"])
def test_unknown_multibyte_key_is_cut_between_characters(char: str) -> None:
    err = _reject(json.dumps({char * 200: {}}, ensure_ascii=False).encode())
    full = f'Invalid JSON payload received. Unknown name "{char * 200}'
    assert full.startswith(err.reason)  # a prefix: nothing mangled, nothing split
    assert 123 - len(char.encode()) < len(err.reason.encode()) <= 123


def test_close_reason_cuts_at_character_boundaries() -> None:
    assert close_reason("short") == "short"
    assert close_reason("a" * 120 + "€") == "a" * 120 + "€"  # exactly 123 bytes
    assert close_reason("a" * 121 + "€") == "a" * 121  # the euro would end at byte 124
    assert close_reason("a" * 122 + "😀b") == "a" * 122
    assert close_reason("\ud800x") == "?x"  # lone surrogate still encodes


def test_protocol_error_truncates_and_carries_code() -> None:
    err = ProtocolError(1008, "x" * 500)
    assert isinstance(err, Exception)
    assert (err.code, err.reason) == (1008, "x" * 123)
    assert str(err) == "1008 " + "x" * 123


def test_lone_surrogate_unknown_key_does_not_crash() -> None:
    err = _reject('{"\\ud800":1}')
    assert 'Unknown name "?"' in err.reason


# --- dumping ---------------------------------------------------------------------------------


def _full_server_message() -> ServerMessage:
    return ServerMessage(
        setup_complete=SetupComplete(session_id="sess-1"),
        server_content=ServerContent(
            model_turn=Content(
                role="model",
                parts=[
                    Part(text="Hi ", thought_signature=b"\xfb\xff"),
                    Part(inline_data=Blob(mime_type="audio/pcm;rate=24000", data=b"\x00\x01\xfb\xff")),
                    Part(executable_code=ExecutableCode(code="print(1)", id="e1")),
                    Part(code_execution_result=CodeExecutionResult(output="1\n", id="e1")),
                ],
            ),
            generation_complete=True,
            turn_complete=True,
            interrupted=False,
            grounding_metadata={"webSearchQueries": ["q"]},
            url_context_metadata={"urlMetadata": []},
            input_transcription=Transcription(text="hello", finished=True, language_code="en-US"),
            output_transcription=Transcription(text="hi"),
            interim_input_transcription=Transcription(text="hel"),
            turn_complete_reason="NEED_MORE_INPUT",
            waiting_for_input=False,
        ),
        tool_call=ToolCall(
            function_calls=[FunctionCall(id="fc-1", name="lights", args={"on": True, "room": None})]
        ),
        tool_call_cancellation=ToolCallCancellation(ids=["fc-0"]),
        usage_metadata=UsageMetadata(
            prompt_token_count=229,
            response_token_count=25,
            total_token_count=254,
            prompt_tokens_details=[ModalityTokenCount(modality="TEXT", token_count=229)],
            response_tokens_details=[ModalityTokenCount(modality="AUDIO", token_count=25)],
        ),
        go_away=GoAway(time_left=duration(50)),
        session_resumption_update=SessionResumptionUpdate(
            new_handle="h1", resumable=True, last_consumed_client_message_index="42"
        ),
        voice_activity=VoiceActivity(type="ACTIVITY_START", audio_offset="1.2s"),
        voice_activity_detection_signal=VoiceActivityDetectionSignal(vad_signal_type="VAD_SIGNAL_TYPE_SOS"),
    )


def _keys(node: Any, skip: frozenset[str]) -> list[str]:
    """All object keys, not descending into free-form fields (whose keys are data)."""
    if isinstance(node, dict):
        out = list(node)
        for key, value in node.items():
            if key not in skip:
                out += _keys(value, skip)
        return out
    if isinstance(node, list):
        return [k for item in node for k in _keys(item, skip)]
    return []


def test_dump_uses_only_camel_case_and_the_nine_top_level_keys() -> None:
    raw = dump_server_message(_full_server_message())
    obj = json.loads(raw)
    assert set(obj) == SERVER_KEYS
    keys = _keys(obj, frozenset({"args", "groundingMetadata", "urlContextMetadata"}))
    assert "turnComplete" in keys and "modelTurn" in keys and "timeLeft" in keys
    assert all(re.fullmatch(r"[a-z][A-Za-z0-9]*", k) for k in keys), sorted(set(keys))
    assert b": " not in raw and b", " not in raw  # compact


def test_dump_omits_none_but_keeps_empty_objects_and_free_form_nulls() -> None:
    assert dump_server_message(ServerMessage(setup_complete=SetupComplete())) == b'{"setupComplete":{}}'
    assert dump_server_message(ServerMessage()) == b"{}"
    assert (
        dump_server_message(ServerMessage(server_content=ServerContent(turn_complete=True)))
        == b'{"serverContent":{"turnComplete":true}}'
    )
    raw = dump_server_message(
        ServerMessage(tool_call=ToolCall(function_calls=[FunctionCall(name="f", args={"x": None})]))
    )
    assert json.loads(raw) == {"toolCall": {"functionCalls": [{"name": "f", "args": {"x": None}}]}}


def test_dump_bytes_as_standard_base64_and_text_as_utf8() -> None:
    msg = ServerMessage(
        server_content=ServerContent(
            model_turn=Content(
                role="model",
                parts=[
                    Part(text="héllo €", thought_signature=b"\xfb\xef"),
                    Part(inline_data=Blob(data=b"\xfb\xff")),
                ],
            )
        )
    )
    raw = dump_server_message(msg)
    parts = json.loads(raw)["serverContent"]["modelTurn"]["parts"]
    assert parts[0]["thoughtSignature"] == "++8="
    assert parts[1]["inlineData"]["data"] == "+/8="  # not URL-safe "-_8="
    assert "héllo €".encode() in raw


def test_dump_size_limit_is_exactly_one_mebibyte() -> None:
    assert MAX_SERVER_MESSAGE_BYTES == 1_048_576

    def text_message(n: int) -> ServerMessage:
        return ServerMessage(server_content=ServerContent(model_turn=Content(parts=[Part(text="a" * n)])))

    overhead = len(dump_server_message(text_message(0)))
    assert (
        len(dump_server_message(text_message(MAX_SERVER_MESSAGE_BYTES - overhead)))
        == MAX_SERVER_MESSAGE_BYTES
    )
    with pytest.raises(MessageTooLarge) as info:
        dump_server_message(text_message(MAX_SERVER_MESSAGE_BYTES - overhead + 1))
    assert isinstance(info.value, ValueError)
    assert info.value.size == MAX_SERVER_MESSAGE_BYTES + 1
    audio = ServerMessage(
        server_content=ServerContent(model_turn=Content(parts=[Part(inline_data=Blob(data=bytes(800_000)))]))
    )
    with pytest.raises(MessageTooLarge):
        dump_server_message(audio)  # 800 kB of audio is ~1.07 MB of base64


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (50, "50s"),
        (9.5, "9.5s"),
        (0, "0s"),
        (0.001, "0.001s"),
        (1.25, "1.25s"),
        (-1.5, "-1.5s"),
        (1e-9, "0.000000001s"),
    ],
)
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_duration_rejects_non_finite() -> None:
    with pytest.raises(ValueError):
        duration(float("nan"))


def test_small_server_messages_exact_bytes() -> None:
    assert (
        dump_server_message(ServerMessage(go_away=GoAway(time_left="50s")))
        == b'{"goAway":{"timeLeft":"50s"}}'
    )
    upd = SessionResumptionUpdate.model_validate(
        {"new_handle": "h", "resumable": True, "lastConsumedClientMessageIndex": 42}
    )
    assert dump_server_message(ServerMessage(session_resumption_update=upd)) == (
        b'{"sessionResumptionUpdate":{"newHandle":"h","resumable":true,"lastConsumedClientMessageIndex":"42"}}'
    )
    assert dump_server_message(ServerMessage(tool_call_cancellation=ToolCallCancellation(ids=["a"]))) == (
        b'{"toolCallCancellation":{"ids":["a"]}}'
    )


# --- the real SDK reads what we write --------------------------------------------------------


def test_sdk_model_validate_reads_text_and_audio() -> None:
    from google.genai import types

    msg = ServerMessage(
        server_content=ServerContent(
            model_turn=Content(
                role="model",
                parts=[Part(inline_data=Blob(mime_type="audio/pcm;rate=24000", data=b"\x01\x02\xfb\xff"))],
            ),
            turn_complete=True,
        )
    )
    sdk = types.LiveServerMessage.model_validate(json.loads(dump_server_message(msg)))
    assert sdk.data == b"\x01\x02\xfb\xff"
    assert sdk.server_content is not None and sdk.server_content.turn_complete is True
    text = ServerMessage(
        server_content=ServerContent(model_turn=Content(role="model", parts=[Part(text="héllo")]))
    )
    assert types.LiveServerMessage.model_validate(json.loads(dump_server_message(text))).text == "héllo"


def test_sdk_knows_every_field_we_emit() -> None:
    # The SDK's models forbid unknown fields, so validating our fullest message directly proves
    # every nested key we emit is one it knows. voiceActivity.type is renamed by the SDK's
    # converter before validation (protocol.md §4.7), so it goes through that path below.
    from google.genai import types

    obj = json.loads(dump_server_message(_full_server_message()))
    direct = {k: v for k, v in obj.items() if k != "voiceActivity"}
    sdk = types.LiveServerMessage.model_validate(direct)
    assert sdk.setup_complete is not None and sdk.setup_complete.session_id == "sess-1"
    assert sdk.tool_call is not None and sdk.tool_call.function_calls is not None
    assert sdk.tool_call.function_calls[0].id == "fc-1"
    assert sdk.tool_call.function_calls[0].args == {"on": True, "room": None}


def test_sdk_receive_path_round_trip() -> None:
    # Exactly what AsyncSession._receive does with a frame (live.py:622-640).
    from google.genai import _live_converters, types

    raw = dump_server_message(_full_server_message())
    converted = _live_converters._LiveServerMessage_from_mldev(json.loads(raw))
    assert set(converted) == {
        "setup_complete",
        "server_content",
        "tool_call",
        "tool_call_cancellation",
        "usage_metadata",
        "go_away",
        "session_resumption_update",
        "voice_activity",
        "voice_activity_detection_signal",
    }
    sdk = types.LiveServerMessage._from_response(response=converted, kwargs={})
    content = sdk.server_content
    assert content is not None and content.model_turn is not None and content.model_turn.parts is not None
    parts = content.model_turn.parts
    assert parts[0].text == "Hi " and parts[0].thought_signature == b"\xfb\xff"
    assert parts[1].inline_data is not None and parts[1].inline_data.data == b"\x00\x01\xfb\xff"
    code, result = parts[2].executable_code, parts[3].code_execution_result
    assert code is not None and (code.code, code.language, code.id) == ("print(1)", "PYTHON", "e1")
    assert result is not None and (result.output, result.outcome, result.id) == ("1\n", "OUTCOME_OK", "e1")
    assert content.input_transcription is not None and content.input_transcription.text == "hello"
    assert content.generation_complete is True and content.turn_complete is True
    assert sdk.tool_call_cancellation is not None and sdk.tool_call_cancellation.ids == ["fc-0"]
    assert sdk.usage_metadata is not None and sdk.usage_metadata.response_token_count == 25
    assert sdk.go_away is not None and sdk.go_away.time_left == "50s"
    assert sdk.session_resumption_update is not None and sdk.session_resumption_update.new_handle == "h1"
    assert sdk.voice_activity is not None and sdk.voice_activity.voice_activity_type == "ACTIVITY_START"
    assert sdk.voice_activity_detection_signal is not None
    assert sdk.voice_activity_detection_signal.vad_signal_type == "VAD_SIGNAL_TYPE_SOS"


def test_client_side_codec_round_trips() -> None:
    """The clients' direction: what they dump the server parses, and what the server dumps they parse."""
    from protocol import (
        ClientContent,
        ClientMessage,
        Content,
        Part,
        ServerContent,
        ServerMessage,
        dump_client_message,
        dump_server_message,
        parse_client_message,
        parse_server_message,
    )

    sent = ClientMessage(
        client_content=ClientContent(turns=[Content(parts=[Part(text="hi")])], turn_complete=True)
    )
    wire = dump_client_message(sent)
    assert '"clientContent"' in wire and '"turnComplete":true' in wire
    assert parse_client_message(wire) == sent
    reply = ServerMessage(
        server_content=ServerContent(model_turn=Content(role="model", parts=[Part(text="yo")]))
    )
    assert parse_server_message(dump_server_message(reply)) == reply
    with pytest.raises(ProtocolError) as err:
        parse_server_message(b"[]")
    assert err.value.code == 1007
