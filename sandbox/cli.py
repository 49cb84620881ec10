"""`openlive sandbox ...`: run one job through the real pool, or show what isolation this host gives."""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
import sys
from pathlib import Path

from sandbox.config import PoolConfig
from sandbox.models import File, Job, Outcome
from sandbox.pool import LocalPool, SandboxUnavailable


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openlive sandbox", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run FILE.py as one sandboxed job and print the result")
    run.add_argument("file", type=Path, help="the Python code to run")
    run.add_argument("--input", type=Path, action="append", default=[], help="a file to place in its cwd")
    run.add_argument("--deadline", type=float, default=30.0, help="wall-clock seconds (default 30)")
    status = sub.add_parser("status", help="start the pool and print its health report")
    for p in (run, status):
        p.add_argument("--allow-weak-isolation", action="store_true", help="run even if a layer is missing")
    return parser


def _save(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    print(f"saved {path}")


async def _run(args: argparse.Namespace) -> int:
    config = PoolConfig(slots=1, spare_runners=0, allow_weak_isolation=args.allow_weak_isolation)
    pool = LocalPool(config)
    try:
        await pool.start()
    except SandboxUnavailable as e:
        print(f"sandbox unavailable: {e}", file=sys.stderr)
        return 2
    try:
        if args.command == "status":
            print(pool.status().model_dump_json(indent=2))
            return 0
        files = [
            File(name=p.name, data=p.read_bytes(), mime_type=mimetypes.guess_type(p.name)[0] or "text/plain")
            for p in args.input
        ]
        result = await pool.run(Job(code=args.file.read_text(), files=files, deadline_s=args.deadline))
    finally:
        await pool.close()
    print(f"{result.outcome.value} in {result.duration_s * 1000:.0f} ms")
    print(result.output, end="" if result.output.endswith("\n") or not result.output else "\n")
    stem = args.file.with_suffix("")
    for i, png in enumerate(result.images, 1):
        _save(stem.with_name(f"{stem.name}-figure-{i}.png"), png)
    for f in result.files:
        _save(stem.with_name(f"{stem.name}-files") / f.name, f.data)
    return 0 if result.outcome == Outcome.OK else 1


def main(argv: list[str]) -> int:
    """Entry point for `openlive sandbox`; `argv` excludes the program and subcommand names."""
    return asyncio.run(_run(_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
