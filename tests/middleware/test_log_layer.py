"""The log layer: one record, one CLIENT span and one set of samples per upstream attempt."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from structlog.testing import capture_logs

from relaygate.errors import synthesized
from relaygate.exchange import (
    CLIENT_DISCONNECTED,
    ClientLink,
    GatewayRequest,
    GatewayResponse,
    ResponseStream,
)
from relaygate.exporters import semconv as sc
from relaygate.middleware.log import LogLayer
from relaygate.telemetry import Telemetry
from tests.fakes import (
    ScriptedHandler,
    StreamBody,
    answer,
    chat_payload,
    chunk_payload,
    gateway_request,
    target,
)

USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def summed(telemetry: Telemetry, name: str, label: str, value: str) -> float:
    """The samples called ``name`` whose ``label`` is ``value``, summed over every series."""
    return sum(
        sample.value
        for family in telemetry.metrics.registry.collect()
        for sample in family.samples
        if sample.name == name and sample.labels.get(label) == value
    )


def tokens(telemetry: Telemetry, kind: str) -> float:
    """The ``relaygate_upstream_tokens_total`` value of ``kind`` summed over every series."""
    return summed(telemetry, sc.M_TOKENS + "_total", "type", kind)


def attempts(telemetry: Telemetry, reason: str) -> float:
    """How many attempts ended with ``reason``, over every target series."""
    return summed(telemetry, sc.M_ATTEMPTS + "_total", "reason", reason)


def sample(telemetry: Telemetry, name: str, **labels: str) -> float | None:
    """The value of the one sample of ``name`` whose labels include ``labels`` (summed)."""
    found = [
        s.value
        for family in telemetry.metrics.registry.collect()
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    ]
    return sum(found) if found else None


def genai_error_types(telemetry: Telemetry) -> dict[str, float]:
    """``gen_ai_client_operation_duration_seconds`` observation counts by ``error_type``."""
    counts: dict[str, float] = {}
    for family in telemetry.metrics.registry.collect():
        for s in family.samples:
            if s.name == sc.M_GENAI_DURATION + "_count" and s.value:
                counts[s.labels["error_type"]] = s.value
    return counts


def request(stream: bool = False) -> GatewayRequest:
    """A request bound to one target, as the fallback and retry layers hand it on."""
    req = gateway_request(target=target(name="primary"), stream=stream)
    return req.derive(attempt=1)


def streamed(*chunks: bytes) -> tuple[GatewayResponse, StreamBody]:
    """A 200 answer whose stream plays ``chunks`` (the first already arrived)."""
    body = StreamBody(chunks[1:])
    return GatewayResponse(status=200, stream=ResponseStream(body, chunks[0])), body


def event(payload: object) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def drain(response: GatewayResponse) -> bytes:
    assert response.stream is not None
    return b"".join([chunk async for chunk in response.stream])


async def test_a_complete_answer_is_one_record_one_client_span_and_its_tokens(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    req = request()
    parsed = answer(200)
    parsed.payload = chat_payload()  # as the provider handler parses it
    response = await LogLayer(telemetry)(ScriptedHandler(parsed))(req)
    assert response.status == 200
    [record] = req.ctx.attempts
    assert (record.status, record.reason, record.attempt) == (200, "ok", 1)
    [span] = spans.get_finished_spans()
    assert span.kind is SpanKind.CLIENT
    assert span.attributes is not None
    assert span.attributes[sc.TARGET_NAME] == "primary"
    assert span.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 3
    assert span.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert (tokens(telemetry, "input"), tokens(telemetry, "output")) == (3.0, 2.0)


async def test_an_upstream_error_answer_is_recorded_under_its_status_class(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    req = request()
    await LogLayer(telemetry)(ScriptedHandler(answer(503)))(req)
    assert [(a.status, a.reason) for a in req.ctx.attempts] == [(503, "status_5xx")]
    assert attempts(telemetry, "status_5xx") == 1.0
    [span] = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR


async def test_a_synthesized_timeout_answer_is_recorded_as_a_timeout_with_no_status(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    """Nothing was answered: no status on the record or span, status class ``none``."""
    req = request()
    await LogLayer(telemetry)(ScriptedHandler(answer(408, failure="timeout")))(req)
    assert [(a.status, a.reason) for a in req.ctx.attempts] == [(None, "timeout")]
    assert attempts(telemetry, "timeout") == 1.0
    assert sample(telemetry, sc.M_ATTEMPTS + "_total", status_class="none") == 1.0
    assert sample(telemetry, sc.M_ATTEMPTS + "_total", status_class="4xx") is None
    [span] = spans.get_finished_spans()
    assert span.attributes is not None
    assert sc.HTTP_RESPONSE_STATUS_CODE not in span.attributes
    assert span.attributes[sc.ERROR_TYPE] == "timeout"
    assert genai_error_types(telemetry) == {"timeout": 1.0}


async def test_a_stream_is_counted_when_it_ends_with_usage_split_across_chunks(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    usage_event = event({"id": "chatcmpl-1", "model": "gpt-4o", "choices": [], "usage": USAGE})
    half = usage_event.index(b'"usage"') + 3
    response, _ = streamed(
        event(chunk_payload("Hel")),
        usage_event[:half],
        usage_event[half:],
        b"data: [DONE]\n\n",
    )
    req = request(stream=True)
    relayed = await LogLayer(telemetry)(ScriptedHandler(response))(req)
    assert spans.get_finished_spans() == ()  # the span stays open while the stream runs
    assert tokens(telemetry, "input") == 0.0
    await drain(relayed)
    assert (tokens(telemetry, "input"), tokens(telemetry, "output")) == (11.0, 7.0)
    [span] = spans.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 7
    assert span.attributes[sc.GEN_AI_RESPONSE_ID] == "chatcmpl-1"
    assert span.attributes[sc.OUTCOME] == "ok"
    assert [a.reason for a in req.ctx.attempts] == ["ok"]


async def test_a_stream_that_breaks_midway_is_recorded_as_a_stream_error(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    class Broken(StreamBody):
        async def __anext__(self) -> bytes:
            raise ConnectionResetError("reset")

    stream = ResponseStream(
        Broken([]),
        event(chunk_payload("a")),
        breaks=(ConnectionResetError,),
        break_event=lambda detail: b"data: {}\n\n",
    )
    req = request(stream=True)
    relayed = await LogLayer(telemetry)(ScriptedHandler(GatewayResponse(200, stream=stream)))(req)
    await drain(relayed)
    assert [a.reason for a in req.ctx.attempts] == ["stream_error"]
    assert attempts(telemetry, "stream_error") == 1.0
    [span] = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events][-1] == sc.EVENT_STREAM_ERROR


async def test_a_stream_closed_because_the_client_left_is_recorded_under_that_reason(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    response, body = streamed(event(chunk_payload("a")), event(chunk_payload("b")))
    req = request(stream=True)
    req.ctx.client = ClientLink()
    relayed = await LogLayer(telemetry)(ScriptedHandler(response))(req)
    assert relayed.stream is not None
    await relayed.stream.__anext__()
    req.ctx.client.cut = CLIENT_DISCONNECTED
    await relayed.aclose()
    assert body.closed
    assert [a.reason for a in req.ctx.attempts] == [CLIENT_DISCONNECTED]
    [span] = spans.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes[sc.OUTCOME] == CLIENT_DISCONNECTED


async def test_an_attempt_cancelled_while_waiting_is_recorded_and_the_cancellation_goes_on(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    req = request()
    req.ctx.client = ClientLink()
    req.ctx.client.cut = CLIENT_DISCONNECTED
    with pytest.raises(asyncio.CancelledError):
        await LogLayer(telemetry)(ScriptedHandler(asyncio.CancelledError()))(req)
    assert [(a.status, a.reason) for a in req.ctx.attempts] == [(None, CLIENT_DISCONNECTED)]
    assert sample(telemetry, sc.M_ATTEMPTS + "_total", status_class="none") == 1.0
    [span] = spans.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes[sc.ERROR_TYPE] == CLIENT_DISCONNECTED
    assert sc.HTTP_RESPONSE_STATUS_CODE not in span.attributes


async def test_a_cancellation_without_a_reason_from_the_edge_is_recorded_as_cancelled(
    telemetry: Telemetry,
) -> None:
    req = request()
    with pytest.raises(asyncio.CancelledError):
        await LogLayer(telemetry)(ScriptedHandler(asyncio.CancelledError()))(req)
    assert [(a.status, a.reason) for a in req.ctx.attempts] == [(None, "cancelled")]


async def test_an_inner_exception_is_recorded_as_an_internal_error_and_raised(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    req = request()
    with pytest.raises(RuntimeError):
        await LogLayer(telemetry)(ScriptedHandler(RuntimeError("bug")))(req)
    assert [(a.status, a.reason) for a in req.ctx.attempts] == [(None, "internal_error")]
    [span] = spans.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes[sc.ERROR_TYPE] == "internal_error"
    assert genai_error_types(telemetry) == {"internal_error": 1.0}


async def test_a_garbage_body_behind_a_200_is_recorded_as_sent_with_the_failure_as_error_type(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    """The upstream sent 200: the attempt says 200 (class 2xx) and ``invalid_response``."""
    garbage = synthesized(
        502,
        "upstream 'openai' answered something that is not JSON",
        type="upstream_error",
        code="upstream_invalid_response",
        failure="invalid_response",
        upstream_status=200,
    )
    req = request()
    response = await LogLayer(telemetry)(ScriptedHandler(garbage))(req)
    assert response.status == 502  # the client's answer is the gateway's
    assert [(a.status, a.reason) for a in req.ctx.attempts] == [(200, "invalid_response")]
    assert (
        sample(telemetry, sc.M_ATTEMPTS + "_total", status_class="2xx", reason="invalid_response")
        == 1.0
    )
    [span] = spans.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes[sc.HTTP_RESPONSE_STATUS_CODE] == 200
    assert span.attributes[sc.ERROR_TYPE] == "invalid_response"
    assert span.status.status_code is StatusCode.ERROR
    assert genai_error_types(telemetry) == {"invalid_response": 1.0}


async def test_an_error_status_has_one_error_type_in_the_span_the_metric_and_the_log(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    req = request()
    with capture_logs() as logs:
        await LogLayer(telemetry)(ScriptedHandler(answer(503)))(req)
    [span] = spans.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes[sc.ERROR_TYPE] == "503"
    assert genai_error_types(telemetry) == {"503": 1.0}
    [line] = [e for e in logs if e["event"] == "upstream_attempt"]
    assert (line["error_type"], line["status"], line["reason"]) == ("503", 503, "status_5xx")


async def test_the_attempt_line_joins_its_own_span_and_names_the_target_both_ways(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    req = request()
    with capture_logs() as logs:
        await LogLayer(telemetry)(ScriptedHandler(answer(200)))(req)
    [span] = spans.get_finished_spans()
    [line] = [e for e in logs if e["event"] == "upstream_attempt"]
    ctx = span.context
    assert ctx is not None
    assert line["trace_id"] == format(ctx.trace_id, "032x")
    assert line["span_id"] == format(ctx.span_id, "016x") == req.ctx.attempts[0].span_id
    assert (line["request_id"], line["config"]) == ("req-1", "test")
    assert (line["target"], line["target_path"]) == ("primary", "config")


async def test_a_stream_lasts_until_it_ends_in_its_record_span_metrics_and_log(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    """Whole attempt in the duration histograms and the record; the first chunk apart."""
    ticks = iter([10.0, 10.25, 12.0])
    telemetry.clock = lambda: next(ticks)
    response, _ = streamed(
        event({"id": "chatcmpl-7", "model": "gpt-4o", "choices": [{"index": 0, "delta": {}}]}),
        event(chunk_payload("Hel")),
        event(
            {"id": "chatcmpl-7", "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}
        ),
        b"data: [DONE]\n\n",
    )
    req = request(stream=True)
    with capture_logs() as logs:
        relayed = await LogLayer(telemetry)(ScriptedHandler(response))(req)
        await drain(relayed)
    [record] = req.ctx.attempts
    assert (record.duration_s, record.ttfc_s, record.status) == (2.0, 0.25, 200)
    assert sample(telemetry, sc.M_UPSTREAM_DURATION + "_sum") == 2.0
    assert sample(telemetry, sc.M_GENAI_DURATION + "_sum") == 2.0
    assert sample(telemetry, sc.M_TTFT + "_sum") == 0.25
    [span] = spans.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("length",)
    assert span.attributes[sc.GEN_AI_RESPONSE_ID] == "chatcmpl-7"
    [first] = [e for e in span.events if e.name == sc.EVENT_FIRST_CHUNK]
    assert first.attributes == {sc.FIRST_CHUNK_ELAPSED_S: 0.25}
    [line] = [e for e in logs if e["event"] == "upstream_attempt"]
    ctx = span.context
    assert ctx is not None
    assert (line["span_id"], line["trace_id"]) == (
        format(ctx.span_id, "016x"),
        format(ctx.trace_id, "032x"),
    )
    assert (line["ms"], line["ttfc_ms"]) == (2000.0, 250.0)
    assert (line["finish_reasons"], line["response_id"]) == (["length"], "chatcmpl-7")


async def test_a_stream_closed_early_without_a_word_from_the_edge_is_cancelled_everywhere(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    response, _ = streamed(event(chunk_payload("a")), event(chunk_payload("b")))
    req = request(stream=True)
    relayed = await LogLayer(telemetry)(ScriptedHandler(response))(req)
    await relayed.aclose()
    assert [(a.status, a.reason) for a in req.ctx.attempts] == [(200, "cancelled")]
    assert attempts(telemetry, "cancelled") == 1.0
    [span] = spans.get_finished_spans()
    assert span.attributes is not None
    assert (span.attributes[sc.OUTCOME], span.attributes[sc.ERROR_TYPE]) == (
        "cancelled",
        "cancelled",
    )
