"""The `openlive` command: serve, certs; sandbox, chat and bench come from their own packages."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import socket
import sys
from collections.abc import Awaitable, Callable
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
from live.lifecycle import Lifecycle, LifecycleConfig
from live.services import Services
from live.store import open_store
from live.tokens import KeyLimits
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


def make_lifecycle(settings: Settings) -> Lifecycle:
    config = LifecycleConfig(
        max_connection_s=settings.max_connection_s,
        max_session_s=settings.max_session_s,
        resumption_ttl_s=settings.resumption_ttl_s,
        drain_grace_s=settings.drain_grace_s,
    )
    limits = KeyLimits(settings.max_sessions_per_key, settings.max_jobs_per_key)
    return Lifecycle(config, open_store(settings.resumption_store), limits)


def make_services(settings: Settings) -> Services:
    return Services(
        backends=make_backends(settings),
        executor=LocalPool(settings.sandbox),
        lifecycle=make_lifecycle(settings),
    )


class DrainingServer(uvicorn.Server):
    """Before uvicorn closes every WebSocket (1012), stop listening and let sessions drain (goAway, 1001)."""

    def __init__(self, config: uvicorn.Config, drain: Callable[[], Awaitable[None]]) -> None:
        super().__init__(config)
        self._drain = drain

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        await self._drain()
        await super().shutdown(sockets)


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
        "max_connection_s": args.max_connection_s,
        "max_session_s": args.max_session_s,
        "resumption_store": args.resumption_store,
        "resumption_ttl_s": args.resumption_ttl_s,
        "drain_grace_s": args.drain_grace_s,
        "max_sessions_per_key": args.max_sessions_per_key,
        "max_jobs_per_key": args.max_jobs_per_key,
    }
    settings = load_settings(overrides, args.config)
    logs.configure(settings.log_level)
    sock = _listen(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    shown_host = f"[{host}]" if ":" in host else host

    def ready() -> None:
        if not settings.api_keys:
            print("openlive: no API keys configured, accepting any key", file=sys.stderr, flush=True)
        print(f"openlive listening on {settings.scheme}://{shown_host}:{port}", flush=True)

    app = create_app(settings, make_services, on_ready=ready)
    drain: Callable[[], Awaitable[None]] = app.state.drain
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
        asyncio.run(DrainingServer(config, drain).serve(sockets=[sock]))
    return 0


def parity(_: argparse.Namespace) -> int:
    from live.parity import document  # reads the installed google-genai SDK (a test dependency)

    sys.stdout.write(document())
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
    s.add_argument("--max-connection-s", type=float, help="goAway, then close, after this long (default 600)")
    s.add_argument(
        "--max-session-s",
        type=float,
        help="session length without context compression, over resumptions (default 900; 0: none)",
    )
    s.add_argument("--resumption-store", help="memory (default) or sqlite:PATH (shared, survives restarts)")
    s.add_argument("--resumption-ttl-s", type=float, help="handles stay valid this long after a session ends")
    s.add_argument("--drain-grace-s", type=float, help="on shutdown, time for running turns (default 10)")
    s.add_argument("--max-sessions-per-key", type=int, help="concurrent Live sessions per API key")
    s.add_argument("--max-jobs-per-key", type=int, help="concurrent code jobs per API key")
    s.add_argument("--log-level")
    s.add_argument("--config", type=Path, help="TOML file with the same settings")
    s.set_defaults(func=serve)

    c = sub.add_parser("certs", help="write a local CA and a localhost certificate")
    c.add_argument("dir", type=Path)
    c.set_defaults(func=certs)

    p = sub.add_parser("parity", help="print docs/parity.md: what openlive does with each protocol field")
    p.set_defaults(func=parity)

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
