"""live/settled.py: a session's settled history is out of the cycle collector's view, and still works."""

from __future__ import annotations

import gc
import weakref
from typing import Any

from live import settled
from protocol import Blob, Content, FunctionCall, Part


def _objects(content: Content) -> list[Any]:
    """Every container a content holds: models, their dicts and fields-sets, lists, dicts."""
    found: list[Any] = []
    pending: list[Any] = [content]
    while pending:
        value = pending.pop()
        if hasattr(value, "__pydantic_fields_set__"):
            found += [value, value.__dict__, value.__pydantic_fields_set__]
            pending += [v for v in value.__dict__.values() if v is not None]
        elif isinstance(value, list | dict):
            found.append(value)
            pending += value if isinstance(value, list) else list(value.values())
    return found


def _turn(text: str) -> list[Content]:
    call = FunctionCall(id="1", name="f", args={"x": [1, {"y": 2}]})
    attached = Part(inline_data=Blob(mime_type="text/csv", data=b"a"))
    return [
        Content(role="user", parts=[Part(text=text), attached]),
        Content(role="model", parts=[Part(text="answer"), Part(function_call=call)]),
    ]


def test_settled_contents_are_untracked_and_later_ones_are_not_until_settled() -> None:
    history = _turn("first")
    settled.settle(history)
    assert all(not gc.is_tracked(o) for c in history for o in _objects(c))
    history += _turn("second")
    assert all(gc.is_tracked(c) for c in history[2:])
    settled.settle(history)
    untracked = [o for c in history for o in _objects(c)]
    assert len(untracked) > 20 and not any(gc.is_tracked(o) for o in untracked)


def test_settled_contents_still_change_and_are_freed_by_reference_count() -> None:
    history = _turn("hello")
    settled.settle(history)
    model = history[1]
    model.parts[0].text = (model.parts[0].text or "") + " more"
    model.parts.append(Part(text="late"))
    assert model.model_dump(exclude_none=True)["parts"][0] == {"text": "answer more"}
    assert model.parts[-1].text == "late" and gc.is_tracked(model.parts[-1])
    gone = weakref.ref(model)
    del history, model
    assert gone() is None  # no collection needed: nothing of it waits for the cycle collector
