"""Answers refused at the edge are observed like every other: a ``request`` log line, a count
in ``relaygate_requests_total``, and the ``x-request-id`` and ``x-portkey-trace-id`` headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from structlog.testing import capture_logs

from relaygate.exporters import semconv as sc
from relaygate.gateway import GatewayDeps
from relaygate.telemetry import Telemetry
from relaygate.transport import AsyncTransport
from tests.fakes import RecordingTransport, chat_payload
from tests.inprocess import asgi_client, gateway_app

LIMIT = 1024
TRACE = "trace-from-the-caller"
CONFIG: dict[str, Any] = {
    "default_config": {
        "provider": "openai",
        "api_key": "sk-a",
        "custom_host": "http://upstream.invalid/v1",
    },
    "limits": {"max_body_bytes": LIMIT},
    "auth": {"api_keys": ["gw-key"]},
}
KEY = {"authorization": "Bearer gw-key", "x-portkey-trace-id": TRACE}
BODY = orjson.dumps({"model": "gpt-4o-mini", "messages": []})


async def chunked() -> AsyncIterator[bytes]:
    """A body sent without a content-length, larger than the limit."""
    for _ in range(4):
        yield b" " * (LIMIT // 2)


CASES: dict[str, tuple[str, str, dict[str, str], Any, int]] = {
    "401-no-key": ("POST", "/v1/chat/completions", {"x-portkey-trace-id": TRACE}, BODY, 401),
    "404-unknown-route": ("GET", "/v1/nowhere", KEY, None, 404),
    "405-api-route": ("GET", "/v1/chat/completions", KEY, None, 405),
    "405-other-route": ("POST", "/health", KEY, None, 405),
    "413-declared": ("POST", "/v1/chat/completions", KEY, b" " * (LIMIT + 1), 413),
    "413-chunked": ("POST", "/v1/chat/completions", KEY, chunked, 413),
}


def requests_total(telemetry: Telemetry, status_class: str) -> float:
    """``relaygate_requests_total`` for ``status_class``, over every config and operation."""
    return sum(
        sample.value
        for family in telemetry.metrics.registry.collect()
        for sample in family.samples
        if sample.name == sc.M_REQUESTS + "_total"
        and sample.labels.get("status_class") == status_class
    )


def assert_observed(
    response: httpx.Response, status: int, logs: list[dict[str, Any]], telemetry: Telemetry
) -> None:
    assert response.status_code == status
    assert response.headers["x-portkey-trace-id"] == TRACE
    request_id = response.headers["x-request-id"]
    assert response.json()["error"]["message"]
    [line] = [entry for entry in logs if entry["event"] == "request"]
    assert line["status"] == status
    assert line["request_id"] == request_id
    assert line["portkey_trace_id"] == TRACE
    assert requests_total(telemetry, "4xx") == 1.0


@pytest.mark.parametrize("case", list(CASES))
async def test_an_edge_refusal_of_the_asgi_app_is_logged_counted_and_traced(
    case: str, telemetry: Telemetry
) -> None:
    method, path, headers, body, status = CASES[case]
    upstream = RecordingTransport(httpx.Response(200, json=chat_payload()))
    app = gateway_app(CONFIG, telemetry, upstream)
    content = body() if callable(body) else body
    with capture_logs() as logs:
        async with asgi_client(app) as client:
            response = await client.request(method, path, headers=headers, content=content)
    assert_observed(response, status, logs, telemetry)
    assert upstream.requests == []
    if status == 405:
        assert response.headers["allow"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("POST", "/v1/nowhere", 404), ("GET", "/v1/chat/completions", 405)],
)
async def test_an_edge_refusal_of_the_transport_is_logged_counted_and_traced(
    method: str, path: str, status: int, telemetry: Telemetry
) -> None:
    upstream = RecordingTransport(httpx.Response(200, json=chat_payload()))
    transport = AsyncTransport(CONFIG, GatewayDeps(upstream=upstream.client(), telemetry=telemetry))
    with capture_logs() as logs:
        async with httpx.AsyncClient(transport=transport, base_url="http://relaygate") as client:
            response = await client.request(method, path, headers=KEY, content=b"{}")
    assert_observed(response, status, logs, telemetry)
