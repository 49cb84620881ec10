"""The Files API store: bytes on disk, metadata in SQLite, every file bound to the key that uploaded it.

Uploads follow Google's resumable protocol: `start` (with the key) returns an upload URL whose
`upload_id` is the capability for the chunks that follow (the SDK sends them without its key).
Files expire 48 hours after upload (configurable), as on the Gemini API; expired files are refused at once and
their bytes removed by `sweep`, which the app runs periodically.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import re
import secrets
import sqlite3
import string
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from live.api_errors import ApiError
from live.shared_sqlite import connect_shared
from protocol import Content, FileResource

UPLOAD_LIFETIME_S = 3600  # an upload left unfinished this long is dropped
_ID_ALPHABET = string.ascii_lowercase + string.digits
_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?")
MAX_DISPLAY_NAME = 512
WRITE_SLICE = 4 * 1024 * 1024  # bytes buffered from a chunk before they go to disk


class FileLimits(BaseModel):
    """TOML `[files]`, env `OPENLIVE_FILES__<KEY>`."""

    model_config = ConfigDict(extra="forbid")

    directory: Path | None = None  # None: ~/.local/share/openlive/files
    max_file_mb: int = Field(2048, ge=1)  # Google's limit per file: 2 GB
    quota_mb: int = Field(20480, ge=1)  # all files of one key: Google's 20 GB per project
    lifetime_s: float = Field(48 * 3600.0, gt=0)  # Google keeps uploaded files 48 hours
    sweep_interval_s: float = Field(600.0, gt=0)  # how often expired files are removed from disk

    def path(self) -> Path:
        return self.directory or Path.home() / ".local" / "share" / "openlive" / "files"


@dataclass(frozen=True)
class StoredFile:
    id: str
    owner: str
    display_name: str | None
    mime_type: str
    size: int
    sha256: str  # hex digest
    created: float
    expires: float

    @property
    def name(self) -> str:
        return f"files/{self.id}"

    def resource(self, base_url: str, version: str) -> FileResource:
        """The `File` as the API shows it; the hash is base64 of the hex digest, as Google sends it."""
        return FileResource(
            name=self.name,
            display_name=self.display_name,
            mime_type=self.mime_type,
            size_bytes=str(self.size),
            create_time=_rfc3339(self.created),
            update_time=_rfc3339(self.created),
            expiration_time=_rfc3339(self.expires),
            sha256_hash=base64.b64encode(self.sha256.encode()).decode(),
            uri=f"{base_url.rstrip('/')}/{version}/{self.name}",
            state="ACTIVE",
            source="UPLOADED",
        )


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def file_id(reference: str) -> str | None:
    """The id in `files/x`, `x`, or a URI ending `/files/x` (any host: the client saw ours)."""
    tail = reference.rsplit("/files/", 1)[-1] if "/files/" in reference else reference.removeprefix("files/")
    tail = tail.split("?", 1)[0]
    return tail if _ID.fullmatch(tail) else None


def not_accessible(reference: str) -> ApiError:
    """Google's answer for a file that is not yours, deleted, expired or never existed: one message."""
    name = file_id(reference) or reference
    return ApiError(403, f"You do not have permission to access the File {name} or it may not exist.")


@dataclass(frozen=True)
class _Upload:
    """An upload in progress: a row in `uploads` and its bytes so far in `partial/<upload id>`."""

    upload_id: str
    owner: str
    id: str
    display_name: str | None
    mime_type: str
    declared: int | None
    started: float


