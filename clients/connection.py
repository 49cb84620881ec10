"""What every terminal client needs to reach a server: the Live URL, TLS trust, and the setup message."""

from __future__ import annotations

import argparse
import os
import ssl
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from protocol import ClientMessage, FunctionDeclaration, GenerationConfig, Setup, Tool

DEFAULT_URL = "https://localhost:8443"
DEFAULT_MODEL = "gemini-live-2.5-flash-preview"
LIVE_METHOD = "google.ai.generativelanguage.{version}.GenerativeService.BidiGenerateContent"


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("OPENLIVE_URL", DEFAULT_URL),
        help="server base URL (https://, http://, wss:// or ws://); env OPENLIVE_URL",
    )
    parser.add_argument(
        "--key",
        default=os.environ.get("OPENLIVE_API_KEY") or os.environ.get("GEMINI_API_KEY") or "anything",
        help="API key, sent as x-goog-api-key; env OPENLIVE_API_KEY or GEMINI_API_KEY",
    )
    parser.add_argument("--ca", type=Path, help="CA certificate to trust (e.g. .certs/ca.pem)")
    parser.add_argument("--insecure", action="store_true", help="do not verify the server certificate")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--api-version", default="v1beta", choices=["v1", "v1beta", "v1alpha"])


def live_url(base: str, version: str) -> str:
    """The Live WebSocket URL under a base URL; a URL already naming the method is kept as it is."""
    parts = urlsplit(base if "://" in base else f"https://{base}")
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/")
    if "BidiGenerateContent" not in path:
        path = f"{path}/ws/{LIVE_METHOD.format(version=version)}"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def ssl_context(url: str, ca: Path | None, insecure: bool) -> ssl.SSLContext | None:
    if not url.startswith("wss://"):
        return None
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def setup_message(
    model: str,
    *,
    code_execution: bool,
    functions: list[FunctionDeclaration],
    modality: str = "TEXT",
    system: str | None = None,
) -> ClientMessage:
    tools: list[Tool] = []
    if code_execution:
        tools.append(Tool(code_execution={}))
    if functions:
        tools.append(Tool(function_declarations=functions))
    return ClientMessage(
        setup=Setup(
            model=model if model.startswith("models/") else f"models/{model}",
            generation_config=GenerationConfig(response_modalities=[modality]),
            tools=tools,
            system_instruction={"parts": [{"text": system}]} if system else None,
        )
    )


def dump_client_message(message: ClientMessage) -> str:
    """camelCase JSON, absent fields left out: what a text frame to the server carries."""
    return message.model_dump_json(by_alias=True, exclude_none=True)
