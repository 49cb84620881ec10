"""The `openlive` command: serve, certs; sandbox, chat and bench come from their own packages."""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvicorn
from pydantic import SecretStr, ValidationError

from live import logs, tracing
from live.app import create_app
from live.backends.base import ModelBackend
from live.backends.llama import LlamaBackend, LlamaConfig
from live.backends.openai_compat import OpenAIBackend
from live.backends.registry import Backends
from live.backends.scripted import ScriptedBackend
from live.certs import write_certs
from live.config import Settings, load_settings
from live.events import EventBus
from live.files import FileStore
from live.lifecycle import Lifecycle, LifecycleConfig
from live.metrics import Metrics
from live.processes import listen, serve_processes
from live.services import Services
from live.serving import live_protocol
from live.store import open_store
from live.tokens import KeyLimits
from live.voice import (
    EspeakSynthesizer,
    OpenAISpeechConfig,
    OpenAISynthesizer,
    OpenAITranscriber,
    OpenAITranscriptionConfig,
    PocketsphinxTranscriber,
    SileroPool,
    Synthesizer,
    Transcriber,
    VoiceEngines,
)
from sandbox import Executor, LocalPool
from sandbox.mqtt import MqttPool


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


def make_executor(settings: Settings) -> Executor:
    if settings.executor == "local":
        return LocalPool(settings.sandbox)
    return MqttPool(settings.broker.config(settings.executor))


def make_events(settings: Settings) -> EventBus | None:
    if not settings.events:
        return None
    return EventBus(settings.broker.config(settings.events), settings.events_content)


def make_lifecycle(settings: Settings, metrics: Metrics) -> Lifecycle:
    config = LifecycleConfig(
        max_connection_s=settings.max_connection_s,
        max_session_s=settings.max_session_s,
        resumption_ttl_s=settings.resumption_ttl_s,
        drain_grace_s=settings.drain_grace_s,
    )
    limits = KeyLimits(settings.max_sessions_per_key, settings.max_jobs_per_key)
    return Lifecycle(config, open_store(settings.resumption_store), limits, metrics)


def make_voice(settings: Settings) -> VoiceEngines:
    """Speech engines: embedded unless an upstream URL is configured."""

    def secret(value: SecretStr | None) -> str | None:
        return value.get_secret_value() if value else None

    stt: Transcriber = (
        OpenAITranscriber(
            OpenAITranscriptionConfig(settings.stt_url, settings.stt_model, secret(settings.stt_key))
        )
        if settings.stt_url
        else PocketsphinxTranscriber(settings.stt_workers)
    )
    tts: Synthesizer = (
        OpenAISynthesizer(
            OpenAISpeechConfig(
                settings.tts_url,
                settings.tts_model,
                secret(settings.tts_key),
                default_voice=settings.tts_voice,
                voices=settings.tts_voices,
            )
        )
        if settings.tts_url
        else EspeakSynthesizer()
    )
    return VoiceEngines(vad=SileroPool(), stt=stt, tts=tts)


def make_services(settings: Settings) -> Services:
    metrics = Metrics()
    return Services(
        backends=make_backends(settings),
        executor=make_executor(settings),
        files=FileStore(settings.files),
        lifecycle=make_lifecycle(settings, metrics),
        voice=make_voice(settings),
        events=make_events(settings),
        metrics=metrics,
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
        "stt_url": args.stt_url,
        "stt_model": args.stt_model,
        "tts_url": args.tts_url,
        "tts_model": args.tts_model,
        "tts_voice": args.tts_voice,
        "upstream_code_mode": args.upstream_code_mode,
        "executor": args.executor,
        "events": args.events,
        "events_content": args.events_content or None,
        "workers": args.workers,
        "max_connection_s": args.max_connection_s,
        "max_session_s": args.max_session_s,
        "resumption_store": args.resumption_store,
        "resumption_ttl_s": args.resumption_ttl_s,
        "drain_grace_s": args.drain_grace_s,
        "max_sessions_per_key": args.max_sessions_per_key,
        "max_jobs_per_key": args.max_jobs_per_key,
        "ws_compression": args.ws_compression,
        "otlp_endpoint": args.otlp_endpoint,
    }
    broker = {
        "username": args.broker_username,
        "ca_file": args.broker_ca,
        "cert_file": args.broker_cert,
        "key_file": args.broker_key,
    }
    if any(v is not None for v in broker.values()):
        overrides["broker"] = {k: v for k, v in broker.items() if v is not None}
    try:
        settings = load_settings(overrides, args.config)
    except ValidationError as e:
        raise SystemExit(f"openlive: {e}") from None
    if args.files_dir is not None:
        settings.files.directory = args.files_dir
    logs.configure(settings.log_level)
    if settings.otlp_endpoint and not tracing.available():
        raise SystemExit("openlive: --otlp-endpoint needs OpenTelemetry: pip install 'openlive[otel]'")

    def announce(port: int) -> None:
        host = settings.host
        shown_host = f"[{host}]" if ":" in host else host
        if not settings.api_keys:
            print("openlive: no API keys configured, accepting any key", file=sys.stderr, flush=True)
        print(f"openlive listening on {settings.scheme}://{shown_host}:{port}", flush=True)

    if settings.workers > 1:
        with tempfile.TemporaryDirectory(prefix="openlive-") as scratch:
            if settings.resumption_store == "memory":
                # Each process's memory is its own: resumption and tokens must be seen by all of them.
                store = f"sqlite:{Path(scratch) / 'sessions.sqlite'}"
                settings = settings.model_copy(update={"resumption_store": store})
                print(f"openlive: {settings.workers} processes share {store}", file=sys.stderr, flush=True)
            run_one = functools.partial(_run, settings)
            return serve_processes(settings.host, settings.port, settings.workers, run_one, announce)
    sock = listen(settings.host, settings.port)
    _run(settings, sock, lambda: announce(sock.getsockname()[1]))
    return 0


