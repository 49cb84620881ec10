"""The one ModelRequest -> chat messages/tools converter shared by the llama and openai backends."""

from __future__ import annotations

import json

from live.backends.base import ModelRequest
from live.backends.chat_format import RUN_PYTHON, json_schema, sampling, to_chat
from protocol import (
    Blob,
    CodeExecutionResult,
    Content,
    ExecutableCode,
    FunctionCall,
    FunctionDeclaration,
    FunctionResponse,
    GenerationConfig,
    Part,
)

WEATHER = FunctionDeclaration(
    name="get_weather",
    description="Current weather in a city",
    parameters={
        "type": "OBJECT",
        "properties": {
            "city": {"type": "STRING", "description": "City name"},
            "max_items": {"type": "INTEGER", "nullable": True},  # a property named like a schema keyword
            "days": {"type": "ARRAY", "items": {"type": "NUMBER"}, "max_items": 3},
        },
        "required": ["city"],
        "propertyOrdering": ["city", "max_items", "days"],
    },
)

HISTORY = [
    Content(role="user", parts=[Part(text="Weather in Paris, and 2**10?")]),
    Content(
        role="model",
        parts=[
            Part(text="Computing.\n"),
            Part(executable_code=ExecutableCode(code="print(2**10)")),
            Part(code_execution_result=CodeExecutionResult(outcome="OUTCOME_OK", output="1024\n")),
            Part(inline_data=Blob(mime_type="image/png", data=b"\x89PNG")),
            Part(text="Now the weather."),
            Part(function_call=FunctionCall(id="fc-1", name="get_weather", args={"city": "Paris"})),
        ],
    ),
    Content(
        role="user",
        parts=[Part(function_response=FunctionResponse(id="fc-1", name="get_weather", response={"t": 21}))],
    ),
    Content(role="model", parts=[Part(text="It is 21 degrees.")]),
    Content(role="user", parts=[Part(text="Thanks!")]),
]


def request(**kwargs: object) -> ModelRequest:
    base: dict[str, object] = {
        "model": "m",
        "history": HISTORY,
        "system_instruction": "Be brief.",
        "functions": [WEATHER],
        "code_execution": True,
    }
    return ModelRequest(**(base | kwargs))  # type: ignore[arg-type]


def test_tools_mode_replays_code_and_calls_as_paired_tool_messages() -> None:
    chat = to_chat(request(), "tools")
    roles = [m["role"] for m in chat.messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool", "assistant", "user"]
    assert chat.messages[0]["content"] == "Be brief."
    code_msg, code_result, call_msg, call_result = chat.messages[2:6]
    assert code_msg["content"] == "Computing.\n"
    (code_call,) = code_msg["tool_calls"]
    assert code_call["function"]["name"] == RUN_PYTHON
    assert json.loads(code_call["function"]["arguments"]) == {"code": "print(2**10)"}
    assert code_result["tool_call_id"] == code_call["id"]
    assert "1024" in code_result["content"] and "image/png" in code_result["content"]
    assert call_msg["content"] == "Now the weather."
    (weather_call,) = call_msg["tool_calls"]
    assert weather_call["id"] == "fc-1"
    assert json.loads(weather_call["function"]["arguments"]) == {"city": "Paris"}
    assert call_result == {"role": "tool", "tool_call_id": "fc-1", "content": '{"t": 21}'}


def test_tools_mode_offers_run_python_only_with_code_execution() -> None:
    names = [t["function"]["name"] for t in to_chat(request(), "tools").tools]
    assert names == ["get_weather", RUN_PYTHON]
    names = [t["function"]["name"] for t in to_chat(request(code_execution=False), "tools").tools]
    assert names == ["get_weather"]


def test_fenced_mode_is_plain_alternating_text() -> None:
    chat = to_chat(request(), "fenced")
    assert chat.tools == []
    roles = [m["role"] for m in chat.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user", "assistant", "user"]
    system = chat.messages[0]["content"]
    assert (
        system.startswith("Be brief.\n\n") and "```python" in system and "default_api.get_weather(" in system
    )
    assert chat.messages[2]["content"] == "Computing.\n```python\nprint(2**10)\n```\n"
    assert "1024" in chat.messages[3]["content"] and "image/png" in chat.messages[3]["content"]
    assert (
        chat.messages[4]["content"]
        == "Now the weather.\n```python\ndefault_api.get_weather(city='Paris')\n```\n"
    )
    assert chat.messages[5]["content"] == 'default_api.get_weather returned: {"t": 21}'


def test_fenced_mode_without_tools_adds_no_instructions() -> None:
    chat = to_chat(request(functions=[], code_execution=False, system_instruction=None), "fenced")
    assert chat.messages[0] == {"role": "user", "content": "Weather in Paris, and 2**10?"}


def test_failed_and_silent_code_is_reported_as_such() -> None:
    history = [
        Content(role="user", parts=[Part(text="go")]),
        Content(
            role="model",
            parts=[
                Part(executable_code=ExecutableCode(code="1/0")),
                Part(
                    code_execution_result=CodeExecutionResult(outcome="OUTCOME_FAILED", output="ZeroDivision")
                ),
                Part(executable_code=ExecutableCode(code="x = 1")),
                Part(code_execution_result=CodeExecutionResult(outcome="OUTCOME_OK", output="")),
            ],
        ),
    ]
    chat = to_chat(request(history=history), "fenced")
    assert chat.messages[3]["content"].startswith("The code failed:")
    assert "(no output)" in chat.messages[5]["content"]


def test_system_prompt_folds_into_first_user_turn_when_the_template_has_no_system_role() -> None:
    chat = to_chat(request(), "fenced", system_role=False)
    assert chat.messages[0]["role"] == "user"
    assert chat.messages[0]["content"].startswith("Be brief.")
    assert chat.messages[0]["content"].endswith("Weather in Paris, and 2**10?")


def test_gemini_schema_becomes_json_schema() -> None:
    assert json_schema(WEATHER.parameters or {}) == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City name"},
            "max_items": {"type": ["integer", "null"]},
            "days": {"type": "array", "items": {"type": "number"}, "maxItems": 3},
        },
        "required": ["city"],
    }


