"""Context window compression: keep a session's prompt within the model's window.

With `contextWindowCompression.slidingWindow`, a prompt over `triggerTokens` (default 80% of the window)
loses its oldest turns until it fits `targetTokens` (default half the trigger). The cut always lands at the
start of a user turn (a function response is not one), the system instruction is kept, and the newest
user turn is never dropped. Without compression, a prompt over the window closes the session, as Google
ends a session that outgrows its limits. Counts are the backend's (`ModelBackend.count_tokens`).
"""

from __future__ import annotations

import logging

from live.backends.base import ModelBackend, ModelRequest
from live.turns import Conversation
from protocol import Content, ContextWindowCompression, ProtocolError

log = logging.getLogger("openlive.context")


def _request(conv: Conversation, history: list[Content]) -> ModelRequest:
    return ModelRequest(
        model=conv.model,
        history=history,
        system_instruction=conv.system_instruction,
        functions=list(conv.functions),
        code_execution=conv.code_execution,
        generation=conv.generation,
    )


def _user_turn_starts(history: list[Content]) -> list[int]:
    return [
        i
        for i, c in enumerate(history)
        if c.role in (None, "user") and any(p.function_response is None for p in c.parts)
    ]


async def fit(conv: Conversation, backend: ModelBackend, compression: ContextWindowCompression | None) -> int:
    """Trims `conv.history` if compression asks for it; returns the prompt's tokens; 1007 if it cannot fit."""
    window = backend.context_window()
    tokens = await backend.count_tokens(_request(conv, conv.history))
    if compression is not None:
        trigger = compression.trigger_tokens or int(window * 0.8)
        window_cfg = compression.sliding_window
        target = (window_cfg.target_tokens if window_cfg else None) or trigger // 2
        if tokens > trigger:
            tokens = await _slide(conv, backend, target, tokens)
    if tokens > window:
        raise ProtocolError(
            1007,
            f"The input token count ({tokens}) exceeds the maximum number of tokens allowed ({window}). "
            "Enable contextWindowCompression.",
        )
    return tokens


async def _slide(conv: Conversation, backend: ModelBackend, target: int, tokens: int) -> int:
    """Drops the fewest oldest turns that bring the prompt to `target` (binary search over user-turn
    starts, each probe one exact count); the newest user turn always stays."""
    starts = [i for i in _user_turn_starts(conv.history) if i > 0]
    if not starts:
        return tokens
    low, high = 0, len(starts) - 1
    best, best_tokens = starts[-1], -1
    while low <= high:
        mid = (low + high) // 2
        count = await backend.count_tokens(_request(conv, conv.history[starts[mid] :]))
        if count <= target:
            best, best_tokens, high = starts[mid], count, mid - 1
        else:
            low = mid + 1
    if best_tokens < 0:
        best_tokens = await backend.count_tokens(_request(conv, conv.history[best:]))
    log.info("compressed session=%s dropped=%d tokens=%d->%d", conv.session, best, tokens, best_tokens)
    del conv.history[:best]
    return best_tokens
