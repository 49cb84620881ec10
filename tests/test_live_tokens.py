"""Ephemeral tokens through the real SDK (`client.aio.auth_tokens.create`, then `...Constrained`): uses,
deadlines, resumption without using a use, locked constraints; per-key session limits."""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from google import genai
from google.genai import errors, types
from websockets.exceptions import ConnectionClosed

from live.auth import UNREGISTERED_CALLER
from tests.conftest import API_KEY, Server
from tests.test_live_lifecycle import MODEL, Log, closed, config, serve

NOW = datetime.datetime.now
pytestmark = pytest.mark.filterwarnings("ignore::google.genai.errors.ExperimentalWarning")


@pytest.fixture(scope="module")
def token_server(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = serve(certs, tmp_path_factory.mktemp("tokens"), "memory", "--max-connection-s", "600",
                "--max-sessions-per-key", "2", "--max-jobs-per-key", "1")  # fmt: skip
    yield srv
    srv.stop()


async def mint(server: Server, version: str = "v1alpha", **fields: Any) -> str:
    client = genai.Client(
        api_key=API_KEY,
        http_options=types.HttpOptions(
            base_url=server.url, api_version=version, async_client_args={"verify": server.ssl_context()}
        ),
    )
    token = await client.aio.auth_tokens.create(
        config=types.CreateAuthTokenConfig(http_options=types.HttpOptions(api_version=version), **fields)
    )
    assert token.name is not None and token.name.startswith("auth_tokens/")
    return token.name


async def refused(server: Server, token: str, cfg: types.LiveConnectConfig) -> errors.APIError:
    with pytest.raises(errors.APIError) as caught:
        async with server.client(api_key=token, api_version="v1alpha").aio.live.connect(
            model=MODEL, config=cfg
        ) as session:
            await session.receive().__anext__()
    return caught.value


@pytest.mark.parametrize("version", ["v1alpha", "v1beta"])
async def test_a_token_opens_one_session_and_resumes_it(token_server: Server, version: str) -> None:
    token = await mint(token_server, version, uses=1)
    client = token_server.client(api_key=token, api_version=version)
    log = Log()
    async with client.aio.live.connect(model=MODEL, config=config()) as session:
        await log.until(session, "update")
        await log.ask(session, "remember 4")
    error = await refused(token_server, token, config())
    assert error.code == 1011 and error.details == "Token has been used too many times"
    resumed = Log()
    async with client.aio.live.connect(model=MODEL, config=config(log.handles[-1])) as session:
        await resumed.until(session, "update")  # a resumption does not use the token
        await resumed.ask(session, "what did the code print?")
    assert "The code printed 12." in resumed.turn.text()


async def test_expired_tokens_are_refused_as_google_does(token_server: Server) -> None:
    late = await mint(token_server, new_session_expire_time=NOW(datetime.UTC) - datetime.timedelta(seconds=1))
    error = await refused(token_server, late, config())
    assert (error.code, error.details) == (1011, "new_session_expire_time deadline exceeded")
    expired = await mint(token_server, expire_time=NOW(datetime.UTC) - datetime.timedelta(seconds=1))
    error = await refused(token_server, expired, config())
    assert (error.code, error.details) == (1011, "Token has expired")


async def test_a_session_ends_when_its_token_expires(token_server: Server) -> None:
    token = await mint(token_server, expire_time=NOW(datetime.UTC) + datetime.timedelta(seconds=2))
    log = Log()
    loop = asyncio.get_running_loop()
    client = token_server.client(api_key=token, api_version="v1alpha")
    async with client.aio.live.connect(model=MODEL, config=config()) as session:
        started = loop.time()
        error = await closed(session, log)
    assert (error.code, error.details) == (1011, "auth token has expired")
    assert [k for k, _ in log.turn.events] == ["update", "go_away"]
    assert loop.time() - started <= 3.0


async def test_locked_constraints_replace_the_clients_fields(token_server: Server) -> None:
    constraints = types.LiveConnectConstraints(
        model=MODEL,
        config=types.LiveConnectConfig(response_modalities=[types.Modality.TEXT], session_resumption={}),
    )  # no tools: the client's code-execution tool is not honoured
    token = await mint(token_server, live_connect_constraints=constraints)
    log = Log()
    client = token_server.client(api_key=token, api_version="v1alpha")
    async with client.aio.live.connect(model=MODEL, config=config()) as session:
        await log.until(session, "update")
        await log.ask(session, "remember 4")
    assert log.turn.of("code") == [] and "Stored." in log.turn.text()

    masked = await mint(token_server, live_connect_constraints=constraints, lock_additional_fields=[])
    log = Log()  # with a mask only the constraint's own fields are locked: the client's tools stand
    client = token_server.client(api_key=masked, api_version="v1alpha")
    async with client.aio.live.connect(model=MODEL, config=config()) as session:
        await log.until(session, "update")
        await log.ask(session, "remember 4")
    assert log.turn.of("result")[0][1].strip() == "12"


async def test_token_only_on_the_constrained_method(token_server: Server) -> None:
    token = await mint(token_server, uses=2)
    base = token_server.live_url("v1alpha")
    setup = json.dumps({"setup": {"model": f"models/{MODEL}"}})
    for url, accepted in (
        (f"{base}?access_token={token}", False),
        (f"{base}Constrained?access_token={token}", True),
    ):
        async with websockets.connect(url, ssl=token_server.ssl_context()) as ws:
            if accepted:
                await ws.send(setup)
                assert "setupComplete" in json.loads(await ws.recv())
            else:  # refused at once: the close may come before the setup is even sent
                with pytest.raises(ConnectionClosed):
                    await ws.send(setup)
                    await ws.recv()
                assert ws.close_code == 1008 and ws.close_reason == UNREGISTERED_CALLER[:123]


def test_token_requests_are_checked_as_google_does(token_server: Server) -> None:
    url = f"{token_server.url}/v1alpha/auth_tokens"
    ctx = token_server.ssl_context()
    headers = {"x-goog-api-key": API_KEY}
    unknown = httpx.post(url, json={"liveConnectConstraints": {}}, headers=headers, verify=ctx)
    assert unknown.status_code == 400
    assert 'Unknown name "liveConnectConstraints"' in unknown.json()["error"]["message"]
    far = (NOW(datetime.UTC) + datetime.timedelta(hours=21)).isoformat()
    too_long = httpx.post(url, json={"expireTime": far}, headers=headers, verify=ctx)
    assert too_long.status_code == 400
    assert (
        too_long.json()["error"]["message"] == "expire_time is too far in the future. Maximum lifetime is 20h"
    )
    assert httpx.post(url, json={}, headers={"x-goog-api-key": "wrong"}, verify=ctx).status_code == 403


async def test_concurrent_sessions_per_key_are_limited(token_server: Server) -> None:
    client = token_server.client()
    async with (
        client.aio.live.connect(model=MODEL, config=config()) as one,
        client.aio.live.connect(model=MODEL, config=config()) as two,
    ):
        assert one.session_id and two.session_id
        error = await refused(token_server, API_KEY, config())
        assert error.code == 1011 and "at most 2 concurrent sessions per key" in (error.details or "")
        other = token_server.client(api_key="second-key")  # another key has its own allowance
        async with other.aio.live.connect(model=MODEL, config=config()) as three:
            assert three.session_id
    # Slots are given back once the server has ended both sessions (it may take a moment after the close).
    async with asyncio.timeout(10):
        while True:
            try:
                async with client.aio.live.connect(model=MODEL, config=config()) as again:
                    await again.receive().__anext__()
                    break
            except errors.APIError as exc:
                assert exc.code == 1011
                await asyncio.sleep(0.05)


async def test_concurrent_code_jobs_per_key_are_limited(token_server: Server) -> None:
    client = token_server.client()
    slow, quick = Log(), Log()
    async with (
        client.aio.live.connect(model=MODEL, config=config()) as a,
        client.aio.live.connect(model=MODEL, config=config()) as b,
    ):
        await slow.until(a, "update")
        await quick.until(b, "update")
        await a.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="clock after a rest")])
        )
        await slow.until(a, "code")  # its job holds the key's only slot (taken before the code is sent)
        await b.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="clock now")]))
        await asyncio.gather(slow.until(a, "result"), quick.until(b, "result"))
    # Each job printed the clock: the slow one as it ended, the quick one as it started.
    ((slow_outcome, rested),) = slow.turn.of("result")
    ((quick_outcome, started),) = quick.turn.of("result")
    assert slow_outcome == quick_outcome == "OUTCOME_OK"
    assert float(started) > float(rested)  # the quick job waited for the slot
