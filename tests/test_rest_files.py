"""The Files API through the real SDK: upload, use in code (REST and Live), list, get, delete, expiry."""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path

import httpx
import pytest
from google.genai import errors, types

from tests.conftest import API_KEY, Server, start_server
from tests.test_rest import CODE, sync_client

CSV = "x,y\n1,2\n2,4\n3,9\n"
MODEL = "gemini-2.5-flash"


def upload_csv(
    server: Server, tmp_path: Path, name: str = "measurements.csv", key: str = API_KEY
) -> types.File:
    path = tmp_path / name
    path.write_text(CSV)
    with sync_client(server, key) as client:  # closed at once: a collected client would hold its connection
        return client.files.upload(file=path, config=types.UploadFileConfig(display_name=name))


def kinds(parts: list[types.Part]) -> list[str]:
    names = ("text", "executable_code", "code_execution_result", "inline_data")
    return [next(k for k in names if getattr(p, k) is not None) for p in parts]


def test_upload_returns_google_metadata(rest_server: Server, tmp_path: Path) -> None:
    uploaded = upload_csv(rest_server, tmp_path)
    assert uploaded.name and uploaded.name.startswith("files/")
    assert uploaded.display_name == "measurements.csv" and uploaded.mime_type == "text/csv"
    assert uploaded.size_bytes == len(CSV) and uploaded.state == types.FileState.ACTIVE
    assert (
        uploaded.sha256_hash == base64.b64encode(hashlib.sha256(CSV.encode()).hexdigest().encode()).decode()
    )
    assert (uploaded.uri or "").startswith(rest_server.url) and (uploaded.uri or "").endswith(
        f"/{uploaded.name}"
    )
    assert uploaded.create_time and uploaded.expiration_time
    assert (uploaded.expiration_time - uploaded.create_time).total_seconds() == pytest.approx(48 * 3600)


def test_code_reads_the_uploaded_csv_by_its_display_name_and_plots_it(
    rest_server: Server, tmp_path: Path
) -> None:
    with sync_client(rest_server) as client:
        uploaded = upload_csv(rest_server, tmp_path)
        response = client.models.generate_content(
            model=MODEL, contents=[uploaded, "Plot measurements.csv"], config=CODE
        )
        parts = response.candidates[0].content.parts  # type: ignore[index, union-attr]
        assert parts is not None
        assert kinds(parts) == ["text", "executable_code", "code_execution_result", "inline_data", "text"]
        result = parts[2].code_execution_result
        assert result is not None and result.outcome == types.Outcome.OUTCOME_OK
        assert (result.output or "").split() == ["3", "15.0"]  # read from the uploaded bytes, not the script
        image = parts[3].inline_data
        assert (
            image is not None
            and image.mime_type == "image/png"
            and (image.data or b"").startswith(b"\x89PNG")
        )

    async def test_the_same_file_works_in_a_live_session(rest_server: Server, tmp_path: Path) -> None:
        uploaded = upload_csv(rest_server, tmp_path, "live.csv")
        client = rest_server.client()
        config = types.LiveConnectConfig(response_modalities=["TEXT"], tools=[{"code_execution": {}}])
        async with client.aio.live.connect(model="gemini-live-2.5-flash-preview", config=config) as session:
            file_part = types.Part(
                file_data=types.FileData(file_uri=uploaded.uri, mime_type=uploaded.mime_type)
            )
            turn = types.Content(role="user", parts=[file_part, types.Part(text="Plot live.csv")])
            await session.send_client_content(turns=turn)
            parts = [
                p
                async for message in session.receive()
                if message.server_content and message.server_content.model_turn
                for p in message.server_content.model_turn.parts or []
            ]
        results = [p.code_execution_result for p in parts if p.code_execution_result]
        assert [(r.outcome, (r.output or "").split()) for r in results] == [
            (types.Outcome.OUTCOME_OK, ["3", "15.0"])
        ]
        assert any(p.inline_data and (p.inline_data.data or b"").startswith(b"\x89PNG") for p in parts)

    async def test_a_live_session_cannot_use_a_file_it_does_not_own(
        rest_server: Server, tmp_path: Path
    ) -> None:
        theirs = upload_csv(rest_server, tmp_path, "theirs.csv", key="second-key")
        client = rest_server.client()
        async with client.aio.live.connect(model=MODEL, config=types.LiveConnectConfig()) as session:
            part = types.Part(file_data=types.FileData(file_uri=theirs.uri, mime_type="text/csv"))
            await session.send_client_content(turns=types.Content(role="user", parts=[part]))
            with pytest.raises(errors.APIError) as closed:
                async for _ in session.receive():
                    pass
        assert closed.value.code == 1008 and "permission to access the File" in str(closed.value.details)


