"""Every REST error reaches the SDK in Google's shape: the exception class, code, status and message."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from google import genai
from google.genai import errors, types

from live.auth import INVALID_API_KEY, INVALID_CREDENTIALS, UNREGISTERED_CALLER
from tests.conftest import API_KEY, Server, start_server
from tests.test_rest import sync_client

MODEL = "gemini-2.5-flash"


def client_with_headers(server: Server, headers: dict[str, str]) -> genai.Client:
    """The SDK always sends its key; an empty `x-goog-api-key` stands for none, so other credentials count."""
    return genai.Client(
        api_key="unused",
        http_options=types.HttpOptions(
            base_url=server.url, headers=headers, client_args={"verify": server.ssl_context()}
        ),
    )


def raised(call: object) -> errors.APIError:
    assert callable(call)
    with pytest.raises(errors.APIError) as info:
        call()
    return info.value


def test_400_invalid_argument_names_the_field(rest_server: Server) -> None:
    with sync_client(rest_server) as client:
        error = raised(lambda: client.models.generate_content(
            model=MODEL, contents="hi", config=types.GenerateContentConfig(candidate_count=2)))  # fmt: skip
        assert isinstance(error, errors.ClientError) and (error.code, error.status) == (
            400,
            "INVALID_ARGUMENT",
        )
        assert error.message == "generationConfig.candidateCount: only 1 candidate is supported."


def test_400_wrong_api_key(rest_server: Server) -> None:
    with sync_client(rest_server, api_key="wrong") as client:
        error = raised(lambda: client.models.list())
        assert isinstance(error, errors.ClientError)
        assert (error.code, error.status, error.message) == (400, "INVALID_ARGUMENT", INVALID_API_KEY)


def test_401_bad_token_and_403_no_credential(rest_server: Server) -> None:
    with client_with_headers(rest_server, {"x-goog-api-key": "", "Authorization": "Bearer nope"}) as bearer:
        error = raised(lambda: bearer.models.get(model=MODEL))
    assert isinstance(error, errors.ClientError)
    assert (error.code, error.status, error.message) == (401, "UNAUTHENTICATED", INVALID_CREDENTIALS)
    with client_with_headers(rest_server, {"x-goog-api-key": ""}) as anonymous:
        error = raised(lambda: anonymous.files.list())
    assert isinstance(error, errors.ClientError)
    assert (error.code, error.status, error.message) == (403, "PERMISSION_DENIED", UNREGISTERED_CALLER)


def test_404_unknown_route_and_405_wrong_method(rest_server: Server) -> None:
    with sync_client(rest_server) as client:
        error = raised(lambda: client.caches.list())  # cachedContents: a route openlive does not serve
        assert isinstance(error, errors.ClientError)
        assert (error.code, error.status, error.message) == (404, "NOT_FOUND", "Method not found.")
        error = raised(lambda: client.models.delete(model="openlive-scripted"))  # models/x answers GET only
        assert isinstance(error, errors.ClientError) and (error.code, error.status) == (405, "UNIMPLEMENTED")
        assert error.message == "Method DELETE is not allowed for /v1/models/openlive-scripted."
        raw = httpx.get(f"{rest_server.url}/no/such/path", verify=rest_server.ssl_context())
        assert raw.status_code == 404 and raw.json() == {
            "error": {"code": 404, "message": "Method not found.", "status": "NOT_FOUND"}
        }


def test_400_for_bodies_that_do_not_parse(rest_server: Server) -> None:
    url = f"{rest_server.url}/v1beta/models/{MODEL}:generateContent"
    headers = {"x-goog-api-key": API_KEY}
    for body in (b"{not json", b'{"contents": [{"parts": [{"text": 3}]}]}', b"[]"):
        response = httpx.post(url, content=body, headers=headers, verify=rest_server.ssl_context())
        assert response.status_code == 400, body
        error = response.json()["error"]
        assert error["status"] == "INVALID_ARGUMENT" and error["message"].startswith("Invalid JSON payload")
        assert "Traceback" not in response.text


class _FailingUpstream(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible server whose model fails: every completion answers 500."""

    def do_POST(self) -> None:
        body = json.dumps({"error": {"message": "model crashed", "type": "server_error"}}).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        return


@pytest.fixture(scope="module")
def upstream_server(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The scripted default plus two upstreams: one whose model fails (500), one that is down (refused)."""
    failing = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FailingUpstream)
    threading.Thread(target=failing.serve_forever, daemon=True).start()
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        down = free.getsockname()[1]  # closed again before use: nothing listens there
    directory = tmp_path_factory.mktemp("upstreams")
    (directory / "openlive.toml").write_text(
        f'[[upstreams]]\nbase_url = "http://127.0.0.1:{failing.server_address[1]}/v1"\nmodel = "broken"\n'
        "retries = 0\n"
        f'[[upstreams]]\nbase_url = "http://127.0.0.1:{down}/v1"\nmodel = "down"\nretries = 0\n'
    )
    srv = start_server(certs, directory / "server.log", "--backend", "scripted",
                       "--config", str(directory / "openlive.toml"))  # fmt: skip
    yield srv
    srv.stop()
    failing.shutdown()


def test_500_internal_and_503_unavailable(upstream_server: Server) -> None:
    with sync_client(upstream_server) as client:  # closed: an open keep-alive would slow the server's stop
        broken = raised(lambda: client.models.generate_content(model="broken", contents="hi"))
        error = raised(lambda: client.models.generate_content(model="down", contents="hi"))
    assert isinstance(broken, errors.ServerError)
    assert (broken.code, broken.status) == (500, "INTERNAL")
    assert broken.message == "the upstream model server failed (500)"
    assert isinstance(error, errors.ServerError)
    assert (error.code, error.status) == (503, "UNAVAILABLE")
    assert error.message == "the upstream model server is unreachable"


def test_an_error_mid_stream_arrives_as_an_error_event(upstream_server: Server) -> None:
    with sync_client(upstream_server) as client, pytest.raises(errors.ServerError) as info:
        list(client.models.generate_content_stream(model="down", contents="hi"))
    assert (info.value.code, info.value.status) == (503, "UNAVAILABLE")
