"""What crosses the broker between servers and workers: topic names and messages. Pure, no I/O.

A message is a `sandbox.frames` buffer (a JSON header plus raw blobs: input files, PNGs, written files).
One larger than the broker's limit travels as numbered `chunk` messages that the receiver reassembles.
Topics:
  openlive/jobs                      jobs; workers share it as `$share/openlive-workers/openlive/jobs`
  openlive/workers/<name>/status     a worker's heartbeat (free capacity), and its will: `offline`
  openlive/workers/<name>/in         to one worker: a deferred job body, host-call replies, cancel
  openlive/servers/<id>/in           to one server (the jobs' response topic): accepted, calls, result
Every message about a job carries the job id as MQTT 5 correlation data.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

from sandbox import frames
from sandbox.models import File, Job, Outcome, Result

JOBS = "openlive/jobs"
SHARED_GROUP = "openlive-workers"
SHARED_JOBS = f"$share/{SHARED_GROUP}/{JOBS}"
WORKER_STATUS_ALL = "openlive/workers/+/status"
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")

Message = tuple[dict[str, Any], list[bytes]]


def check_name(name: str) -> str:
    """Names become topic levels: no wildcards, separators or empty levels."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"bad worker or server name {name!r}: use 1-64 of A-Z a-z 0-9 . _ -")
    return name


def worker_status(name: str) -> str:
    return f"openlive/workers/{name}/status"


def worker_inbox(name: str) -> str:
    return f"openlive/workers/{name}/in"


def server_inbox(server_id: str) -> str:
    return f"openlive/servers/{server_id}/in"


def worker_of_status_topic(topic: str) -> str | None:
    parts = topic.split("/")
    if len(parts) == 4 and parts[:2] == ["openlive", "workers"] and parts[3] == "status":
        return parts[2]
    return None


# --- jobs and results ------------------------------------------------------------------------------


def job_message(job_id: str, job: Job) -> Message:
    header = {
        "t": "job",
        "id": job_id,
        "code": job.code,
        "files": [{"name": f.name, "mime": f.mime_type} for f in job.files],
        "deadline_s": job.deadline_s,
        "host_functions": job.host_functions,
        "session": job.session,
    }
    return header, [f.data for f in job.files]


def deferred_job(job_id: str) -> Message:
    """Stands in for a job too large for one message: its body follows to the worker that accepts it."""
    return {"t": "job", "id": job_id, "deferred": True}, []


def parse_job(message: Message) -> Job:
    header, blobs = message
    files = header.get("files")
    if not isinstance(files, list) or len(files) != len(blobs):
        raise frames.FrameError("malformed job: files")
    try:
        return Job(
            code=header["code"],
            files=[
                File(name=f["name"], mime_type=f["mime"], data=b) for f, b in zip(files, blobs, strict=True)
            ],
            deadline_s=header["deadline_s"],
            host_functions=header["host_functions"],
            session=header["session"],
        )
    except (KeyError, TypeError, ValueError) as e:
        raise frames.FrameError(f"malformed job: {e}") from None


def result_message(result: Result, worker: str) -> Message:
    header = {
        "t": "result",
        "outcome": result.outcome.value,
        "output": result.output,
        "duration_s": result.duration_s,
        "images": len(result.images),
        "files": [{"name": f.name, "mime": f.mime_type} for f in result.files],
        "worker": worker,
    }
    return header, [*result.images, *(f.data for f in result.files)]


def parse_result(message: Message) -> Result:
    header, blobs = message
    n_images, files = header.get("images"), header.get("files")
    if not isinstance(n_images, int) or not isinstance(files, list) or n_images + len(files) != len(blobs):
        raise frames.FrameError("malformed result")
    try:
        return Result(
            outcome=Outcome(header["outcome"]),
            output=header["output"],
            duration_s=header["duration_s"],
            images=blobs[:n_images],
            files=[
                File(name=f["name"], mime_type=f["mime"], data=b)
                for f, b in zip(files, blobs[n_images:], strict=True)
            ],
            worker=header["worker"],
        )
    except (KeyError, TypeError, ValueError) as e:
        raise frames.FrameError(f"malformed result: {e}") from None


# --- chunking --------------------------------------------------------------------------------------


def split(message: Message, limit: int, message_id: str) -> list[bytes]:
    """Payloads of at most about `limit` bytes: the message itself, or chunks of its encoding."""
    payload = frames.encode(*message)
    if len(payload) <= limit:
        return [payload]
    n = math.ceil(len(payload) / limit)
    return [
        frames.encode({"t": "chunk", "m": message_id, "i": i, "n": n}, [payload[i * limit : (i + 1) * limit]])
        for i in range(n)
    ]


class Assembler:
    """Joins chunks back into messages; bounded in size, and partial messages expire."""

    def __init__(self, max_bytes: int, ttl_s: float = 120.0) -> None:
        self._max_bytes = max_bytes
        self._ttl_s = ttl_s
        self._parts: dict[str, tuple[float, int, list[bytes]]] = {}

    def feed(self, payload: bytes) -> Message | None:
        """The message this payload completes (or is), else None. FrameError on anything malformed."""
        header, blobs = frames.decode(payload, max_blob_total=self._max_bytes)
        if header.get("t") != "chunk":
            return header, blobs
        key, i, n = header.get("m"), header.get("i"), header.get("n")
        if (
            not (isinstance(key, str) and isinstance(i, int) and isinstance(n, int) and 0 <= i < n)
            or len(blobs) != 1
        ):
            raise frames.FrameError("malformed chunk")
        now = time.monotonic()
        self._parts = {k: v for k, v in self._parts.items() if now - v[0] < self._ttl_s}
        _, expected, pieces = self._parts.setdefault(key, (now, n, []))
        if expected != n or i != len(pieces):  # QoS 1 keeps one sender's order: a gap is a loss
            del self._parts[key]
            raise frames.FrameError("chunk out of order")
        pieces.append(blobs[0])
        if sum(map(len, pieces)) > self._max_bytes:
            del self._parts[key]
            raise frames.FrameError("chunked message too large")
        if len(pieces) < n:
            return None
        del self._parts[key]
        return frames.decode(b"".join(pieces), max_blob_total=self._max_bytes)
