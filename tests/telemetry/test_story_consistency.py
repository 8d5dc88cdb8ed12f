"""Traces, metrics and the request log line tell the same story for each kind of request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from structlog.testing import capture_logs

from relaygate.config.server import parse_server_config
from relaygate.exchange import Operation
from relaygate.exporters import semconv as sc
from relaygate.gateway import Gateway, GatewayDeps
from relaygate.providers.client import HttpxUpstream
from relaygate.telemetry import Telemetry

Reply = Callable[[httpx.Request], Any]

CHAT = {"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]}


def ok_json(model: str = "m") -> httpx.Response:
    body = {
        "id": "r1",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "yo"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }
    return httpx.Response(200, json=body)


def status(code: int) -> httpx.Response:
    return httpx.Response(code, json={"error": {"message": "nope", "type": "x"}})


async def _sse() -> AsyncIterator[bytes]:
    for piece in ("a", "b"):
        chunk = {
            "object": "chat.completion.chunk",
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": piece}}],
        }
        yield b"data: " + orjson.dumps(chunk) + b"\n\n"
    usage = {
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2},
    }
    yield b"data: " + orjson.dumps(usage) + b"\n\n"
    yield b"data: [DONE]\n\n"


def stream_ok() -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=_sse())


class Upstreams:
    """Scripted answers per host, popped in order; records the hosts called."""

    def __init__(self, script: dict[str, list[Any]]) -> None:
        self.script = script
        self.calls: list[str] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.calls.append(host)
        step = self.script[host].pop(0)
        if step == "hang":
            await asyncio.sleep(30)
        if callable(step):
            result: httpx.Response = step()
            return result
        raise AssertionError(step)


def gateway(
    telemetry: Telemetry, upstreams: Upstreams, retry_a: int = 0, timeout_a: int | None = None
) -> Gateway:
    target_a: dict[str, Any] = {
        "name": "a",
        "provider": "openai",
        "api_key": "sk-a",
        "custom_host": "http://a.test/v1",
        "retry": {"attempts": retry_a},
    }
    if timeout_a:
        target_a["request_timeout"] = timeout_a
    server = parse_server_config(
        {
            "default_config": {
                "strategy": {"mode": "fallback"},
                "targets": [
                    target_a,
                    {
                        "name": "b",
                        "provider": "together-ai",
                        "api_key": "sk-b",
                        "custom_host": "http://b.test/v1",
                        "override_params": {"model": "mb"},
                    },
                ],
            },
            "retry": {"initial_backoff_ms": 1, "max_backoff_ms": 2},
        }
    )
    client = httpx.AsyncClient(transport=httpx.MockTransport(upstreams))
    return Gateway(server, GatewayDeps(upstream=HttpxUpstream(client), telemetry=telemetry))


async def run(gw: Gateway, stream: bool = False) -> tuple[int, dict[str, str], bytes]:
    body = dict(CHAT, stream=True) if stream else CHAT
    edge = await gw.handle(Operation.CHAT, orjson.dumps(body), {})
    data = edge.body
    if edge.stream is not None:
        data = b"".join([chunk async for chunk in edge.stream])
    return edge.status, dict(edge.headers), data


def span_story(spans: InMemorySpanExporter) -> list[tuple[str, str]]:
    """(target path, outcome) of every CLIENT span, in start order."""
    clients = sorted(
        (s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT),
        key=lambda s: s.start_time or 0,
    )
    return [
        (str(s.attributes["relaygate.target.path"]), str(s.attributes["relaygate.outcome"]))
        for s in clients
    ]


def log_story(logs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    (line,) = [entry for entry in logs if entry["event"] == "request"]
    return [(a["target_path"], a["reason"]) for a in line["attempts"]]


def metric(tel: Telemetry, name: str, **labels: str) -> float:
    value = tel.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def target_metric(tel: Telemetry, name: str, target: str, **labels: str) -> float:
    """A sample of a per-target family for target ``a`` (openai) or ``b`` (together-ai)."""
    provider = "openai" if target == "a" else "together-ai"
    model = "mb" if target == "b" else "other"
    labels = {"target": target, "provider": provider, "model": model, **labels}
    return metric(tel, name, config="default", **labels)


def fallbacks_a_to_b(tel: Telemetry, reason: str) -> float:
    """``relaygate_fallbacks_total`` from target ``a`` to ``b`` for ``reason``."""
    return metric(
        tel,
        "relaygate_fallbacks_total",
        config="default",
        from_target="a",
        to_target="b",
        reason=reason,
    )


def attempts(tel: Telemetry, target: str, reason: str) -> float:
    status_class = {"ok": "2xx", "status_5xx": "5xx", "timeout": "none"}[reason]
    name = "relaygate_upstream_attempts_total"
    return target_metric(tel, name, target, status_class=status_class, reason=reason)


A, B = "config.targets[0]", "config.targets[1]"


async def test_clean_success_is_one_attempt_in_every_signal(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    gw = gateway(telemetry, Upstreams({"a.test": [ok_json]}))
    with capture_logs() as logs:
        code, headers, _ = await run(gw)
    assert code == 200
    assert headers["x-relaygate-route"] == f"{A}:200"
    assert span_story(spans) == log_story(logs) == [(A, "ok")]
    assert attempts(telemetry, "a", "ok") == 1
    server = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert len(server) == 1 and server[0].attributes["relaygate.served_by"] == A
    client = next(s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT)
    assert client.name == "chat gpt-x"
    assert client.attributes["gen_ai.usage.input_tokens"] == 7
    assert client.attributes["gen_ai.usage.output_tokens"] == 3
    assert client.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert client.attributes["server.address"] == "a.test"
    assert client.parent is not None and client.context.trace_id == server[0].context.trace_id
    assert target_metric(telemetry, "relaygate_upstream_tokens_total", "a", type="input") == 7
    line = next(e for e in logs if e["event"] == "request")
    assert (line["tokens_in"], line["tokens_out"], line["served_by"]) == (7, 3, A)


async def test_retry_that_succeeds_shows_both_attempts_and_the_wait(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    gw = gateway(telemetry, Upstreams({"a.test": [lambda: status(503), ok_json]}), retry_a=2)
    with capture_logs() as logs:
        code, headers, _ = await run(gw)
    assert code == 200
    assert headers["x-portkey-retry-attempt-count"] == "1"
    assert span_story(spans) == log_story(logs) == [(A, "status_5xx"), (A, "ok")]
    assert attempts(telemetry, "a", "status_5xx") == 1 and attempts(telemetry, "a", "ok") == 1
    assert target_metric(telemetry, "relaygate_retries_total", "a", reason="status_5xx") == 1
    retry_events = [
        e for s in spans.get_finished_spans() for e in s.events if e.name == "relaygate.retry"
    ]
    assert len(retry_events) == 1 and retry_events[0].attributes[sc.RETRY_REASON] == "status_5xx"
    second = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT][-1]
    assert second.attributes["relaygate.attempt"] == 2
    assert second.attributes["relaygate.backoff_s"] > 0


async def test_fallback_after_503_names_both_targets_and_the_reason(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    gw = gateway(telemetry, Upstreams({"a.test": [lambda: status(503)], "b.test": [ok_json]}))
    with capture_logs() as logs:
        code, headers, _ = await run(gw)
    assert code == 200
    assert headers["x-portkey-last-used-option-index"] == B
    assert span_story(spans) == log_story(logs) == [(A, "status_5xx"), (B, "ok")]
    assert fallbacks_a_to_b(telemetry, "status_5xx") == 1
    events = [
        e for s in spans.get_finished_spans() for e in s.events if e.name == "relaygate.fallback"
    ]
    assert [
        (e.attributes[sc.FALLBACK_FROM_PATH], e.attributes[sc.FALLBACK_TO_PATH]) for e in events
    ] == [(A, B)]
    failed = next(s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT)
    assert failed.attributes["error.type"] == "503"
    assert failed.attributes["http.response.status_code"] == 503
    strategy = [s for s in spans.get_finished_spans() if s.name == "relaygate.strategy"]
    assert len(strategy) == 1 and strategy[0].attributes["relaygate.strategy.mode"] == "fallback"


async def test_fallback_after_timeout_is_recorded_as_a_timeout(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    gw = gateway(telemetry, Upstreams({"a.test": ["hang"], "b.test": [ok_json]}), timeout_a=50)
    with capture_logs() as logs:
        code, headers, _ = await run(gw)
    assert code == 200
    assert headers["x-relaygate-route"] == f"{A}:timeout>{B}:200"
    assert span_story(spans) == log_story(logs) == [(A, "timeout"), (B, "ok")]
    assert target_metric(telemetry, "relaygate_timeouts_total", "a") == 1
    assert fallbacks_a_to_b(telemetry, "timeout") == 1
    failed = next(s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT)
    assert failed.attributes["error.type"] == "timeout"
    assert any(e.name == "relaygate.timeout" for s in spans.get_finished_spans() for e in s.events)


async def test_every_target_exhausted_is_counted_once_with_the_last_reason(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    gw = gateway(
        telemetry, Upstreams({"a.test": [lambda: status(503)], "b.test": [lambda: status(503)]})
    )
    with capture_logs() as logs:
        code, headers, body = await run(gw)
    assert code == 503
    assert orjson.loads(body)["error"]["message"] == "nope"
    assert headers["x-portkey-trace-id"]
    assert span_story(spans) == log_story(logs) == [(A, "status_5xx"), (B, "status_5xx")]
    assert (
        metric(
            telemetry, "relaygate_exhausted_requests_total", config="default", reason="status_5xx"
        )
        == 1
    )
    server = next(s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER)
    assert any(e.name == "relaygate.exhausted" for e in server.events)
    assert server.attributes["http.response.status_code"] == 503
    line = next(e for e in logs if e["event"] == "request")
    assert line["status"] == 503 and line["route"] == f"{A}:503>{B}:503"


async def test_streamed_request_records_first_chunk_and_usage(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    gw = gateway(telemetry, Upstreams({"a.test": [lambda: status(503)], "b.test": [stream_ok]}))
    with capture_logs() as logs:
        code, _headers, body = await run(gw, stream=True)
    assert code == 200
    assert body.endswith(b"data: [DONE]\n\n")
    assert span_story(spans) == log_story(logs) == [(A, "status_5xx"), (B, "ok")]
    streamed = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT][-1]
    assert any(e.name == "relaygate.first_chunk" for e in streamed.events)
    assert streamed.attributes["gen_ai.usage.input_tokens"] == 5
    assert streamed.attributes["gen_ai.usage.output_tokens"] == 2
    assert (
        target_metric(telemetry, "relaygate_upstream_time_to_first_chunk_seconds_count", "b") == 1
    )
    assert target_metric(telemetry, "relaygate_upstream_tokens_total", "b", type="output") == 2
    line = next(e for e in logs if e["event"] == "request")
    assert line["stream"] is True and line["tokens_out"] == 2
    assert metric(telemetry, "relaygate_requests_in_flight") == 0


@pytest.mark.parametrize("detail,expected", [("off", 0), ("attempts", 2), ("full", 4)])
async def test_trace_detail_setting_bounds_the_span_count(
    telemetry: Telemetry, spans: InMemorySpanExporter, detail: str, expected: int
) -> None:
    telemetry.detail = detail  # type: ignore[assignment]
    gw = gateway(telemetry, Upstreams({"a.test": [ok_json]}))
    await run(gw)
    assert len(spans.get_finished_spans()) == expected
