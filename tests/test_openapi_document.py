"""``GET /openapi.json``: the document describes exactly the routes the app serves."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema_rs
import pytest
import schemathesis
from starlette.applications import Starlette
from starlette.routing import Route

from relaygate.app import create_app
from relaygate.openapi import OPENAPI_VERSION, openapi_document
from tests.inprocess import asgi_client

API_ROUTES = {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"}
MESSAGES_ROUTES = {"/v1/messages", "/v1/messages/count_tokens"}
"""Anthropic's front door: POSTs answering errors in Anthropic's shape."""


async def fetch(app: Starlette) -> httpx.Response:
    async with asgi_client(app) as client:
        return await client.get("/openapi.json")


def served_paths(app: Starlette) -> set[str]:
    """Every path the app answers: its Starlette routes and the API routes."""
    return {route.path for route in app.routes if isinstance(route, Route)} | API_ROUTES


@pytest.mark.parametrize("metrics", [True, False], ids=["metrics-on", "metrics-off"])
async def test_the_document_lists_every_route_the_app_serves_and_no_other(metrics: bool) -> None:
    app = create_app({"telemetry": {"metrics": {"enabled": metrics}}})
    response = await fetch(app)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["openapi"] == OPENAPI_VERSION
    assert set(document["paths"]) == served_paths(app)
    assert ("/metrics" in document["paths"]) is metrics


def test_the_api_operations_are_posts_and_the_rest_gets() -> None:
    paths = openapi_document()["paths"]
    for path, item in paths.items():
        posts = API_ROUTES | MESSAGES_ROUTES
        assert set(item) == ({"post"} if path in posts else {"get"}), path


def test_every_error_status_of_an_api_operation_answers_in_the_openai_error_shape() -> None:
    document = openapi_document()
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert error["properties"]["error"]["required"] == ["message", "type", "param", "code"]
    for path in API_ROUTES:
        responses: dict[str, Any] = document["paths"][path]["post"]["responses"]
        errors = {status: r for status, r in responses.items() if status[0] in "45"}
        assert {"400", "413", "431", "502", "4XX", "5XX"} <= set(errors)
        for response in errors.values():
            assert response["content"] == {
                "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
            }


def test_every_request_header_relaygate_reads_is_documented_on_every_api_operation() -> None:
    document = openapi_document()
    parameters = document["components"]["parameters"]
    for path in API_ROUTES:
        refs = document["paths"][path]["post"]["parameters"]
        names = {parameters[ref["$ref"].rsplit("/", 1)[1]]["name"] for ref in refs}
        assert names >= {
            "x-portkey-config",
            "x-portkey-provider",
            "x-portkey-metadata",
            "x-portkey-trace-id",
            "x-portkey-custom-host",
            "x-portkey-request-timeout",
            "x-portkey-forward-headers",
            "traceparent",
        }
    schemes = document["components"]["securitySchemes"]
    assert schemes["GatewayKey"] == {**schemes["GatewayKey"], "type": "http", "scheme": "bearer"}
    assert schemes["PortkeyApiKey"]["name"] == "x-portkey-api-key"


def test_request_bodies_let_unknown_fields_through() -> None:
    schemas = openapi_document()["components"]["schemas"]
    for name in ("ChatCompletionRequest", "CompletionRequest", "EmbeddingRequest"):
        assert schemas[name]["type"] == "object"
        assert schemas[name]["additionalProperties"] is True
        assert "required" not in schemas[name]


def test_each_call_returns_a_document_of_its_own() -> None:
    first = openapi_document()
    first["components"]["schemas"]["Error"]["required"].append("changed")
    assert openapi_document()["components"]["schemas"]["Error"]["required"] == ["error"]


@pytest.mark.parametrize("metrics", [True, False], ids=["metrics-on", "metrics-off"])
def test_the_document_is_valid_openapi_3_1(metrics: bool) -> None:
    schemathesis.openapi.from_dict(openapi_document(metrics=metrics)).validate()


def test_the_validity_check_catches_an_invalid_document() -> None:
    document = openapi_document()
    document["paths"]["/health"]["get"]["responses"] = []
    with pytest.raises(jsonschema_rs.ValidationError, match="is not of type"):
        schemathesis.openapi.from_dict(document).validate()


def test_every_error_of_the_messages_routes_is_in_anthropics_shape() -> None:
    document = openapi_document()
    error = document["components"]["schemas"]["MessagesError"]
    assert error["required"] == ["type", "error"]
    for path in MESSAGES_ROUTES:
        responses: dict[str, Any] = document["paths"][path]["post"]["responses"]
        errors = [r for status, r in responses.items() if status[0] in "45"]
        assert errors
        for answer in errors:
            schema = answer["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/MessagesError"}