def _run(settings: Settings, sock: socket.socket, ready: Callable[[], None]) -> None:
    """One server process on a listening socket, until SIGINT or SIGTERM."""
    app = create_app(settings, make_services, on_ready=ready)
    drain: Callable[[], Awaitable[None]] = app.state.drain
    config = uvicorn.Config(
        app,
        ssl_certfile=settings.tls_cert,
        ssl_keyfile=settings.tls_key,
        ws=live_protocol(app.state.live),  # uvicorn's sans-I/O websockets, lean per connection
        ws_max_size=4 * settings.max_message_bytes,  # the session answers oversize frames itself
        ws_per_message_deflate=settings.ws_compression,
        log_level="warning",
        lifespan="on",
    )
    # uvicorn shuts down in order on SIGINT/SIGTERM, then re-raises the signal: that is a normal exit.
    # On uvicorn's loop ("auto": uvloop where installed, as with uvicorn[standard]): less CPU per frame.
    with contextlib.suppress(KeyboardInterrupt):
        DrainingServer(config, drain).run(sockets=[sock])


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
    s.add_argument("--files-dir", type=Path, help="Files API storage (default ~/.local/share/openlive/files)")
    s.add_argument("--executor", help="where code runs: local (default) or mqtt://HOST:PORT (remote workers)")
    s.add_argument("--events", help="publish session events to mqtt://HOST:PORT")
    s.add_argument("--events-content", action="store_true", help="events include code, output and arguments")
    s.add_argument(
        "--otlp-endpoint", help="export OpenTelemetry spans to this OTLP/HTTP collector, e.g. http://HOST:4318"
    )
    s.add_argument("--broker-username", help="MQTT login; the password: env OPENLIVE_BROKER__PASSWORD")
    s.add_argument("--broker-ca", type=Path, help="mqtts://: CA file of the broker's certificate")
    s.add_argument("--broker-cert", type=Path, help="mqtts://: client certificate")
    s.add_argument("--broker-key", type=Path, help="mqtts://: client key")
    s.add_argument("--workers", type=int, help="server processes sharing the port (default 1)")
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
    s.add_argument("--stt-url", help="speech recognition upstream, OpenAI-compatible (default: pocketsphinx)")
    s.add_argument("--stt-model", help="the transcription upstream's model (default whisper-1)")
    s.add_argument("--tts-url", help="speech synthesis upstream, OpenAI-compatible (default: espeak-ng)")
    s.add_argument("--tts-model", help="the speech upstream's model (default tts-1)")
    s.add_argument("--tts-voice", help="the speech upstream's voice (default alloy)")
    s.add_argument(
        "--ws-compression",
        action=argparse.BooleanOptionalAction,
        help="accept permessage-deflate when a client offers it (default off: see BENCHMARKS.md)",
    )
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
    sub.add_parser("worker", help="a sandbox worker taking jobs from an MQTT broker (openlive worker --help)")
    sub.add_parser("chat", help="terminal chat client for a running server (openlive chat --help)")
    sub.add_parser("bench", help="load generator (openlive bench --help)")
    return top


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    delegated = {
        "sandbox": "sandbox.cli",
        "worker": "sandbox.mqtt.worker",
        "chat": "clients.chat",
        "bench": "clients.loadgen",
    }
    if argv and argv[0] in delegated:  # imported on demand: each pulls in its own dependencies
        module = importlib.import_module(delegated[argv[0]])
        return int(module.main(argv[1:]))
    args = parser().parse_args(argv)
    return int(args.func(args))