def test_json_schema_declarations_pass_through() -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "additionalProperties": False}
    decl = FunctionDeclaration(name="search", parameters_json_schema=schema)
    chat = to_chat(request(functions=[decl], code_execution=False), "tools")
    assert chat.tools == [{"type": "function", "function": {"name": "search", "parameters": schema}}]


def test_sampling_uses_openai_names_and_skips_unset() -> None:
    generation = GenerationConfig(temperature=0.0, top_k=40.0, max_output_tokens=64, seed=7)
    assert sampling(generation) == {"temperature": 0.0, "top_k": 40, "max_tokens": 64, "seed": 7}
    assert sampling(None) == {}


def test_attachments_are_named_for_the_model_as_the_sandbox_names_them() -> None:
    from live.turns import Conversation
    from protocol import Blob

    conv = Conversation(model="m")
    conv.add([Content(role="user", parts=[
        Part(inline_data=Blob(mime_type="text/csv", data=b"a,b\n1,2\n")), Part(text="total of b?"),
    ])])  # fmt: skip
    chat = to_chat(ModelRequest(model="m", history=conv.history, code_execution=True), "tools")
    user = next(m for m in chat.messages if m["role"] == "user")
    assert (
        "[attached input_file_0.csv, in the working directory of your code: text/csv, 8 bytes]"
        in user["content"]
    )


def test_calls_left_open_are_answered_where_the_conversation_moves_on() -> None:
    """A NON_BLOCKING call (its result comes later) and interrupted code still get a tool message, as chat
    APIs require; the late result then arrives as user text, with its inline parts described."""
    late = FunctionResponse(
        id="fc-9", name="book", response={"ok": True}, parts=[{"inline_data": {"mime_type": "image/png"}}]
    )
    history = [
        Content(role="user", parts=[Part(text="Book and compute")]),
        Content(
            role="model",
            parts=[
                Part(function_call=FunctionCall(id="fc-9", name="book", args={})),
                Part(text="Booking."),
                Part(executable_code=ExecutableCode(code="import time; time.sleep(9)")),
            ],
        ),
        Content(role="user", parts=[Part(function_response=late)]),
    ]
    messages = to_chat(request(history=history), "tools").messages
    assert [m["role"] for m in messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "user",
    ]
    assert messages[3]["tool_call_id"] == "fc-9" and "later" in messages[3]["content"]
    assert "interrupted" in messages[5]["content"]
    assert messages[6]["content"] == '{"ok": true}\n[attached: image/png, 0 bytes]'
    opened = to_chat(request(history=history[:2]), "tools").messages  # the call is the last thing said
    assert opened[-1]["role"] == "tool" and "interrupted" in opened[-1]["content"]
