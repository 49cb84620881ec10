"""Bad input over a raw WebSocket: each case closes with the right code and a short reason,
and a healthy session running alongside is not disturbed."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.conftest import API_KEY, Server
from tests.live_helpers import SEED_PROMPT, ask, text_config

SETUP = json.dumps({"setup": {"model": "models/gemini-live-2.5-flash-preview"}})


async def closed_with(
    server: Server, frames: list[str | bytes], headers: dict[str, str] | None = None, url: str | None = None
) -> tuple[int, str, list[Any]]:
    """Sends frames, then reads until the server closes; returns (code, reason, messages received)."""
    received: list[Any] = []
    async with websockets.connect(
        url or server.live_url(),
        ssl=server.ssl_context(),
        additional_headers=headers if headers is not None else {"x-goog-api-key": API_KEY},
        max_size=None,
    ) as ws:
        try:
            for frame in frames:
                await ws.send(frame)
            async with asyncio.timeout(30):
                async for raw in ws:
                    received.append(json.loads(raw))
        except ConnectionClosed:
            pass
        assert ws.close_code is not None
        return ws.close_code, ws.close_reason or "", received


@pytest.mark.parametrize(
    ("frames", "code", "reason_part"),
    [
        (["this is not json"], 1007, "JSON"),
        ([b"\xff\xfe not utf-8"], 1007, ""),
        (["[1, 2, 3]"], 1007, ""),
        ([json.dumps({"client_content": {"turns": []}})], 1007, "setup"),
        ([SETUP, json.dumps({"bogus": {}})], 1007, "bogus"),
        ([SETUP, json.dumps({"setup": {"model": "models/x"}, "client_content": {}})], 1007, ""),
        ([SETUP, SETUP], 1007, "setup"),
        ([SETUP, json.dumps({"clientContent": {"turns": "not a list"}})], 1007, ""),
        ([SETUP, json.dumps({"toolResponse": {"functionResponses": [{"id": 5, "response": []}]}})], 1007, ""),
        ([json.dumps({"setup": {}})], 1007, ""),
    ],
    ids=[
        "not-json",
        "not-utf8",
        "not-object",
        "before-setup",
        "unknown-key",
        "two-keys",
        "second-setup",
        "bad-field-type",
        "bad-tool-response",
        "setup-without-model",
    ],
)
async def test_malformed_input_closes_1007(
    server: Server, frames: list[str | bytes], code: int, reason_part: str
) -> None:
    got_code, reason, _ = await closed_with(server, frames)
    assert got_code == code
    assert reason_part in reason
    assert 0 < len(reason.encode()) <= 123
    assert "Traceback" not in reason


async def test_oversize_frame_closes_1007(server: Server) -> None:
    big = json.dumps({"realtimeInput": {"text": "x" * (16 * 1024 * 1024 + 1)}})
    code, reason, _ = await closed_with(server, [SETUP, big])
    assert code == 1007 and "exceeds the limit" in reason


@pytest.mark.parametrize("headers", [{}, {"x-goog-api-key": "wrong"}], ids=["missing-key", "wrong-key"])
async def test_bad_key_closes_1008(server: Server, headers: dict[str, str]) -> None:
    code, reason, received = await closed_with(server, [SETUP], headers=headers)
    assert code == 1008 and "unregistered callers" in reason and len(reason.encode()) <= 123
    assert received == []  # no setupComplete without a valid key


async def test_key_in_query_parameter_is_accepted(server: Server) -> None:
    url = server.live_url() + f"?key={API_KEY}"
    async with websockets.connect(url, ssl=server.ssl_context()) as ws:
        await ws.send(SETUP)
        first = await asyncio.wait_for(ws.recv(), 30)
    assert isinstance(first, bytes)  # binary frames, as Google sends
    assert "setupComplete" in json.loads(first)


async def setup_complete(server: Server, url: str, headers: dict[str, str]) -> bool:
    async with websockets.connect(url, ssl=server.ssl_context(), additional_headers=headers) as ws:
        await ws.send(SETUP)
        return "setupComplete" in json.loads(await asyncio.wait_for(ws.recv(), 30))


@pytest.mark.parametrize(
    ("query", "headers"),
    [("", {"Authorization": f"Token {API_KEY}"}), (f"?access_token={API_KEY}", {})],
    ids=["authorization-token", "access-token-query"],
)
async def test_key_as_token_is_accepted_and_checked(
    server: Server, query: str, headers: dict[str, str]
) -> None:
    assert await setup_complete(server, server.live_url() + query, headers)
    wrong_url = server.live_url() + query.replace(API_KEY, "wrong")
    wrong = {k: v.replace(API_KEY, "wrong") for k, v in headers.items()}
    code, reason, received = await closed_with(server, [SETUP], headers=wrong, url=wrong_url)
    assert code == 1008 and "unregistered callers" in reason and received == []


async def test_a_second_configured_key_is_accepted(test_server: Server) -> None:
    async with test_server.client(api_key="second-key").aio.live.connect(
        model="m", config=text_config()
    ) as session:
        assert (await ask(session, "echo two keys")).text() == "echo: two keys"
    code, _, _ = await closed_with(test_server, [SETUP], headers={"x-goog-api-key": "third-key"})
    assert code == 1008


async def test_unknown_path_closes_1008(server: Server) -> None:
    url = f"{server.ws_base}/ws/google.ai.generativelanguage.v1beta.GenerativeService.Nope"
    code, _, _ = await closed_with(server, [SETUP], url=url)
    assert code == 1008


@pytest.mark.parametrize("version", ["v1", "v1beta", "v1alpha"])
async def test_every_version_and_double_slash(server: Server, version: str) -> None:
    url = server.live_url(version).replace("/ws/", "//ws/")
    async with websockets.connect(
        url, ssl=server.ssl_context(), additional_headers={"x-goog-api-key": API_KEY}
    ) as ws:
        await ws.send(SETUP)
        assert json.loads(await asyncio.wait_for(ws.recv(), 30))["setupComplete"]["sessionId"]


async def test_bad_clients_do_not_disturb_a_healthy_session(server: Server) -> None:
    """A healthy SDK session runs its turn while a crowd of broken clients is refused."""

    async def healthy() -> str:
        async with server.client().aio.live.connect(model="m", config=text_config()) as session:
            turn = await ask(session, SEED_PROMPT)
            return turn.of("result")[0][1]

    bad = [["not json"], [SETUP, '{"nope": 1}'], [SETUP, SETUP], ['{"clientContent": {}}']] * 5
    results = await asyncio.gather(healthy(), *(closed_with(server, frames) for frames in bad))
    assert results[0].strip() == "5117"
    assert all(r[0] == 1007 for r in results[1:])
    async with httpx.AsyncClient(verify=server.ssl_context()) as http:
        assert (await http.get(f"{server.url}/healthz")).json()["status"] == "ok"
    assert server.proc.poll() is None
