"""REST on the embedded llama.cpp model: structured output held to its schema by a grammar, the token
budget, and countTokens by the model's own tokenizer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pydantic
import pytest
from google.genai import types

from tests.conftest import Server, start_server
from tests.llama_upstream import Upstream
from tests.test_rest import sync_client

pytestmark = pytest.mark.llama
MODEL = "gemini-2.5-flash"  # an alias of the default model


class City(pydantic.BaseModel):
    name: str
    population: int
    coastal: bool


@pytest.fixture(scope="module")
def llama_server(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    pytest.importorskip("llama_cpp")
    srv = start_server(certs, tmp_path_factory.mktemp("logs") / "llama-rest.log")  # the default backend
    yield srv
    srv.stop()


def describe_lisbon(server: Server, model: str) -> types.GenerateContentResponse:
    """A structured-output request: the answer must be a `City`."""
    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_schema=City, max_output_tokens=120, temperature=0.0
    )
    with sync_client(server) as client:
        return client.models.generate_content(
            model=model, contents="Describe the city of Lisbon.", config=config
        )


def test_structured_output_parses_against_its_schema(llama_server: Server) -> None:
    response = describe_lisbon(llama_server, MODEL)
    assert isinstance(response.parsed, City), response.text  # the SDK parsed it against the schema
    assert set(json.loads(response.text or "")) == {"name", "population", "coastal"}


def test_a_json_schema_holds_too(llama_server: Server) -> None:
    colors = {"type": "array", "items": {"enum": ["red", "blue"]}, "minItems": 2, "maxItems": 2}
    schema = {
        "type": "object",
        "properties": {"colors": colors},
        "required": ["colors"],
        "additionalProperties": False,
    }
    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_json_schema=schema, max_output_tokens=60
    )
    with sync_client(llama_server) as client:
        response = client.models.generate_content(model=MODEL, contents="Name two colors.", config=config)
    value = json.loads(response.text or "")
    assert list(value) == ["colors"] and len(value["colors"]) == 2
    assert set(value["colors"]) <= {"red", "blue"}


def test_tiny_max_output_tokens_ends_with_max_tokens(llama_server: Server) -> None:
    config = types.GenerateContentConfig(max_output_tokens=3)
    with sync_client(llama_server) as client:
        response = client.models.generate_content(
            model=MODEL, contents="Tell me a long story.", config=config
        )
    assert response.candidates and response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert response.usage_metadata and response.usage_metadata.candidates_token_count == 3


def test_count_tokens_is_the_prompt_the_model_reads(llama_server: Server) -> None:
    with sync_client(llama_server) as client:
        counted = client.models.count_tokens(model=MODEL, contents="What is the capital of France?")
        used = client.models.generate_content(
            model=MODEL, contents="What is the capital of France?",
            config=types.GenerateContentConfig(max_output_tokens=2),
        )  # fmt: skip
    assert counted.total_tokens and counted.total_tokens > 7  # the chat template's tokens count too
    assert used.usage_metadata and used.usage_metadata.prompt_token_count == counted.total_tokens


@pytest.fixture(scope="module")
def upstream_server(
    certs: Path, tools_upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """openlive in front of a real OpenAI-compatible server (llama_cpp.server), served as `smollm2`."""
    directory = tmp_path_factory.mktemp("upstream-rest")
    (directory / "openlive.toml").write_text(
        f'[[upstreams]]\nbase_url = "{tools_upstream.base_url}"\nmodel = "smollm2"\n'
        'json_mode = "json_object"\n'  # the form llama_cpp.server takes
    )
    srv = start_server(certs, directory / "server.log", "--backend", "openai",
                       "--config", str(directory / "openlive.toml"))  # fmt: skip
    yield srv
    srv.stop()


def test_structured_output_through_an_openai_compatible_upstream(upstream_server: Server) -> None:
    response = describe_lisbon(upstream_server, "smollm2")
    assert isinstance(response.parsed, City), response.text  # the upstream held it to the schema
