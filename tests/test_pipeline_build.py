"""Composing the pipeline: the fold of layers, and the order the gateway stacks them in."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from relaygate.config import parse_server_config
from relaygate.exchange import GatewayRequest, GatewayResponse, Operation
from relaygate.exporters import semconv as sc
from relaygate.gateway import Gateway, GatewayDeps
from relaygate.pipeline import Handler, Layer, build
from relaygate.telemetry import Telemetry
from tests.fakes import (
    RecordingSleep,
    RecordingTransport,
    ScriptedHandler,
    answer,
    chat_payload,
    gateway_request,
)


def tracing_layer(name: str, trail: list[str]) -> Layer:
    """A layer noting in ``trail`` when a request passes it inwards and outwards."""

    def layer(inner: Handler) -> Handler:
        async def handle(request: GatewayRequest) -> GatewayResponse:
            trail.append(f"{name}>")
            response = await inner(request)
            trail.append(f"<{name}")
            return response

        return handle

    return layer


async def test_building_no_layers_returns_the_inner_handler() -> None:
    inner = ScriptedHandler()
    assert build([], inner) is inner


async def test_the_first_listed_layer_is_outermost() -> None:
    trail: list[str] = []

    async def inner(request: GatewayRequest) -> GatewayResponse:
        trail.append("inner")
        return answer(200)

    handler = build([tracing_layer("a", trail), tracing_layer("b", trail)], inner)
    await handler(_request())
    assert trail == ["a>", "b>", "inner", "<b", "<a"]


async def test_an_inner_layer_sees_the_request_an_outer_layer_derived() -> None:
    def set_attempt(inner: Handler) -> Handler:
        async def handle(request: GatewayRequest) -> GatewayResponse:
            return await inner(request.derive(attempt=7))

        return handle

    inner = ScriptedHandler(answer(200))
    await build([set_attempt], inner)(_request())
    assert inner.requests[0].attempt == 7


async def test_layers_are_applied_once_at_build_time_not_per_request() -> None:
    applied: list[int] = []

    def counting(inner: Handler) -> Handler:
        applied.append(1)
        return inner

    handler = build([counting, counting], ScriptedHandler(answer(200), answer(200)))
    await handler(_request())
    await handler(_request())
    assert len(applied) == 2


def _request() -> GatewayRequest:
    return gateway_request()


# --- the gateway's own stack -----------------------------------------------------------------

UPSTREAM_A = "http://upstream-a.invalid/v1"
UPSTREAM_B = "http://upstream-b.invalid/v1"


def gateway(
    telemetry: Telemetry,
    transport: RecordingTransport,
    *,
    auth: bool = True,
    sleep: RecordingSleep | None = None,
) -> Gateway:
    """A gateway over two fallback targets with two retries each, behind a gateway key."""
    server = parse_server_config(
        {
            "default_config": {
                "strategy": {"mode": "fallback"},
                "retry": {"attempts": 2},
                "request_timeout": 30_000,
                "targets": [
                    {"provider": "openai", "api_key": "sk-a", "custom_host": UPSTREAM_A},
                    {"provider": "openai", "api_key": "sk-b", "custom_host": UPSTREAM_B},
                ],
            },
            "auth": {"api_keys": ["gw-key"]} if auth else {},
        }
    )
    deps = GatewayDeps(
        upstream=transport.client(), telemetry=telemetry, sleep=sleep or RecordingSleep()
    )
    return Gateway(server, deps)


def by_host(statuses: dict[str, Iterator[int]]) -> RecordingTransport:
    """An upstream answering each host with the next status of its script."""

    def reply(request: httpx.Request) -> httpx.Response:
        status = next(statuses[request.url.host])
        if status == 200:
            return httpx.Response(200, json=chat_payload())
        return httpx.Response(status, json={"error": {"message": "busy", "type": "x"}})

    return RecordingTransport(reply)


async def test_each_target_spends_its_retries_before_the_next_is_tried(
    telemetry: Telemetry,
) -> None:
    transport = by_host(
        {"upstream-a.invalid": iter([503, 503, 503]), "upstream-b.invalid": iter([200])}
    )
    sleep = RecordingSleep()
    gw = gateway(telemetry, transport, sleep=sleep)
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": []})
    response = await gw.handle(Operation.CHAT, body, {"authorization": "Bearer gw-key"})
    assert response.status == 200
    hosts = [r.url.host for r in transport.requests]
    assert hosts == ["upstream-a.invalid"] * 3 + ["upstream-b.invalid"]
    assert len(sleep.waits) == 2
    assert dict(response.headers)["x-relaygate-route"] == (
        "config.targets[0]:503,503,503>config.targets[1]:200"
    )


def _chain(span: ReadableSpan, spans: dict[int, ReadableSpan]) -> list[str]:
    names = [span.name]
    while span.parent is not None and span.parent.span_id in spans:
        span = spans[span.parent.span_id]
        names.append(span.name)
    return names


async def test_the_gateway_stacks_auth_config_fallback_retry_log_timeout_in_order(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    transport = RecordingTransport(httpx.Response(200, json=chat_payload()))
    gw = gateway(telemetry, transport)
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": []})
    await gw.handle(Operation.CHAT, body, {"authorization": "Bearer gw-key"})
    finished = {s.context.span_id: s for s in spans.get_finished_spans() if s.context}
    (timeout,) = [s for s in finished.values() if s.name == sc.SPAN_TIMEOUT]
    assert _chain(timeout, finished) == [
        sc.SPAN_TIMEOUT,
        "chat gpt-4o-mini",
        sc.SPAN_RETRY,
        sc.SPAN_STRATEGY,
        "POST /v1/chat/completions",
    ]
    (root,) = [s for s in finished.values() if s.parent is None]
    firsts = [s for s in finished.values() if s.parent and s.parent.span_id == root.context.span_id]
    ordered = sorted(firsts, key=lambda s: s.start_time or 0)
    assert [s.name for s in ordered] == [sc.SPAN_AUTH, sc.SPAN_CONFIG, sc.SPAN_STRATEGY]


@pytest.mark.parametrize("auth", [True, False], ids=["with-keys", "without-keys"])
async def test_the_auth_layer_is_stacked_only_when_gateway_keys_are_configured(
    telemetry: Telemetry, spans: InMemorySpanExporter, auth: bool
) -> None:
    gw = gateway(telemetry, RecordingTransport(), auth=auth)
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": []})
    response = await gw.handle(Operation.CHAT, body, {"authorization": "Bearer gw-key"})
    assert response.status == 200
    names = {s.name for s in spans.get_finished_spans()}
    assert (sc.SPAN_AUTH in names) is auth


async def test_every_layer_reads_the_deadline_against_the_injected_loop_clock(
    telemetry: Telemetry,
) -> None:
    """The deadline is set at 0 by the injected clock, which then jumps past it: no attempt."""
    readings = iter([0.0])
    transport = RecordingTransport(httpx.Response(200, json=chat_payload()))
    server = parse_server_config(
        {
            "limits": {"request_deadline_ms": 1000},
            "default_config": {
                "provider": "openai",
                "api_key": "sk-a",
                "custom_host": UPSTREAM_A,
            },
        }
    )
    deps = GatewayDeps(
        upstream=transport.client(), telemetry=telemetry, now=lambda: next(readings, 5.0)
    )
    response = await Gateway(server, deps).handle(
        Operation.CHAT, orjson.dumps({"model": "gpt-4o-mini", "messages": []}), {}
    )
    assert response.status == 504
    assert transport.requests == []