class FileStore:
    """One directory: `data/<id>` holds the bytes, `files.sqlite` the metadata and the uploads in
    progress, so every process of `--workers N` sees the same files and can take any chunk."""

    def __init__(self, limits: FileLimits) -> None:
        self.limits = limits
        self._root = limits.path()
        self._data = self._root / "data"
        self._partial = self._root / "partial"
        self._db: sqlite3.Connection | None = None
        self._locks: dict[str, asyncio.Lock] = {}  # one chunk at a time per upload (in this process)

    # -- lifecycle --

    def open(self) -> None:
        self._data.mkdir(parents=True, exist_ok=True)
        self._partial.mkdir(parents=True, exist_ok=True)
        self._db = connect_shared(self._root / "files.sqlite")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS files (id TEXT PRIMARY KEY, owner TEXT NOT NULL, display_name TEXT,"
            " mime_type TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL, created REAL NOT NULL,"
            " expires REAL NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS files_by_owner ON files (owner, created, id)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS uploads (upload_id TEXT PRIMARY KEY, owner TEXT NOT NULL,"
            " id TEXT NOT NULL, display_name TEXT, mime_type TEXT NOT NULL, declared INTEGER,"
            " started REAL NOT NULL)"
        )

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "FileStore.open() first"
        return self._db

    # -- uploads --

    def start_upload(
        self, owner: str, display_name: str | None, mime_type: str, declared: int | None, name: str | None
    ) -> str:
        """Checks the metadata and the caps; returns the upload id the chunks must present."""
        if display_name is not None and len(display_name) > MAX_DISPLAY_NAME:
            raise ApiError(400, f"displayName must be at most {MAX_DISPLAY_NAME} characters.")
        if declared is not None:
            self._check_size(owner, declared)
        if name is not None:
            wanted = name.removeprefix("files/")
            if not _ID.fullmatch(wanted):
                raise ApiError(
                    400,
                    "File name must be up to 40 lowercase letters, digits or dashes, not starting or "
                    "ending with a dash.",
                )
            taken = self.db.execute("SELECT 1 FROM uploads WHERE id = ?", (wanted,)).fetchone()
            if taken or self._row(wanted) is not None:
                raise ApiError(409, f"File files/{wanted} already exists.")
            new_id = wanted
        else:
            new_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
        upload_id = secrets.token_urlsafe(32)
        self._partial_path(upload_id).touch()
        self.db.execute(
            "INSERT INTO uploads VALUES (?, ?, ?, ?, ?, ?, ?)",
            (upload_id, owner, new_id, display_name, mime_type, declared, time.time()),
        )
        return upload_id

    def received(self, upload_id: str) -> int:
        self._upload(upload_id)
        return self._received(upload_id)

    async def append(self, upload_id: str, offset: int, chunks: AsyncIterator[bytes]) -> None:
        """Writes one chunk at `offset` (which must be where the upload stands)."""
        upload = self._upload(upload_id)
        async with self._locks.setdefault(upload_id, asyncio.Lock()):
            received = self._received(upload_id)
            if offset != received:
                raise ApiError(400, f"Upload offset {offset} does not match the {received} bytes received.")
            cap = self._max_bytes(upload)
            buffer = bytearray()
            async for piece in chunks:
                buffer += piece
                if received + len(buffer) > cap:
                    self.cancel(upload_id)
                    raise self._too_large(upload)
                if len(buffer) >= WRITE_SLICE:
                    received += await self._write(upload_id, bytes(buffer))
                    buffer.clear()
            if buffer:
                await self._write(upload_id, bytes(buffer))

    async def finalize(self, upload_id: str) -> StoredFile:
        upload = self._upload(upload_id)
        async with self._locks.setdefault(upload_id, asyncio.Lock()):
            size = self._received(upload_id)
            if upload.declared is not None and size != upload.declared:
                self.cancel(upload_id)
                declared = f"X-Goog-Upload-Header-Content-Length said {upload.declared}"
                raise ApiError(400, f"Upload ended at {size} bytes; {declared}.")
            self._check_size(upload.owner, size, exclude=upload_id)
            sha256 = await asyncio.to_thread(_sha256, self._partial_path(upload_id))
            created = time.time()
            stored = StoredFile(
                upload.id, upload.owner, upload.display_name, upload.mime_type, size, sha256,
                created, created + self.limits.lifetime_s,
            )  # fmt: skip
            self._partial_path(upload_id).replace(self._data / upload.id)
            self.db.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))
            self._locks.pop(upload_id, None)
            self.db.execute(
                "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (stored.id, stored.owner, stored.display_name, stored.mime_type, stored.size, stored.sha256,
                 stored.created, stored.expires),
            )  # fmt: skip
            return stored

    def cancel(self, upload_id: str) -> None:
        self.db.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))
        self._locks.pop(upload_id, None)
        self._partial_path(upload_id).unlink(missing_ok=True)

    def _partial_path(self, upload_id: str) -> Path:
        return self._partial / upload_id

    def _received(self, upload_id: str) -> int:
        try:
            return self._partial_path(upload_id).stat().st_size
        except FileNotFoundError:
            return 0

    async def _write(self, upload_id: str, data: bytes) -> int:
        def write() -> None:
            with self._partial_path(upload_id).open("ab") as f:
                f.write(data)

        await asyncio.to_thread(write)
        return len(data)

    def _upload(self, upload_id: str) -> _Upload:
        row = self.db.execute("SELECT * FROM uploads WHERE upload_id = ?", (upload_id,)).fetchone()
        if row is None:
            raise ApiError(404, "Upload not found: it was finished, cancelled, or has expired.")
        return _Upload(*row)

    def _max_bytes(self, upload: _Upload) -> int:
        cap = self.limits.max_file_mb * 1024 * 1024
        return min(cap, upload.declared) if upload.declared is not None else cap

    def _too_large(self, upload: _Upload) -> ApiError:
        if upload.declared is not None and upload.declared <= self.limits.max_file_mb * 1024 * 1024:
            return ApiError(400, f"Upload is larger than the {upload.declared} bytes it declared.")
        return ApiError(413, f"File size exceeds the limit of {self.limits.max_file_mb} MiB.")

    def _check_size(self, owner: str, size: int, exclude: str | None = None) -> None:
        if size > self.limits.max_file_mb * 1024 * 1024:
            raise ApiError(413, f"File size exceeds the limit of {self.limits.max_file_mb} MiB.")
        (stored,) = self.db.execute(
            "SELECT COALESCE(SUM(size), 0) FROM files WHERE owner = ? AND expires > ?", (owner, time.time())
        ).fetchone()
        pending = sum(
            declared if declared is not None else self._received(upload_id)
            for upload_id, declared in self.db.execute(
                "SELECT upload_id, declared FROM uploads WHERE owner = ? AND upload_id != ?",
                (owner, exclude or ""),
            )
        )
        if stored + pending + size > self.limits.quota_mb * 1024 * 1024:
            raise ApiError(
                429, f"Storage quota exceeded: the files of this API key may hold {self.limits.quota_mb} MiB."
            )

    # -- files --

    def get(self, owner: str, reference: str) -> StoredFile:
        """The caller's own unexpired file, or Google's 403 (the same whether it is missing or not yours)."""
        found = file_id(reference)
        stored = self._row(found) if found else None
        if stored is None or stored.owner != owner or stored.expires <= time.time():
            raise not_accessible(reference)
        return stored

    def list(self, owner: str, page_size: int, page_token: str | None) -> tuple[list[StoredFile], str | None]:
        """Newest first; the page token is the last file's (created, id), opaque to the client."""
        if not 1 <= page_size <= 100:
            page_size = 10 if page_size <= 0 else 100
        after = _decode_token(page_token)
        query = "SELECT * FROM files WHERE owner = ? AND expires > ?"
        params: list[object] = [owner, time.time()]
        if after is not None:
            query += " AND (created < ? OR (created = ? AND id < ?))"
            params += [after[0], after[0], after[1]]
        query += " ORDER BY created DESC, id DESC LIMIT ?"
        rows = [StoredFile(*r) for r in self.db.execute(query, [*params, page_size + 1])]
        more = len(rows) > page_size
        rows = rows[:page_size]
        token = _encode_token(rows[-1]) if more else None
        return rows, token

    def delete(self, owner: str, reference: str) -> None:
        stored = self.get(owner, reference)
        self.db.execute("DELETE FROM files WHERE id = ?", (stored.id,))
        (self._data / stored.id).unlink(missing_ok=True)

    async def read(self, owner: str, reference: str) -> tuple[StoredFile, bytes]:
        stored = self.get(owner, reference)
        try:
            data = await asyncio.to_thread((self._data / stored.id).read_bytes)
        except FileNotFoundError:
            raise not_accessible(reference) from None
        return stored, data

    def sweep(self) -> int:
        """Removes expired files and abandoned uploads; returns how many files went."""
        now = time.time()
        expired = [r[0] for r in self.db.execute("SELECT id FROM files WHERE expires <= ?", (now,))]
        for gone in expired:
            self.db.execute("DELETE FROM files WHERE id = ?", (gone,))
            (self._data / gone).unlink(missing_ok=True)
        stale = self.db.execute(
            "SELECT upload_id FROM uploads WHERE started <= ?", (now - UPLOAD_LIFETIME_S,)
        )
        for (upload_id,) in stale.fetchall():
            self.cancel(upload_id)
        return len(expired)

    async def sweep_forever(self) -> None:
        while True:
            self.sweep()
            await asyncio.sleep(self.limits.sweep_interval_s)

    def _row(self, id_: str) -> StoredFile | None:
        row = self.db.execute("SELECT * FROM files WHERE id = ?", (id_,)).fetchone()
        return StoredFile(*row) if row else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1024 * 1024):
            h.update(block)
    return h.hexdigest()


def _encode_token(last: StoredFile) -> str:
    return base64.urlsafe_b64encode(f"{last.created!r}:{last.id}".encode()).decode()


def _decode_token(token: str | None) -> tuple[float, str] | None:
    if not token:
        return None
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        created, _, last_id = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        return float(created), last_id
    raise ApiError(400, "Invalid page token.")


@dataclass(frozen=True)
class CallerFiles:
    """One caller's view of the store: what their `fileData` parts resolve against."""

    store: FileStore
    owner: str

    def resolve(self, contents: list[Content]) -> None:
        """Checks every `fileData` the user sent is theirs and live (else Google's 403), and fills in
        the name and type it was uploaded with, under which code finds it in its working directory."""
        for content in contents:
            for part in content.parts:
                data = part.file_data
                if data is None or content.role not in (None, "user"):
                    continue
                if not data.file_uri:
                    raise ApiError(400, "fileData.fileUri is required.")
                stored = self.store.get(self.owner, data.file_uri)
                data.display_name = data.display_name or stored.display_name
                data.mime_type = data.mime_type or stored.mime_type

    async def read(self, uri: str) -> bytes | None:
        try:
            return (await self.store.read(self.owner, uri))[1]
        except ApiError:
            return None
