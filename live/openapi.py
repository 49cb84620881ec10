"""The OpenAPI document the app serves: FastAPI's, plus the request bodies the routes read themselves.

The REST routes read their bodies by hand (to stop at the size limit), so FastAPI cannot see them; their
schemas are added here under the names the routes reference.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from protocol import ErrorResponse

REF_TEMPLATE = "#/components/schemas/{model}"
ERROR = REF_TEMPLATE.format(model="ErrorResponse")


def install(app: FastAPI, bodies: list[type[BaseModel]]) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title="openlive",
                version="1",
                summary="The Gemini REST API surface served by openlive (the Live API is a WebSocket).",
                routes=app.routes,
            )
            documented: list[type[BaseModel]] = [*bodies, ErrorResponse]
            models: list[tuple[type[BaseModel], Literal["validation"]]] = [
                (m, "validation") for m in documented
            ]
            _, defs = models_json_schema(models, ref_template=REF_TEMPLATE)
            for operation in (op for path in schema["paths"].values() for op in path.values()):
                # FastAPI documents a 422 for bad parameters; openlive answers those 400, Google's way
                if operation.get("responses", {}).pop("422", None) is not None:
                    operation["responses"].setdefault("400", {"description": "Invalid argument",
                        "content": {"application/json": {"schema": {"$ref": ERROR}}}})  # fmt: skip
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for unused in ("HTTPValidationError", "ValidationError"):
                components.pop(unused, None)
            for name, definition in defs.get("$defs", {}).items():
                components.setdefault(name, definition)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
