"""The gateway edge: input checks, error shapes, response headers and the forwarded body.

The ASGI app runs in-process through ``httpx.ASGITransport``; upstreams are
``httpx.MockTransport`` functions behind :class:`~relaygate.providers.client.HttpxUpstream`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette

from relaygate.config import parse_server_config
from relaygate.exchange import Operation
from relaygate.exporters import semconv as sc
from relaygate.gateway import Gateway, GatewayDeps
from relaygate.telemetry import Telemetry
from tests.fakes import (
    ChunkStream,
    RecordingTransport,
    chat_payload,
    chunk_payload,
    sse_event,
    sse_response,
)
from tests.inprocess import asgi_client, gateway_app

UPSTREAM_A = "http://upstream-a.invalid/v1"
UPSTREAM_B = "http://upstream-b.invalid/v1"
LIMIT = 2048
CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def server_config(**extra: Any) -> dict[str, Any]:
    """The server config of these tests, with ``extra`` top-level sections."""
    return {
        "configs": {
            "prod": {
                "strategy": {"mode": "fallback"},
                "targets": [
                    {"provider": "openai", "api_key": "sk-a", "custom_host": UPSTREAM_A},
                    {"provider": "openai", "api_key": "sk-b", "custom_host": UPSTREAM_B},
                ],
            },
            "pinned": {
                "provider": "openai",
                "api_key": "sk-a",
                "custom_host": UPSTREAM_A,
                "override_params": {"model": "gpt-4o", "temperature": 0},
            },
        },
        "default_config": "prod",
        "limits": {"max_body_bytes": LIMIT},
        **extra,
    }


def make_app(telemetry: Telemetry, transport: RecordingTransport, **extra: Any) -> Starlette:
    """The ASGI app for :func:`server_config` whose upstream calls go to ``transport``."""
    return gateway_app(server_config(**extra), telemetry, transport)


async def call(
    app: Starlette, method: str = "POST", path: str = CHAT, **kwargs: Any
) -> httpx.Response:
    """One HTTP request to ``app`` through ``httpx.ASGITransport``."""
    async with asgi_client(app) as client:
        return await client.request(method, path, **kwargs)


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The error object of an OpenAI-shaped error answer (its shape checked)."""
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error, dict)
    return error


@pytest.fixture
def upstream() -> RecordingTransport:
    """An upstream answering every call with a chat completion and rate-limit headers."""

    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json=chat_payload(),
            headers={
                "x-ratelimit-remaining-requests": "99",
                "openai-processing-ms": "12",
                "set-cookie": "session=upstream",
                "x-upstream-internal": "node-7",
            },
        )

    return RecordingTransport(reply)


@pytest.fixture
def app(telemetry: Telemetry, upstream: RecordingTransport) -> Starlette:
    """The gateway app on the ``prod`` fallback config over ``upstream``."""
    return make_app(telemetry, upstream)


# --- input checks ------------------------------------------------------------------------


async def test_a_body_that_is_not_json_is_refused_with_400(
    app: Starlette, upstream: RecordingTransport
) -> None:
    response = await call(app, content=b'{"model": "gpt-4o-mini",')
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"
    assert upstream.requests == []


@pytest.mark.parametrize("body", [b"[]", b'"hello"', b"42", b"null"])
async def test_a_json_body_that_is_not_an_object_is_refused_with_400(
    app: Starlette, upstream: RecordingTransport, body: bytes
) -> None:
    response = await call(app, content=body)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_body"
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("stream", "yes"), ("stream", 1), ("model", 5), ("model", ["gpt-4o"])],
)
async def test_a_field_of_the_wrong_type_is_refused_naming_the_field(
    app: Starlette, upstream: RecordingTransport, field: str, value: Any
) -> None:
    response = await call(app, json={**BODY, field: value})
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["param"]) == ("invalid_type", field)
    assert upstream.requests == []


