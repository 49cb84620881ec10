"""Errors the wire can produce, and the close-reason limit they must respect.

A WebSocket close frame carries at most 125 payload bytes, two of which are the
code, so a reason longer than 123 bytes of UTF-8 makes the server library fail
and the client sees a bare 1000 instead of our error (protocol.md §6.6).
"""

from __future__ import annotations

CLOSE_INVALID_PAYLOAD = 1007
"""Bad JSON, bad field value: Google's INVALID_ARGUMENT."""
CLOSE_POLICY_VIOLATION = 1008
"""Auth, unknown model, unsupported operation: UNAUTHENTICATED, NOT_FOUND, ..."""
CLOSE_INTERNAL_ERROR = 1011
"""Server fault or deadline: INTERNAL, UNAVAILABLE, DEADLINE_EXCEEDED."""

MAX_CLOSE_REASON_BYTES = 123


def close_reason(text: str) -> str:
    """Cut ``text`` to at most 123 bytes of UTF-8 without splitting a character.

    Lone surrogates (possible in names decoded from JSON ``\\ud800`` escapes)
    become ``?`` so the result always encodes.
    """
    raw = text.encode("utf-8", "replace")[:MAX_CLOSE_REASON_BYTES]
    # The input is valid UTF-8 by now, so "ignore" only drops a character split by the cut.
    return raw.decode("utf-8", "ignore")


class ProtocolError(Exception):
    """A client error to be answered with a WebSocket close (code + reason).

    The reason is truncated on construction so callers can pass any text,
    including client-supplied names, straight to ``close(code, reason)``.
    """

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = close_reason(reason)
        super().__init__(code, self.reason)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}"


class MessageTooLarge(ValueError):
    """A serialised server message over the client's 1 MiB receive limit.

    The SDK's websockets client aborts the connection (seen as 1006) on larger
    messages, so the sender must split the content (e.g. audio) instead.
    """

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"server message is {size} bytes; the limit is {limit}")