def test_list_get_delete_and_a_deleted_file_is_refused(rest_server: Server, tmp_path: Path) -> None:
    with sync_client(rest_server) as client:
        mine = [upload_csv(rest_server, tmp_path, f"page{i}.csv") for i in range(3)]
        theirs = upload_csv(rest_server, tmp_path, "other.csv", key="second-key")
        pager = client.files.list(config=types.ListFilesConfig(page_size=2))
        assert len(pager.page) == 2  # paged on the server; iterating fetches the next pages
        listed = {f.name for f in pager}
        assert {f.name for f in mine} <= listed and theirs.name not in listed  # bound to the uploading key
        got = client.files.get(name=mine[0].name or "")
        assert got.sha256_hash == mine[0].sha256_hash and got.display_name == "page0.csv"
        with pytest.raises(errors.ClientError) as foreign:
            client.files.get(name=theirs.name or "")
        assert foreign.value.code == 403 and foreign.value.status == "PERMISSION_DENIED"

        client.files.delete(name=mine[0].name or "")
        with pytest.raises(errors.ClientError) as gone:
            client.files.get(name=mine[0].name or "")
        assert gone.value.code == 403
        file_id = (mine[0].name or "").removeprefix("files/")
        expected = f"You do not have permission to access the File {file_id} or it may not exist."
        assert gone.value.message == expected
        with pytest.raises(errors.ClientError) as refused:
            client.models.generate_content(model=MODEL, contents=[mine[0], "Plot page0.csv"], config=CODE)
        assert refused.value.code == 403 and "page0" not in str(refused.value.message)
        assert mine[0].name not in {f.name for f in client.files.list()}


def test_download_of_an_uploaded_file_is_refused_as_google_does(rest_server: Server, tmp_path: Path) -> None:
    uploaded = upload_csv(rest_server, tmp_path)
    with sync_client(rest_server) as client:
        with pytest.raises(errors.ClientError) as refused:
            client.files.download(file=uploaded.name or "")
        assert refused.value.code == 400 and refused.value.status == "INVALID_ARGUMENT"
        assert "uploaded files can't be downloaded" in (refused.value.message or "")


def test_size_cap_and_quota(rest_server: Server, tmp_path: Path) -> None:
    with sync_client(rest_server, "second-key") as client:
        big = tmp_path / "big.bin"
        big.write_bytes(b"\0" * (1024 * 1024 + 1))
        with pytest.raises(errors.ClientError) as too_large:
            client.files.upload(file=big, config=types.UploadFileConfig(mime_type="application/octet-stream"))
        assert too_large.value.code == 413 and "1 MiB" in (too_large.value.message or "")
        part = tmp_path / "part.bin"
        part.write_bytes(b"\1" * (700 * 1024))
        kept = [
            client.files.upload(file=part, config={"mime_type": "application/octet-stream"}) for _ in range(2)
        ]
        try:
            with pytest.raises(errors.ClientError) as over_quota:
                client.files.upload(file=part, config={"mime_type": "application/octet-stream"})
            assert over_quota.value.code == 429 and over_quota.value.status == "RESOURCE_EXHAUSTED"
        finally:
            for f in kept:
                client.files.delete(name=f.name or "")


def test_upload_chunks_need_the_upload_id_not_a_key(rest_server: Server) -> None:
    """A guessed or finished upload URL is refused; the chunk's error stops the SDK's retries."""
    url = f"{rest_server.url}/upload/v1beta/files?upload_id=guessed&upload_protocol=resumable"
    headers = {"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "0"}
    response = httpx.post(url, content=b"abc", headers=headers, verify=rest_server.ssl_context())
    assert response.status_code == 404 and response.headers["x-goog-upload-status"] == "final"
    assert response.json()["error"]["status"] == "NOT_FOUND"


def test_expired_files_are_refused_and_removed(certs: Path, tmp_path: Path) -> None:
    config = tmp_path / "openlive.toml"
    config.write_text("[files]\nlifetime_s = 1.0\nsweep_interval_s = 0.2\n")
    server = start_server(certs, tmp_path / "server.log", "--backend", "scripted", "--config", str(config))
    try:
        uploaded = upload_csv(server, tmp_path, "short.csv")
        data = tmp_path / "server-files" / "data"
        assert [p.name for p in data.iterdir()] == [(uploaded.name or "").removeprefix("files/")]
        deadline = time.monotonic() + 15
        while any(data.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(data.iterdir())  # the sweeper removed the bytes
        with sync_client(server) as client, pytest.raises(errors.ClientError) as expired:
            client.files.get(name=uploaded.name or "")
        assert expired.value.code == 403
    finally:
        server.stop()
