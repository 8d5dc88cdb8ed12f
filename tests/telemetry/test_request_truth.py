"""Request-level telemetry never flatters: outcomes, serving target, durations and span tree.

In process, through the gateway with scripted upstreams (``httpx.MockTransport``): a stream
that breaks after its 200 is not a success in any signal, a failed request names no
serving target, a streamed request's durations cover the whole stream, and the strategy,
retry and timeout spans end after their attempts and fail when their answer fails.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from structlog.testing import capture_logs

from relaygate.telemetry import Telemetry
from relaygate.transport import AsyncTransport
from tests.telemetry.test_story_consistency import (
    CHAT,
    A,
    B,
    Upstreams,
    gateway,
    metric,
    ok_json,
    run,
    status,
)


def _chunk(text: str) -> bytes:
    payload = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}}],
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _usage(prompt: int, completion: int) -> bytes:
    payload = {
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def streamed(
    *, cut: bool = False, between: Callable[[], None] | None = None
) -> Callable[[], httpx.Response]:
    """A streamed 200 upstream answer: a chunk, usage, then ``[DONE]``, or a break (``cut``)
    after the usage event; ``between`` runs between the first chunk and the rest."""

    async def body() -> AsyncIterator[bytes]:
        yield _chunk("a")
        if between is not None:
            between()
        yield _usage(5, 1)
        if cut:
            raise httpx.ReadError("upstream went away")
        yield b"data: [DONE]\n\n"

    def answer() -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    return answer


def requests_total(tel: Telemetry, status_class: str, outcome: str) -> float:
    labels = {"config": "default", "operation": "chat", "status_class": status_class}
    return metric(tel, "relaygate_requests_total", **labels, outcome=outcome)


def request_line(logs: list[dict[str, Any]]) -> dict[str, Any]:
    (line,) = [entry for entry in logs if entry["event"] == "request"]
    return line


def finished(spans: InMemorySpanExporter) -> list[ReadableSpan]:
    return list(spans.get_finished_spans())


def server_span(spans: InMemorySpanExporter) -> ReadableSpan:
    (server,) = [s for s in finished(spans) if s.kind is SpanKind.SERVER]
    return server


def named(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in finished(spans) if s.name == name]


async def test_a_stream_cut_after_its_200_is_a_stream_error_in_every_request_signal(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    gw = gateway(
        telemetry, Upstreams({"a.test": [lambda: status(503)], "b.test": [streamed(cut=True)]})
    )
    with capture_logs() as logs:
        code, headers, body = await run(gw, stream=True)
    assert code == 200 and b"upstream_stream_interrupted" in body
    # Metrics: counted under its outcome, not as an available success.
    assert requests_total(telemetry, "2xx", "stream_error") == 1
    assert requests_total(telemetry, "2xx", "ok") == 0
    # Log line and span agree: the outcome, no serving target, the tokens the stream reported.
    line = request_line(logs)
    assert (line["status"], line["outcome"], line["served_by"]) == (200, "stream_error", None)
    assert (line["tokens_in"], line["tokens_out"]) == (5, 1)
    server = server_span(spans)
    assert server.attributes["relaygate.outcome"] == "stream_error"
    assert server.attributes["error.type"] == "stream_error"
    assert server.status.status_code is StatusCode.ERROR
    assert "relaygate.served_by" not in server.attributes
    assert server.attributes["gen_ai.usage.output_tokens"] == 1
    # The headers left with the first chunk: they name the target that started serving.
    assert headers["x-relaygate-served-by"] == headers["x-portkey-last-used-option-index"] == B
    # The strategy span lasted as long as the stream and says the answer failed.
    (strategy,) = named(spans, "relaygate.strategy")
    attempt = [s for s in finished(spans) if s.kind is SpanKind.CLIENT][-1]
    assert strategy.status.status_code is StatusCode.ERROR
    assert strategy.end_time is not None and attempt.end_time is not None
    assert strategy.end_time >= attempt.end_time


async def test_an_exhausted_request_names_no_serving_target_and_its_layers_fail(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    gw = gateway(
        telemetry,
        Upstreams({"a.test": [lambda: status(503)] * 2, "b.test": [lambda: status(503)]}),
        retry_a=1,
    )
    with capture_logs() as logs:
        code, headers, _ = await run(gw)
    assert code == 503
    line = request_line(logs)
    assert (line["outcome"], line["served_by"]) == ("status_5xx", None)
    server = server_span(spans)
    assert "relaygate.served_by" not in server.attributes
    assert server.attributes["relaygate.outcome"] == "status_5xx"
    assert server.status.status_code is StatusCode.ERROR
    assert requests_total(telemetry, "5xx", "status_5xx") == 1
    # Portkey's header names the last target tried, on failures too; the serving one is absent.
    assert headers["x-portkey-last-used-option-index"] == B
    assert "x-relaygate-served-by" not in headers
    (strategy,) = named(spans, "relaygate.strategy")
    (retry,) = named(spans, "relaygate.retry")
    assert strategy.status.status_code is StatusCode.ERROR
    assert strategy.status.description == "status_5xx"
    assert retry.status.status_code is StatusCode.ERROR


async def test_a_timeout_span_fails_when_it_cuts_its_attempt(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    gw = gateway(telemetry, Upstreams({"a.test": ["hang"], "b.test": [ok_json]}), timeout_a=50)
    code, headers, _ = await run(gw)
    assert code == 200 and headers["x-relaygate-served-by"] == B
    (timeout,) = named(spans, "relaygate.timeout")
    assert timeout.status.status_code is StatusCode.ERROR
    assert timeout.status.description == "timeout"
    # The fallback recovered: the strategy's answer, and so its span, succeeded.
    (strategy,) = named(spans, "relaygate.strategy")
    assert strategy.status.status_code is StatusCode.UNSET
    assert server_span(spans).attributes["relaygate.served_by"] == B


async def test_a_clean_stream_is_ok_and_every_parent_span_ends_after_its_children(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    gw = gateway(telemetry, Upstreams({"a.test": [streamed()]}), retry_a=1, timeout_a=5000)
    with capture_logs() as logs:
        code, headers, _ = await run(gw, stream=True)
    assert code == 200 and headers["x-relaygate-served-by"] == A
    assert requests_total(telemetry, "2xx", "ok") == 1
    line = request_line(logs)
    assert (line["outcome"], line["served_by"]) == ("ok", A)
    all_spans = finished(spans)
    by_id = {s.context.span_id: s for s in all_spans}
    for child in all_spans:
        if child.parent is None or child.parent.span_id not in by_id:
            continue
        parent = by_id[child.parent.span_id]
        assert parent.end_time is not None and child.end_time is not None
        assert parent.end_time >= child.end_time, f"{parent.name} ended before {child.name}"
    names = {s.name for s in all_spans}
    assert {"relaygate.strategy", "relaygate.retry", "relaygate.timeout"} <= names
    assert all(s.status.status_code is StatusCode.UNSET for s in all_spans)


class StepClock:
    """A clock that moves only when told: the gateway's own work then takes no time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def test_a_streams_duration_covers_the_whole_stream_and_its_overhead_does_not(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    """Request duration runs to the last byte; overhead is the gateway's own time over the
    whole request, the stream's time counting as its attempt's. With a clock that moves only
    while the upstream streams, the duration is the stream's 10 s and the overhead 0."""
    clock = StepClock()
    telemetry.clock = clock
    gw = gateway(telemetry, Upstreams({"a.test": [streamed(between=lambda: clock.advance(10.0))]}))
    with capture_logs() as logs:
        await run(gw, stream=True)
    line = request_line(logs)
    assert (line["duration_ms"], line["overhead_ms"]) == (10000.0, 0.0)
    labels = {"config": "default", "operation": "chat"}
    assert metric(telemetry, "relaygate_request_duration_seconds_sum", **labels) == 10.0
    assert metric(telemetry, "relaygate_gateway_overhead_seconds_sum", config="default") == 0.0
    assert metric(telemetry, "relaygate_gateway_overhead_seconds_count", config="default") == 1


async def test_an_in_process_caller_closing_a_stream_early_has_hung_up(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    """Through the httpx transport, a response closed before its stream ended is the
    caller hanging up: ``client_disconnected`` at the request and the attempt level."""
    gw = gateway(telemetry, Upstreams({"a.test": [streamed()]}))
    transport = AsyncTransport(gw.server, gw.deps)
    body = dict(CHAT, stream=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://relaygate") as client:
        with capture_logs() as logs:
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                async for _chunk in response.aiter_raw():
                    break
    assert request_line(logs)["outcome"] == "client_disconnected"
    assert requests_total(telemetry, "2xx", "client_disconnected") == 1
    server = server_span(spans)
    assert server.attributes["relaygate.outcome"] == "client_disconnected"
    assert server.status.status_code is StatusCode.UNSET
    attempt = next(s for s in finished(spans) if s.kind is SpanKind.CLIENT)
    assert attempt.attributes["relaygate.outcome"] == "client_disconnected"
