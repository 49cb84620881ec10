"""Settled history leaves the cycle collector's view: a long session's turns cost no collection time.

A session's history only grows, and everything in it is a tree of wire data (contents, parts, their
strings, lists and dicts) that reference counting frees; no cycle runs through it, so the cycle
collector can never free any of it, yet every collection that reaches it walks all of it. With 1,000
sessions that is most of the heap: collections of 50-120 ms, each one stalling every session at once
(bench/bench_load.py, BENCHMARKS.md). Once a turn has ended, its contents are untracked
(`PyObject_GC_UnTrack`, CPython's C API, the call a deallocator makes): they are still freed by
reference count as before, and anything tracked that is later put into them stays tracked itself.
"""

from __future__ import annotations

import ctypes
import gc
import sys
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from protocol import Content

_untrack = ctypes.pythonapi.PyObject_GC_UnTrack
_untrack.argtypes = [ctypes.py_object]
_untrack.restype = None
ENABLED = sys.implementation.name == "cpython"


def settle(history: list[Content]) -> None:
    """Untracks the contents added since the last call (from the end back to the first one untracked)."""
    if not ENABLED:
        return
    start = len(history)
    while start and gc.is_tracked(history[start - 1]):
        start -= 1
    untrack(history[start:])


def untrack(values: Iterable[Any]) -> None:
    """Untracks each value and what it holds: models (their `__dict__` and fields-set), lists, dicts.
    Only what the collector tracks is visited (strings, numbers and bytes never are)."""
    if not ENABLED:
        return
    pending = [v for v in values if gc.is_tracked(v)]
    while pending:
        value = pending.pop()
        if isinstance(value, BaseModel):
            _untrack(value)
            _untrack(value.__pydantic_fields_set__)
            value = value.__dict__
        elif type(value) is not list and type(value) is not dict:
            continue  # what wire models hold is models, lists and dicts; nothing else is touched
        _untrack(value)
        pending += [v for v in (value.values() if type(value) is dict else value) if gc.is_tracked(v)]
