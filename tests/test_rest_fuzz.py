"""Schema-driven fuzzing of the REST surface: schemathesis generates requests from the OpenAPI document
the server itself serves, sends them to a real server, and every answer must be a deliberate one: never
a 5xx, never a traceback, and every error in Google's `{"error": {code, message, status}}` shape."""

from __future__ import annotations

import json
import time

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.openapi import from_url

from tests.conftest import API_KEY, Server

EXAMPLES = 12  # per operation; with derandomize the run is the same every time and stays well under a minute


def test_no_request_gets_a_server_error_or_a_traceback(rest_server: Server) -> None:
    ca = str(rest_server.ca)
    schema = from_url(f"{rest_server.url}/openapi.json", verify=ca)
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {
        "/{version}/models/{model}:generateContent",
        "/upload/{version}/files",
        "/{version}/files",
    } <= paths
    started = time.monotonic()
    tried = 0
    for operation in operations:
        if operation.path == "/healthz":
            continue  # the health report, not an API call

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def answers_deliberately(case: schemathesis.Case) -> None:
            nonlocal tried
            tried += 1
            response = case.call(base_url=rest_server.url, headers={"x-goog-api-key": API_KEY}, verify=ca,
                                 timeout=30)  # fmt: skip
            body = response.text
            where = f"{case.method} {case.formatted_path}"
            assert response.status_code < 500, f"{where}: {body}"
            assert "Traceback" not in body and 'File "/' not in body, where
            if response.status_code >= 400:
                error = json.loads(body)["error"]
                assert set(error) == {"code", "message", "status"}, where
                assert error["code"] == response.status_code, where

        answers_deliberately()
    assert tried >= EXAMPLES * (len(operations) - 1) // 2  # most operations generated their examples
    assert time.monotonic() - started < 60


def test_the_document_describes_what_the_server_answers(rest_server: Server) -> None:
    doc = httpx.get(f"{rest_server.url}/openapi.json", verify=rest_server.ssl_context()).json()
    assert {
        "/{version}/models/{model}:generateContent", "/{version}/models/{model}:streamGenerateContent",
        "/{version}/models/{model}:countTokens", "/{version}/models", "/{version}/models/{model}",
        "/upload/{version}/files", "/{version}/files", "/{version}/files/{file_id}",
        "/{version}/files/{file_id}:download",
    } <= set(doc["paths"])  # fmt: skip
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            codes = operation["responses"]
            assert "422" not in codes, f"{method} {path}"  # invalid parameters are answered 400
            for code, answer in codes.items():
                if code.startswith(("4", "5")):
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, f"{method} {path} {code}"
    generate = doc["paths"]["/{version}/models/{model}:generateContent"]["post"]
    body = generate["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert "contents" in doc["components"]["schemas"][body]["properties"]
