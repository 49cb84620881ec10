"""What every REST route shares: the API version in the path, the caller, bounded bodies, JSON out."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Request
from fastapi.responses import Response
from pydantic import BaseModel

from live.api_errors import ApiError
from live.auth import rest_caller

VERSION = Annotated[str, Path(pattern=r"^v1(beta|alpha)?$", description="API version")]


class Caller:
    """The authenticated caller of a request, as an opaque owner id (files are bound to it)."""

    def __init__(self, api_keys: list[str]) -> None:
        self._api_keys = api_keys

    def __call__(self, request: Request) -> str:
        owner = rest_caller(request.headers, request.query_params, self._api_keys)
        request.state.owner = owner
        return owner

    @staticmethod
    def of(request: Request) -> str:
        """The owner `Caller` found for this request (the app authenticates every REST route first)."""
        owner: str = request.state.owner
        return owner


async def read_body(request: Request, limit: int) -> bytes:
    """The body, read no further than `limit` whatever Content-Length says."""
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise ApiError(400, f"Request payload size exceeds the limit: {limit} bytes.")
    return bytes(raw)


def json_response(model: BaseModel) -> Response:
    return Response(model.model_dump_json(by_alias=True, exclude_none=True), media_type="application/json")
