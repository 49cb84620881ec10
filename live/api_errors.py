"""Errors in the Gemini REST shape, on every route: the SDK turns them into ClientError / ServerError.

`{"error": {"code", "message", "status"}}` with the matching HTTP status is what the SDKs read
(errors.py: code from the HTTP status, message and status from the body). Unknown routes, wrong
methods, unreadable bodies and our own faults all answer in that shape; no traceback leaves the server.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from live.backends.errors import BackendError
from protocol import ErrorBody, ErrorResponse

log = logging.getLogger("openlive.api")

# google.rpc.Code names by HTTP status, as Google's front end pairs them.
STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    409: "ALREADY_EXISTS",
    413: "INVALID_ARGUMENT",  # a body or file over a size limit is an invalid argument, said with 413
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
INTERNAL_ERROR = "Internal error encountered."
METHOD_NOT_FOUND = "Method not found."
# A closed Live session's code says what a REST status says; backends speak in close codes.
_HTTP_FOR_CLOSE = {1007: 400, 1008: 404, 1011: 500}


def invalid_payload(exc: ValidationError) -> ApiError:
    """A body that does not parse: Google's wording, the first problem and where it is."""
    first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    where = ".".join(str(p) for p in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    return ApiError(400, f"Invalid JSON payload received. Invalid value at '{where}': {message}"
                    if where else f"Invalid JSON payload received. {message}")  # fmt: skip


class ApiError(Exception):
    """A client-visible REST error: raise it anywhere below a route."""

    def __init__(self, code: int, message: str, allow: str | None = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.allow = allow  # for 405: the methods the path does take

    @classmethod
    def from_backend(cls, exc: BackendError) -> ApiError:
        code = exc.http_status or _HTTP_FOR_CLOSE.get(exc.code, 500)
        return cls(code, exc.reason)

    def body(self) -> ErrorResponse:
        status = STATUS.get(self.code, "UNKNOWN")
        return ErrorResponse(error=ErrorBody(code=self.code, message=self.message, status=status))

    def response(self) -> JSONResponse:
        headers = {"Allow": self.allow} if self.code == 405 and self.allow else None
        return JSONResponse(self.body().model_dump(by_alias=True), status_code=self.code, headers=headers)


def install(app: FastAPI) -> None:
    """Every error the app can produce, in Google's shape."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(BackendError)
    async def backend_error(_: Request, exc: BackendError) -> JSONResponse:
        return ApiError.from_backend(exc).response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return ApiError(404, METHOD_NOT_FOUND).response()
        if exc.status_code == 405:
            message = f"Method {request.method} is not allowed for {request.url.path}."
            return ApiError(405, message, (exc.headers or {}).get("Allow")).response()
        return ApiError(exc.status_code, str(exc.detail)).response()

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return ApiError(400, f"Invalid value at '{where}': {first.get('msg', 'invalid')}").response()

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed: %s %s", request.method, request.url.path)
        return ApiError(500, INTERNAL_ERROR).response()
