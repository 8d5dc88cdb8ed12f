"""The gateway's own refusals on ``/v1/messages`` come in Anthropic's error shape.

Requests the gateway refuses before any target is called (a wrong or missing key, a body
over ``limits.max_body_bytes``, a key over its rate limit, a body that is not JSON) are
answered on this route as the ``anthropic`` SDK expects every error: ``{"type": "error",
"error": {"type", "message"}}`` with the refusal's status, and a ``request-id``.
"""

from __future__ import annotations

from typing import Any

import anthropic.types
import httpx
import pytest

from relaygate.security.keys import hash_key
from relaygate.telemetry import Telemetry
from tests.fakes import RecordingTransport, chat_payload
from tests.inprocess import asgi_client, gateway_app

KEY = "gw-door-key"
CONFIG: dict[str, Any] = {
    "default_config": {"provider": "openai", "api_key": "sk", "custom_host": "http://up.test/v1"},
    "auth": {
        "keys": [{"name": "door", "hash": hash_key(KEY), "limits": {"requests_per_minute": 1}}]
    },
    "limits": {"max_body_bytes": 4096},
}
ASK: dict[str, Any] = {
    "model": "m",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "hi"}],
}


def anthropic_error(answer: httpx.Response, status: int, kind: str) -> None:
    """``answer`` is the refusal ``status`` of type ``kind`` in Anthropic's shape."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body == {"type": "error", "error": {"type": kind, "message": body["error"]["message"]}}
    assert body["error"]["message"]
    assert answer.headers["request-id"]
    if kind != "request_too_large":  # documented for 413, not among the SDK's error types
        anthropic.types.ErrorResponse.model_validate(body)


@pytest.mark.parametrize(
    ("headers", "content", "status", "kind"),
    [
        ({}, None, 401, "authentication_error"),
        ({"x-api-key": "wrong"}, None, 401, "authentication_error"),
        ({"authorization": "Bearer wrong"}, None, 401, "authentication_error"),
        ({"x-api-key": KEY}, b"{not json", 400, "invalid_request_error"),
        ({"authorization": f"Bearer {KEY}"}, b"[1, 2]", 400, "invalid_request_error"),
        ({"x-api-key": KEY}, b'{"model": "' + b"m" * 5000 + b'"}', 413, "request_too_large"),
    ],
    ids=["no-key", "wrong-x-api-key", "wrong-bearer", "bad-json", "not-an-object", "too-large"],
)
async def test_a_refusal_before_routing_is_anthropic_shaped(
    telemetry: Telemetry,
    headers: dict[str, str],
    content: bytes | None,
    status: int,
    kind: str,
) -> None:
    upstream = RecordingTransport(httpx.Response(200, json=chat_payload("Hello")))
    async with asgi_client(gateway_app(CONFIG, telemetry, upstream)) as client:
        if content is None:
            answer = await client.post("/v1/messages", json=ASK, headers=headers)
        else:
            kind_header = {"content-type": "application/json", **headers}
            answer = await client.post("/v1/messages", content=content, headers=kind_header)
    anthropic_error(answer, status, kind)
    assert upstream.requests == []


@pytest.mark.parametrize("header", ["x-api-key", "authorization"])
async def test_a_key_over_its_rate_limit_is_an_anthropic_429_with_retry_after(
    telemetry: Telemetry, header: str
) -> None:
    value = KEY if header == "x-api-key" else f"Bearer {KEY}"
    upstream = RecordingTransport(httpx.Response(200, json=chat_payload("Hello")))
    async with asgi_client(gateway_app(CONFIG, telemetry, upstream)) as client:
        first = await client.post("/v1/messages", json=ASK, headers={header: value})
        second = await client.post("/v1/messages", json=ASK, headers={header: value})
    assert first.status_code == 200 and first.json()["content"][0]["text"] == "Hello"
    anthropic_error(second, 429, "rate_limit_error")
    assert int(second.headers["retry-after"]) >= 1
    assert len(upstream.requests) == 1
