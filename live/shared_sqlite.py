"""Opening a SQLite file that several server processes share (`--workers N`)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

_RETRY_S = 0.01


def connect_shared(
    path: Path, *, timeout_s: float = 10.0, check_same_thread: bool = True
) -> sqlite3.Connection:
    """Opens `path` in autocommit and WAL mode.

    Switching a fresh file to WAL takes an exclusive lock, and when processes started together race
    for it SQLite answers "database is locked" at once instead of calling its busy handler; so the
    switch is retried until `timeout_s` (once the file is in WAL mode, the switch is a no-op)."""
    db = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=check_same_thread)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return db
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                db.close()
                raise
            time.sleep(_RETRY_S)
