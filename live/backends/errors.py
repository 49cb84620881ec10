"""Failures a backend reports to the session, already shaped as a WebSocket close."""

from __future__ import annotations

from protocol import close_reason


class BackendError(Exception):
    """Closes the session with `code` and a short, client-safe `reason` (no secrets, no traceback)."""

    def __init__(self, code: int, reason: str, http_status: int | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = close_reason(reason)
        self.http_status = http_status  # the REST answer, where the close code alone does not say it
