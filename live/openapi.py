"""The OpenAPI document the app serves: FastAPI's, plus the request bodies the routes read themselves.

The REST routes read their bodies by hand (to stop at the size limit), so FastAPI cannot see them; their
schemas are added here under the names the routes reference.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

REF_TEMPLATE = "#/components/schemas/{model}"


def install(app: FastAPI, bodies: list[type[BaseModel]]) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title="openlive",
                version="1",
                summary="The Gemini REST API surface served by openlive (the Live API is a WebSocket).",
                routes=app.routes,
            )
            _, defs = models_json_schema([(m, "validation") for m in bodies], ref_template=REF_TEMPLATE)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, definition in defs.get("$defs", {}).items():
                components.setdefault(name, definition)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