async def test_a_null_stream_field_means_no_streaming(app: Starlette) -> None:
    response = await call(app, json={**BODY, "stream": None})
    assert response.status_code == 200
    assert response.json()["object"] == "chat.completion"


async def test_a_streamed_embeddings_request_is_refused(app: Starlette) -> None:
    body = {"model": "text-embedding-3-small", "input": "hi", "stream": True}
    response = await call(app, path="/v1/embeddings", json=body)
    assert response.status_code == 400
    assert error_of(response)["param"] == "stream"


async def test_a_declared_body_over_the_limit_is_refused_with_413(
    app: Starlette, upstream: RecordingTransport
) -> None:
    response = await call(app, content=b"{}", headers={"content-length": str(LIMIT + 1)})
    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "request_too_large"
    assert error["message"] == f"request body is {LIMIT + 1} bytes; the limit is {LIMIT}"
    assert upstream.requests == []


async def test_a_body_over_the_limit_without_a_declared_length_is_refused_with_413(
    app: Starlette, upstream: RecordingTransport
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b" " * (LIMIT // 2)

    response = await call(app, content=chunks())
    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "request_too_large"
    assert error["message"].endswith(f"the limit is {LIMIT}")
    assert upstream.requests == []


async def test_a_body_within_the_limit_is_accepted(app: Starlette) -> None:
    padded = orjson.dumps({**BODY, "user": "u" * (LIMIT - 200)})
    assert len(padded) <= LIMIT
    assert (await call(app, content=padded)).status_code == 200


async def test_the_in_process_path_refuses_an_oversized_body_too(
    telemetry: Telemetry, upstream: RecordingTransport
) -> None:
    gateway = Gateway(
        parse_server_config(server_config()),
        GatewayDeps(upstream=upstream.client(), telemetry=telemetry),
    )
    response = await gateway.handle(Operation.CHAT, b" " * (LIMIT + 1), {})
    assert response.status == 413
    assert orjson.loads(response.body)["error"]["code"] == "request_too_large"


@pytest.mark.parametrize("value", ["not json", "[1, 2]", '"text"', "{"])
async def test_metadata_that_is_not_a_json_object_is_refused_with_400(
    app: Starlette, upstream: RecordingTransport, value: str
) -> None:
    response = await call(app, json=BODY, headers={"x-portkey-metadata": value})
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["param"]) == ("invalid_header", "x-portkey-metadata")
    assert upstream.requests == []


# --- routes ------------------------------------------------------------------------------


async def test_an_unknown_route_is_an_openai_shaped_404(app: Starlette) -> None:
    response = await call(app, path="/v1/nope", json=BODY)
    assert response.status_code == 404
    error = error_of(response)
    assert error["type"] == "not_found_error"
    assert error["message"] == "unknown route: POST /v1/nope"


async def test_get_on_an_api_route_is_an_openai_shaped_405_allowing_post(app: Starlette) -> None:
    response = await call(app, "GET", CHAT)
    assert response.status_code == 405
    assert error_of(response)["type"] == "invalid_request_error"
    assert response.headers["allow"] == "POST"


async def test_post_on_a_read_only_route_is_an_openai_shaped_405_allowing_get(
    app: Starlette,
) -> None:
    response = await call(app, "POST", "/v1/models")
    assert response.status_code == 405
    assert error_of(response)["type"] == "invalid_request_error"
    assert "GET" in response.headers.get("allow", "")


# --- response headers --------------------------------------------------------------------


async def test_a_served_answer_carries_portkey_and_relaygate_headers(app: Starlette) -> None:
    response = await call(app, json=BODY)
    assert response.status_code == 200
    headers = response.headers
    assert re.fullmatch(r"[0-9a-f]{24}", headers["x-request-id"])
    assert headers["x-portkey-trace-id"] == headers["x-request-id"]
    assert headers["x-portkey-provider"] == "openai"
    assert headers["x-portkey-last-used-option-index"] == "config.targets[0]"
    assert headers["x-portkey-retry-attempt-count"] == "0"
    assert headers["x-relaygate-route"] == "config.targets[0]:200"
    assert headers["content-type"] == "application/json"


async def test_rate_limit_and_openai_headers_of_the_upstream_are_passed_on(
    app: Starlette,
) -> None:
    headers = (await call(app, json=BODY)).headers
    assert headers["x-ratelimit-remaining-requests"] == "99"
    assert headers["openai-processing-ms"] == "12"


async def test_other_upstream_headers_are_not_passed_on(app: Starlette) -> None:
    headers = (await call(app, json=BODY)).headers
    assert "set-cookie" not in headers
    assert "x-upstream-internal" not in headers


async def test_the_headers_name_the_target_that_served_after_a_fallback(
    telemetry: Telemetry,
) -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        if request.url.host == "upstream-a.invalid":
            return httpx.Response(503, json={"error": {"message": "down", "type": "x"}})
        return httpx.Response(200, json=chat_payload())

    response = await call(make_app(telemetry, RecordingTransport(reply)), json=BODY)
    assert response.status_code == 200
    assert response.headers["x-portkey-last-used-option-index"] == "config.targets[1]"
    assert response.headers["x-relaygate-route"] == "config.targets[0]:503>config.targets[1]:200"


async def test_the_retry_count_header_counts_retries_of_the_serving_target(
    telemetry: Telemetry,
) -> None:
    statuses: Iterator[int] = iter([429, 429, 200])

    def reply(request: httpx.Request) -> httpx.Response:
        status = next(statuses)
        return httpx.Response(status, json=chat_payload() if status == 200 else {"error": {}})

    inline = {"provider": "openai", "custom_host": UPSTREAM_A, "retry": {"attempts": 3}}
    app = make_app(telemetry, RecordingTransport(reply), retry={"initial_backoff_ms": 0})
    response = await call(app, json=BODY, headers={"x-portkey-config": orjson.dumps(inline)})
    assert response.status_code == 200
    assert response.headers["x-portkey-retry-attempt-count"] == "2"
    assert response.headers["x-relaygate-route"] == "config:429,429,200"


async def test_a_client_portkey_trace_id_is_echoed(app: Starlette) -> None:
    response = await call(app, json=BODY, headers={"x-portkey-trace-id": "trace-abc"})
    assert response.headers["x-portkey-trace-id"] == "trace-abc"
    assert response.headers["x-request-id"] != "trace-abc"


async def test_each_request_gets_its_own_request_id(app: Starlette) -> None:
    first = await call(app, json=BODY)
    second = await call(app, json=BODY)
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_a_refusal_carries_a_request_id_but_no_target_headers(app: Starlette) -> None:
    response = await call(app, content=b"not json")
    assert "x-request-id" in response.headers
    assert "x-portkey-provider" not in response.headers
    assert "x-relaygate-route" not in response.headers


# --- failures ----------------------------------------------------------------------------


async def test_an_unexpected_error_inside_the_pipeline_is_an_openai_shaped_500(
    telemetry: Telemetry,
) -> None:
    transport = RecordingTransport(RuntimeError("database password is hunter2"))
    response = await call(make_app(telemetry, transport), json=BODY)
    assert response.status_code == 500
    error = error_of(response)
    assert (error["type"], error["code"]) == ("server_error", "internal_error")
    assert response.headers["x-request-id"] in error["message"]
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in response.text


async def test_an_unexpected_error_leaves_no_request_in_flight(telemetry: Telemetry) -> None:
    transport = RecordingTransport(RuntimeError("boom"))
    await call(make_app(telemetry, transport), json=BODY)
    registry = telemetry.metrics.registry
    assert registry.get_sample_value(sc.M_IN_FLIGHT) == 0.0


async def test_an_unexpected_error_still_ends_the_attempt_span_as_an_error(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    transport = RecordingTransport(RuntimeError("boom"))
    response = await call(make_app(telemetry, transport), json=BODY)
    assert response.status_code == 500
    attempts = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert len(attempts) == 1
    assert attempts[0].status.status_code is StatusCode.ERROR


async def test_a_fallback_target_that_cannot_serve_the_operation_is_passed_over(
    telemetry: Telemetry,
) -> None:
    transport = RecordingTransport(
        httpx.Response(200, json={"object": "list", "data": [], "model": "m"})
    )
    config = {
        "strategy": {"mode": "fallback"},
        "targets": [
            {"provider": "perplexity-ai", "api_key": "pplx"},
            {"provider": "openai", "api_key": "sk-a", "custom_host": UPSTREAM_A},
        ],
    }
    response = await call(
        make_app(telemetry, transport),
        path="/v1/embeddings",
        json={"model": "text-embedding-3-small", "input": "hi"},
        headers={"x-portkey-config": orjson.dumps(config)},
    )
    assert response.status_code == 200
    assert [r.url.host for r in transport.requests] == ["upstream-a.invalid"]
    assert response.headers["x-portkey-last-used-option-index"] == "config.targets[1]"


async def test_an_openai_shaped_upstream_error_reaches_the_client_unchanged(
    telemetry: Telemetry,
) -> None:
    raw = b'{"error": {"message": "Invalid model", "type": "invalid_request_error"}}'
    transport = RecordingTransport(
        httpx.Response(404, headers={"content-type": "application/json"}, content=raw)
    )
    response = await call(
        make_app(telemetry, transport), json=BODY, headers={"x-portkey-config": "pinned"}
    )
    assert response.status_code == 404
    assert response.content == raw


async def test_a_missing_gateway_key_is_an_openai_shaped_401(telemetry: Telemetry) -> None:
    transport = RecordingTransport()
    app = make_app(telemetry, transport, auth={"api_keys": ["gw-key"]})
    response = await call(app, json=BODY)
    assert response.status_code == 401
    assert error_of(response)["type"] == "authentication_error"
    assert transport.requests == []


# --- what reaches the upstream -----------------------------------------------------------


async def test_the_client_body_reaches_the_upstream_byte_for_byte(
    app: Starlette, upstream: RecordingTransport
) -> None:
    raw = (
        b'{\n  "messages": [{"content": "caf\\u00e9 \xe2\x98\x95", "role": "user"}],\n'
        b'  "model":"gpt-4o-mini",  "temperature": 0.70, "n": 1e0\n}'
    )
    response = await call(app, content=raw)
    assert response.status_code == 200
    assert upstream.bodies == [raw]


async def test_override_params_are_the_only_change_to_the_forwarded_body(
    app: Starlette, upstream: RecordingTransport
) -> None:
    body = {**BODY, "temperature": 0.9, "user": "u-1"}
    response = await call(app, json=body, headers={"x-portkey-config": "pinned"})
    assert response.status_code == 200
    (sent,) = upstream.bodies
    assert orjson.loads(sent) == {**body, "model": "gpt-4o", "temperature": 0}


async def test_the_upstream_gets_the_provider_key_never_the_gateway_key(
    telemetry: Telemetry, upstream: RecordingTransport
) -> None:
    app = make_app(telemetry, upstream, auth={"api_keys": ["gw-key"]})
    response = await call(app, json=BODY, headers={"authorization": "Bearer gw-key"})
    assert response.status_code == 200
    (sent,) = upstream.requests
    assert sent.headers["authorization"] == "Bearer sk-a"
    assert "gw-key" not in str(sent.headers)


async def test_a_stream_reaches_the_client_as_server_sent_events(telemetry: Telemetry) -> None:
    events = [sse_event(chunk_payload("Hel")), sse_event(chunk_payload("lo")), sse_event("[DONE]")]
    transport = RecordingTransport(sse_response(ChunkStream(events)))
    response = await call(make_app(telemetry, transport), json={**BODY, "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.content == b"".join(events)
    assert transport.requests[0].headers["accept"] == "text/event-stream"
