"""The fenced-code stream parser: every way a model's deltas can split, open or leave a fence."""

from __future__ import annotations

import pytest

from live.backends.base import CodeCall, FunctionCallRequest, FunctionCalls, TextDelta
from live.backends.fenced import Code, FencedStream, FenceParser, Text, direct_calls

ANSWER = "Let me compute.\n```python\nx = 2**10\nprint(x)\n```\nThe answer is 1024."


def parse(text: str, sizes: list[int] | int) -> list[Text | Code]:
    """Feeds `text` in chunks of the given sizes (cycled), then ends the stream; merges adjacent text."""
    sizes = sizes if isinstance(sizes, list) else [sizes]
    parser, out, pos, i = FenceParser(), [], 0, 0
    while pos < len(text):
        step = sizes[i % len(sizes)]
        out += parser.feed(text[pos : pos + step])
        pos, i = pos + step, i + 1
    out += parser.finish()
    merged: list[Text | Code] = []
    for item in out:
        if isinstance(item, Text) and merged and isinstance(merged[-1], Text):
            merged[-1] = Text(merged[-1].text + item.text)
        else:
            merged.append(item)
    return merged


@pytest.mark.parametrize("sizes", [1, 2, 3, 4, 7, 1000, [3, 1, 5], [25, 1, 1, 1, 1]])
def test_any_chunking_gives_the_same_split(sizes: list[int] | int) -> None:
    assert parse(ANSWER, sizes) == [
        Text("Let me compute.\n"),
        Code("x = 2**10\nprint(x)", "```python\nx = 2**10\nprint(x)\n```"),
        Text("\nThe answer is 1024."),
    ]


def test_fence_split_across_deltas_is_held_back_not_streamed() -> None:
    parser = FenceParser()
    assert parser.feed("Sure.\n`") == [Text("Sure.\n")]
    assert parser.feed("`") == []
    assert parser.feed("`pyt") == []
    assert parser.feed("hon\nprint(1)\n``") == []
    assert parser.feed("`") == [Code("print(1)", "```python\nprint(1)\n```")]


@pytest.mark.parametrize("info", ["python", "py", "Python", "python3", "py title=x.py"])
def test_python_spellings_are_code(info: str) -> None:
    assert parse(f"```{info}\nprint(1)\n```\n", 1) == [
        Code("print(1)", f"```{info}\nprint(1)\n```"),
        Text("\n"),
    ]


@pytest.mark.parametrize("info", ["text", "bash", "json", "", "pyth", "output"])
def test_other_fences_are_streamed_as_text(info: str) -> None:
    text = f"Output:\n```{info}\nprint(1)\n```\ndone\n"
    assert parse(text, 1) == [Text(text)]


def test_python_fence_inside_a_text_fence_is_text_and_later_blocks_still_run() -> None:
    text = "```text\n```python\nnot code\n```\nthen\n```py\nrun()\n```\n"
    assert parse(text, 2) == [
        Text("```text\n```python\nnot code\n```\nthen\n"),
        Code("run()", "```py\nrun()\n```"),
        Text("\n"),
    ]


def test_unclosed_fence_at_end_of_stream_is_code() -> None:
    assert parse("Here:\n```python\nprint(42)\n", 3) == [
        Text("Here:\n"),
        Code("print(42)", "```python\nprint(42)\n"),
    ]


def test_unclosed_fence_with_cut_off_closing_fence_is_code_without_the_backticks() -> None:
    assert parse("```python\nprint(42)\n``", 1) == [Code("print(42)", "```python\nprint(42)\n``")]


def test_empty_block_and_open_fence_line_stay_text() -> None:
    assert parse("```python\n```\n", 1) == [Text("```python\n```\n")]
    assert parse("tail ``", 1) == [Text("tail ``")]
    assert parse("```python", 1) == [Text("```python")]


def test_indented_fence_is_dedented_like_commonmark() -> None:
    text = "1. Run:\n   ```python\n   if True:\n       print(1)\n   ```\n"
    assert parse(text, 2)[1] == Code("if True:\n    print(1)", text[len("1. Run:\n") : -1])


def test_backticks_mid_line_are_text() -> None:
    text = "Use ```python fences``` like this.\n"
    assert parse(text, 1) == [Text(text)]


def test_stream_events_stop_at_the_first_runnable_block() -> None:
    stream = FencedStream(code_execution=True, function_names=set())
    events = stream.feed(ANSWER)
    assert events == [TextDelta("Let me compute.\n"), CodeCall("x = 2**10\nprint(x)")]


def test_without_code_execution_a_call_only_block_is_a_function_call() -> None:
    stream = FencedStream(code_execution=False, function_names={"get_weather"})
    events = stream.feed("Checking.\n```python\nprint(default_api.get_weather(city='Paris'))\n```\nrest")
    assert events == [
        TextDelta("Checking.\n"),
        FunctionCalls([FunctionCallRequest("get_weather", {"city": "Paris"})]),
    ]


def test_without_code_execution_other_code_is_text() -> None:
    stream = FencedStream(code_execution=False, function_names={"get_weather"})
    text = "```python\nprint(1)\n```\nok"
    assert "".join(e.text for e in stream.feed(text) + stream.finish() if isinstance(e, TextDelta)) == text


@pytest.mark.parametrize(
    "code",
    [
        "default_api.other(a=1)",  # not a declared function
        "default_api.get_weather('Paris')",  # positional
        "default_api.get_weather(city=x)",  # not a literal
        "x = default_api.get_weather(city='Paris')",  # an assignment is code
        "get_weather(city='Paris')",
        "default_api.get_weather(city=",
    ],
)
def test_direct_calls_accept_only_plain_calls(code: str) -> None:
    assert direct_calls(code, {"get_weather"}) is None


def test_direct_calls_several() -> None:
    code = "default_api.get_weather(city='Paris')\ndefault_api.get_weather(city='Rome', days=[1, 2])"
    assert direct_calls(code, {"get_weather"}) == [
        FunctionCallRequest("get_weather", {"city": "Paris"}),
        FunctionCallRequest("get_weather", {"city": "Rome", "days": [1, 2]}),
    ]
