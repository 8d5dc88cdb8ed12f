"""Gateway authentication: which presented keys pass, and what a refusal looks like."""

from __future__ import annotations

import orjson
import pytest

from relaygate.errors import GatewayError
from relaygate.middleware.auth import AuthLayer, bearer
from relaygate.security.keys import KeyStore
from relaygate.telemetry import Telemetry
from tests.fakes import ScriptedHandler, answer, gateway_request

KEYS = KeyStore.build(("gw-key-one", "gw-key-two"), {})


async def call(telemetry: Telemetry, headers: dict[str, str]) -> ScriptedHandler:
    """Send a request with ``headers`` through the auth layer; it must be let through."""
    inner = ScriptedHandler(answer(200))
    response = await AuthLayer(KEYS, telemetry)(inner)(gateway_request(headers=headers))
    assert response.status == 200
    return inner


async def refused(telemetry: Telemetry, headers: dict[str, str]) -> GatewayError:
    """Send a request with ``headers`` through the auth layer; it must be refused."""
    inner = ScriptedHandler()
    with pytest.raises(GatewayError) as caught:
        await AuthLayer(KEYS, telemetry)(inner)(gateway_request(headers=headers))
    assert inner.requests == []
    return caught.value


@pytest.mark.parametrize(
    "headers",
    [
        {"x-portkey-api-key": "gw-key-one"},
        {"x-portkey-api-key": "gw-key-two"},
        {"authorization": "Bearer gw-key-one"},
        {"authorization": "bearer gw-key-two"},
        {"authorization": "  Bearer   gw-key-one  "},
    ],
    ids=["portkey-header", "second-key", "bearer", "lower-case-scheme", "extra-spaces"],
)
async def test_a_known_gateway_key_is_let_through(
    telemetry: Telemetry, headers: dict[str, str]
) -> None:
    inner = await call(telemetry, headers)
    assert len(inner.requests) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-portkey-api-key": "gw-key-three"},
        {"authorization": "Bearer gw-key-three"},
        {"authorization": "Basic Z3cta2V5LW9uZQ=="},
        {"authorization": "gw-key-one"},
        {"authorization": "Bearer "},
        {"x-portkey-api-key": "gw-key-on"},
        {"x-portkey-api-key": "gw-key-one-and-more"},
    ],
    ids=[
        "no-key",
        "unknown-portkey-header",
        "unknown-bearer",
        "basic-scheme",
        "no-scheme",
        "empty-bearer",
        "prefix-of-key",
        "key-with-suffix",
    ],
)
async def test_anything_else_is_refused_with_401(
    telemetry: Telemetry, headers: dict[str, str]
) -> None:
    error = await refused(telemetry, headers)
    assert error.status == 401
    assert error.type == "authentication_error"
    assert error.code == "invalid_api_key"


async def test_a_refusal_is_an_openai_shaped_401_without_the_presented_key(
    telemetry: Telemetry,
) -> None:
    error = await refused(telemetry, {"authorization": "Bearer sk-leaked-provider-key"})
    response = error.to_response()
    assert response.status == 401
    assert response.body is not None
    assert "sk-leaked-provider-key" not in response.body.decode()
    body = orjson.loads(response.body)
    assert body["error"]["type"] == "authentication_error"
    assert "x-portkey-api-key" in body["error"]["message"]


@pytest.mark.parametrize(
    ("value", "token"),
    [
        (None, None),
        ("Bearer abc", "abc"),
        ("BEARER abc", "abc"),
        ("Bearer   abc  ", "abc"),
        ("Bearer", None),
        ("Bearer    ", None),
        ("Token abc", None),
        ("abc", None),
    ],
)
def test_bearer_extracts_the_token_of_a_bearer_value(value: str | None, token: str | None) -> None:
    assert bearer(value) == token
