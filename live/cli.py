"""The `openlive` command: serve, certs; sandbox, chat and bench come from their own packages."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import socket
import sys
from pathlib import Path

import uvicorn

from live import logs
from live.app import create_app
from live.backends.base import ModelBackend
from live.backends.llama import LlamaBackend, LlamaConfig
from live.backends.openai_compat import OpenAIBackend
from live.backends.registry import Backends
from live.backends.scripted import ScriptedBackend
from live.certs import write_certs
from live.config import Settings, load_settings
from live.files import FileStore
from live.services import Services
from sandbox import LocalPool


def make_backends(settings: Settings) -> Backends:
    """The default backend named by `--backend`, plus every configured upstream under its own name."""
    upstreams: list[ModelBackend] = [OpenAIBackend(u) for u in settings.all_upstreams()]
    if settings.backend == "scripted":
        scripted = ScriptedBackend.from_file(settings.script)
        return Backends([scripted, *upstreams], catch_all=scripted)
    if settings.backend == "llama":
        default: ModelBackend = LlamaBackend(
            LlamaConfig(model_path=settings.model, served_name=settings.model_name)
        )
        backends = [default, *upstreams]
    elif not upstreams:
        raise SystemExit(
            "openlive: --backend openai needs --upstream-url (or [[upstreams]] in the config file)"
        )
    else:
        default, backends = upstreams[0], upstreams
    primary = default.models()[0]
    return Backends(backends, aliases={p: t or primary for p, t in settings.model_aliases.items()})


def make_services(settings: Settings) -> Services:
    backends, files = make_backends(settings), FileStore(settings.files)
    return Services(backends=backends, executor=LocalPool(settings.sandbox), files=files)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def serve(args: argparse.Namespace) -> int:
    overrides = {
        "host": args.host,
        "port": args.port,
        "api_keys": args.api_key or None,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "backend": args.backend,
        "script": args.script,
        "log_level": args.log_level,
        "code_deadline_s": args.code_deadline,
        "model": args.model,
        "model_name": args.model_name,
        "upstream_url": args.upstream_url,
        "upstream_model": args.upstream_model,
        "upstream_key": args.upstream_key,
        "upstream_code_mode": args.upstream_code_mode,
    }
    settings = load_settings(overrides, args.config)
    if args.files_dir is not None:
        settings.files.directory = args.files_dir
    logs.configure(settings.log_level)
    sock = _listen(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    shown_host = f"[{host}]" if ":" in host else host

    def ready() -> None:
        if not settings.api_keys:
            print("openlive: no API keys configured, accepting any key", file=sys.stderr, flush=True)
        print(f"openlive listening on {settings.scheme}://{shown_host}:{port}", flush=True)

    app = create_app(settings, make_services, on_ready=ready)
    config = uvicorn.Config(
        app,
        ssl_certfile=settings.tls_cert,
        ssl_keyfile=settings.tls_key,
        ws_max_size=4 * settings.max_message_bytes,  # the session answers oversize frames itself
        log_level="warning",
        lifespan="on",
    )
    # uvicorn shuts down in order on SIGINT/SIGTERM, then re-raises the signal: that is a normal exit.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))
    return 0


def certs(args: argparse.Namespace) -> int:
    for path in write_certs(args.dir):
        print(path)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="openlive", description="A self-hostable Gemini Live API server.")
    sub = top.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the server")
    s.add_argument("--host")
    s.add_argument("--port", type=int, help="0 picks a free port (printed on start)")
    s.add_argument("--api-key", action="append", help="accepted API key (repeatable); env OPENLIVE_API_KEYS")
    s.add_argument("--tls-cert", type=Path)
    s.add_argument("--tls-key", type=Path)
    s.add_argument(
        "--backend", choices=["llama", "openai", "scripted"], help="the default model (default llama)"
    )
    s.add_argument("--model", type=Path, help="llama: a GGUF file (default: SmolLM2-135M-Instruct)")
    s.add_argument("--model-name", help="llama: the model name clients use (default: from the file)")
    s.add_argument("--script", type=Path, help="scripted: YAML or JSON script (default: bundled demo)")
    s.add_argument("--upstream-url", help="an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    s.add_argument("--upstream-model", help="the upstream's model name (also the name clients use)")
    s.add_argument("--upstream-key", help="the upstream's API key; env OPENLIVE_UPSTREAM_KEY")
    s.add_argument("--upstream-code-mode", choices=["tools", "fenced"], help="how the upstream runs code")
    s.add_argument("--code-deadline", type=float, help="seconds a code block may run (default 30)")
    s.add_argument("--files-dir", type=Path, help="Files API storage (default ~/.local/share/openlive/files)")
    s.add_argument("--log-level")
    s.add_argument("--config", type=Path, help="TOML file with the same settings")
    s.set_defaults(func=serve)

    c = sub.add_parser("certs", help="write a local CA and a localhost certificate")
    c.add_argument("dir", type=Path)
    c.set_defaults(func=certs)

    # Listed for --help; main() hands their arguments to the module that owns them.
    sub.add_parser("sandbox", help="run code through the sandbox pool (openlive sandbox --help)")
    sub.add_parser("chat", help="terminal chat client for a running server (openlive chat --help)")
    sub.add_parser("bench", help="load generator (openlive bench --help)")
    return top


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    delegated = {"sandbox": "sandbox.cli", "chat": "clients.chat", "bench": "clients.loadgen"}
    if argv and argv[0] in delegated:  # imported on demand: each pulls in its own dependencies
        module = importlib.import_module(delegated[argv[0]])
        return int(module.main(argv[1:]))
    args = parser().parse_args(argv)
    return int(args.func(args))
