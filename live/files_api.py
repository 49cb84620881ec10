"""The Files API routes, as `client.files` calls them: resumable upload, get, list, delete, download."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from live.api_errors import ApiError, invalid_payload
from live.files import FileStore
from live.rest_common import VERSION, Caller, json_response, read_body
from protocol import CreateFileRequest, CreateFileResponse, ErrorResponse, FileResource, ListFilesResponse

MAX_METADATA_BYTES = 64 * 1024
UPLOADED_NOT_DOWNLOADABLE = (
    "Only generated files can be downloaded, uploaded files can't be downloaded. You can tell which files "
    "are downloadable by checking the `source` or `download_uri` property."
)
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 413, 429)
}

FileId = Annotated[str, Path(pattern=r"^[a-z0-9-]{1,40}$", description="the id in files/<id>")]


def files_router(files: Callable[[], FileStore], caller: Caller) -> APIRouter:
    router = APIRouter(responses=_ERRORS, tags=["files"])
    authenticated = [Depends(caller)]  # not on upload chunks: their upload_id is the capability

    @router.post(
        "/upload/{version}/files",
        response_model=CreateFileResponse,
        summary="Resumable upload (start, upload, finalize, query, cancel)",
        openapi_extra={"requestBody": {"content": {"application/octet-stream": {"schema": {}}}}},
    )
    async def upload(
        request: Request,
        version: VERSION,
        x_goog_upload_protocol: Annotated[str | None, Header()] = None,
        x_goog_upload_command: Annotated[str | None, Header()] = None,
        x_goog_upload_offset: Annotated[int | None, Header(ge=0)] = None,
        x_goog_upload_header_content_length: Annotated[int | None, Header(ge=0)] = None,
        x_goog_upload_header_content_type: Annotated[str | None, Header()] = None,
        upload_id: Annotated[str | None, Query()] = None,
    ) -> Response:
        command = {c.strip() for c in (x_goog_upload_command or "").lower().split(",") if c.strip()}
        if upload_id is None:
            if x_goog_upload_protocol != "resumable" or command != {"start"}:
                raise ApiError(
                    400, "Only resumable uploads are supported: send X-Goog-Upload-Protocol: resumable "
                    "and X-Goog-Upload-Command: start.",
                )  # fmt: skip
            return await _start(request, version, x_goog_upload_header_content_length,
                                x_goog_upload_header_content_type)  # fmt: skip
        try:
            return await _transfer(request, version, upload_id, command, x_goog_upload_offset)
        except ApiError as exc:  # "final" stops the SDK's retries of a chunk: the error is the answer
            response = exc.response()
            response.headers["x-goog-upload-status"] = "final"
            return response

    async def _start(
        request: Request, version: str, length: int | None, content_type: str | None
    ) -> Response:
        owner = caller(request)
        raw = await read_body(request, MAX_METADATA_BYTES)
        try:
            meta = (CreateFileRequest.model_validate_json(raw) if raw.strip() else CreateFileRequest()).file
        except ValidationError as exc:
            raise invalid_payload(exc) from None
        meta = meta or FileResource()
        declared = length
        if declared is None and meta.size_bytes is not None and meta.size_bytes.isdigit():
            declared = int(meta.size_bytes)
        mime = content_type or meta.mime_type
        if not mime:
            raise ApiError(400, "Missing mime type: send X-Goog-Upload-Header-Content-Type or file.mimeType.")
        upload_id = files().start_upload(owner, meta.display_name, mime, declared, meta.name)
        url = f"{str(request.base_url).rstrip('/')}/upload/{version}/files?upload_id={upload_id}" \
              "&upload_protocol=resumable"  # fmt: skip
        headers = {"x-goog-upload-url": url, "x-goog-upload-status": "active",
                   "x-goog-upload-chunk-granularity": str(256 * 1024)}  # fmt: skip
        return Response(status_code=200, headers=headers)

    async def _transfer(
        request: Request, version: str, upload_id: str, command: set[str], offset: int | None
    ) -> Response:
        store = files()
        if command == {"cancel"}:
            store.cancel(upload_id)
            return Response(status_code=200, headers={"x-goog-upload-status": "cancelled"})
        if command == {"query"}:
            received = str(store.received(upload_id))
            headers = {"x-goog-upload-status": "active", "x-goog-upload-size-received": received}
            return Response(status_code=200, headers=headers)
        if not command or not command <= {"upload", "finalize"}:
            raise ApiError(400, f"Unknown X-Goog-Upload-Command {','.join(sorted(command))!r}.")
        if "upload" in command:
            await store.append(upload_id, store.received(upload_id) if offset is None else offset,
                               request.stream())  # fmt: skip
        if "finalize" not in command:
            return Response(status_code=200, headers={"x-goog-upload-status": "active"})
        stored = await store.finalize(upload_id)
        body = CreateFileResponse(file=stored.resource(str(request.base_url), version))
        response = json_response(body)
        response.headers["x-goog-upload-status"] = "final"
        return response

    @router.get(
        "/{version}/files",
        response_model=ListFilesResponse,
        dependencies=authenticated,
        summary="List the caller's files",
    )
    async def list_files(
        request: Request,
        version: VERSION,
        page_size: Annotated[int, Query(alias="pageSize")] = 10,
        page_token: Annotated[str | None, Query(alias="pageToken")] = None,
    ) -> Response:
        found, token = files().list(Caller.of(request), page_size, page_token)
        base = str(request.base_url)
        return json_response(ListFilesResponse(
            files=[f.resource(base, version) for f in found], next_page_token=token))  # fmt: skip

    @router.get(
        "/{version}/files/{file_id}:download",
        dependencies=authenticated,
        summary="Download (refused for uploaded files)",
    )
    async def download(request: Request, version: VERSION, file_id: FileId) -> Response:
        files().get(Caller.of(request), file_id)
        raise ApiError(400, UPLOADED_NOT_DOWNLOADABLE)

    @router.get(
        "/{version}/files/{file_id}",
        response_model=FileResource,
        dependencies=authenticated,
        summary="Get a file's metadata",
    )
    async def get_file(request: Request, version: VERSION, file_id: FileId) -> Response:
        return json_response(
            files().get(Caller.of(request), file_id).resource(str(request.base_url), version)
        )

    @router.delete("/{version}/files/{file_id}", dependencies=authenticated, summary="Delete a file")
    async def delete_file(request: Request, version: VERSION, file_id: FileId) -> JSONResponse:
        files().delete(Caller.of(request), file_id)
        return JSONResponse({})

    return router
