"""The scripted model's prompt tokens: words of the whole history, counted without rereading old turns."""

from __future__ import annotations

from live.backends.base import ModelRequest, Usage
from live.backends.scripted import ScriptedBackend
from protocol import Content, Part


def words(history: list[Content]) -> int:
    return sum(len((p.text or "").split()) for c in history for p in c.parts)


async def prompt_tokens(backend: ScriptedBackend, history: list[Content]) -> int:
    events = [e async for e in backend.stream(ModelRequest(model="m", history=list(history)))]
    (prompt,) = {e.prompt_tokens for e in events if isinstance(e, Usage)}  # every report agrees
    return prompt


async def test_prompt_tokens_follow_a_growing_history_cut_at_the_front_and_rewritten() -> None:
    backend = ScriptedBackend.from_file(None)
    history: list[Content] = []
    for turn in range(30):
        history.append(Content(role="user", parts=[Part(text=f"echo turn {turn} " + "word " * turn)]))
        assert await prompt_tokens(backend, history) == words(history)
        request = ModelRequest(model="m", history=list(history), system_instruction="be brief")
        assert await backend.count_tokens(request) == words(history) + 2  # the window check, each turn
        history.append(Content(role="model", parts=[Part(text="a reply of six words here")]))
    del history[:10]  # a context window cut at the front (sliding window)
    history.append(Content(role="user", parts=[Part(text="echo after the cut")]))
    assert await prompt_tokens(backend, history) == words(history)
    history[:] = [Content(role="user", parts=[Part(text="a new history")])]  # replaced outright
    assert await prompt_tokens(backend, history) == words(history) == 3
    second = [Content(role="user", parts=[Part(text="another session entirely")])]
    assert await prompt_tokens(backend, second) == 3
    assert await prompt_tokens(backend, history) == 3
