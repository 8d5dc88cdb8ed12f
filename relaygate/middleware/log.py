"""Per-attempt recording: one CLIENT span, one record and one set of samples per upstream attempt.

Just outside the timeout layer (which sits around the provider), so it sees exactly what
each attempt did, labelled by target. The span follows the OpenTelemetry GenAI conventions
(name ``{operation} {model}``, ``gen_ai.*`` attributes, ``error.type`` on failure) plus
relaygate's target path, name, attempt number and backoff. A stream's span stays open until
the stream ends, recording the first chunk as an event and the usage the stream reports. An
attempt the timeout layer cuts arrives here as an ordinary 408 or 504 answer; one cut
because the client went away (or the server's drain ended) is recorded under the reason the
edge gave in the request's :class:`~relaygate.exchange.ClientLink`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from relaygate.exchange import AttemptRecord, GatewayRequest, GatewayResponse, ResponseStream
from relaygate.exporters import semconv as sc
from relaygate.exporters.prometheus import TargetSeries, status_class
from relaygate.pipeline import Handler
from relaygate.sse import finish_reasons_of, usage_of
from relaygate.strategies import classify
from relaygate.strategies.reasons import Reason
from relaygate.telemetry import Telemetry, exemplar

_NOOP: Span = trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)


class LogLayer:
    """Records every upstream attempt (see the module docstring)."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._tel = telemetry

    def __call__(self, inner: Handler) -> Handler:
        tel = self._tel

        async def log(request: GatewayRequest) -> GatewayResponse:
            target = request.target
            config = request.config
            assert target is not None and config is not None
            metrics = tel.metrics
            supplied = config.caller_supplied
            model = metrics.model_label(target, request.model, supplied)
            series = metrics.series(config.id, target, model, request.operation.value, supplied)
            span = _NOOP
            if tel.spans_for_attempts:
                request_model = target.model or request.model or ""
                span = tel.tracer.start_span(
                    f"{request.operation.value} {request_model}".rstrip(),
                    kind=SpanKind.CLIENT,
                    attributes=_attempt_attributes(request, request_model),
                )
            start = tel.clock()
            try:
                if span is _NOOP:
                    response = await inner(request)
                else:
                    with trace.use_span(span, end_on_exit=False, record_exception=False):
                        response = await inner(request)
            except asyncio.CancelledError:
                # Not a timeout (the timeout layer, inside, answers those): the client went
                # away, the drain ended, or the caller cancelled.
                reason = _cut(request) or "cancelled"
                record = _append(request, 499, reason, tel.clock() - start)
                _count(tel, request, series, record, span)
                tel.guard(span.set_attribute, sc.ERROR_TYPE, reason)
                tel.guard(span.set_attribute, sc.OUTCOME, reason)
                tel.guard(span.end)
                raise
            except Exception as exc:
                record = _append(request, 500, "internal_error", tel.clock() - start)
                _count(tel, request, series, record, span)
                tel.guard(span.set_attribute, sc.ERROR_TYPE, type(exc).__qualname__)
                tel.guard(span.set_status, Status(StatusCode.ERROR))
                tel.guard(span.end)
                raise
            duration = tel.clock() - start
            response.target = target
            if response.stream is None:
                _finish(tel, request, series, span, response, duration, response.payload)
                return response
            record = _append(request, response.status, _reason(response), duration)
            tel.guard(series.ttft.observe, duration, exemplar(span))
            if span.is_recording():
                span.add_event(sc.EVENT_FIRST_CHUNK, {"time_to_first_chunk_s": duration})
                span.set_attribute(sc.HTTP_RESPONSE_STATUS_CODE, response.status)
            stream = response.stream
            if record.reason != "ok" and stream.failure is None:
                stream.failure = record.reason

            def ended(stream: ResponseStream) -> None:
                _stream_end(tel, request, series, span, record, stream)

            stream.on_end(ended)
            return response

        return log


def _attempt_attributes(request: GatewayRequest, model: str) -> dict[str, Any]:
    target = request.target
    assert target is not None
    attrs: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: request.operation.value,
        sc.GEN_AI_PROVIDER_NAME: target.provider,
        sc.GEN_AI_REQUEST_MODEL: model,
        sc.TARGET_PATH: target.path,
        sc.ATTEMPT: request.attempt,
        sc.BACKOFF_S: request.backoff_s,
        sc.STREAM: request.stream,
    }
    if target.name:
        attrs[sc.TARGET_NAME] = target.name
    return attrs


def _cut(request: GatewayRequest) -> str | None:
    """Why the edge stopped serving the request early (client gone, shutdown), if it did."""
    link = request.ctx.client
    return link.cut if link is not None else None


def _reason(response: GatewayResponse) -> str:
    return classify(response.status, Reason(response.failure) if response.failure else None).value


def _append(request: GatewayRequest, status: int, reason: str, duration: float) -> AttemptRecord:
    """Add the attempt to the request's route story (in order, as it happens)."""
    target = request.target
    assert target is not None
    record = AttemptRecord(
        target=target,
        attempt=request.attempt,
        status=status,
        reason=reason,
        duration_s=duration,
        backoff_s=request.backoff_s,
    )
    request.ctx.attempts.append(record)
    return record


def _count(
    tel: Telemetry,
    request: GatewayRequest,
    series: TargetSeries,
    record: AttemptRecord,
    span: Span,
) -> None:
    """Count a finished attempt in the per-target metrics and log it at debug level."""
    metrics = tel.metrics
    reason = record.reason
    duration = record.duration_s
    try:
        series.attempt(metrics, status_class(record.status), reason).inc()
        series.duration.observe(duration, exemplar(span))
        if reason == "ok":
            series.genai_duration_ok.observe(duration)
        else:
            genai = (request.operation.value, record.target.provider, series.labels[3], reason)
            metrics.genai_duration.labels(*genai).observe(duration)
        if reason == "timeout":
            series.timeouts.inc()
    except Exception:  # telemetry never fails a request
        tel.errors += 1
    tel.guard(
        tel.logger.debug,
        "upstream_attempt",
        request_id=request.ctx.request_id,
        target=record.target.path,
        provider=record.target.provider,
        attempt=record.attempt,
        status=record.status,
        reason=reason,
        duration_ms=round(duration * 1000, 3),
    )


def _finish(
    tel: Telemetry,
    request: GatewayRequest,
    series: TargetSeries,
    span: Span,
    response: GatewayResponse,
    duration: float,
    payload: Any,
) -> None:
    record = _append(request, response.status, _reason(response), duration)
    _count(tel, request, series, record, span)
    reason = record.reason
    usage = usage_of(payload)
    if usage is not None:
        _count_tokens(tel, series, usage)
    if span.is_recording():
        tel.guard(_annotate, span, response.status, reason, payload, usage)
    tel.guard(span.end)


def _annotate(
    span: Span, status: int, reason: str, payload: Any, usage: tuple[int, int] | None
) -> None:
    span.set_attribute(sc.HTTP_RESPONSE_STATUS_CODE, status)
    span.set_attribute(sc.OUTCOME, reason)
    if reason != "ok":
        span.set_attribute(
            sc.ERROR_TYPE, reason if not reason.startswith("status") else str(status)
        )
        span.set_status(Status(StatusCode.ERROR))
    if isinstance(payload, dict):
        model = payload.get("model")
        if isinstance(model, str):
            span.set_attribute(sc.GEN_AI_RESPONSE_MODEL, model)
        rid = payload.get("id")
        if isinstance(rid, str):
            span.set_attribute(sc.GEN_AI_RESPONSE_ID, rid)
        reasons = finish_reasons_of(payload)
        if reasons:
            span.set_attribute(sc.GEN_AI_RESPONSE_FINISH_REASONS, reasons)
    if usage is not None:
        span.set_attribute(sc.GEN_AI_USAGE_INPUT_TOKENS, usage[0])
        span.set_attribute(sc.GEN_AI_USAGE_OUTPUT_TOKENS, usage[1])


def _count_tokens(tel: Telemetry, series: TargetSeries, usage: tuple[int, int]) -> None:
    tel.guard(series.tokens_in.inc, usage[0])
    tel.guard(series.tokens_out.inc, usage[1])
    tel.guard(series.genai_tokens_in.observe, usage[0])
    tel.guard(series.genai_tokens_out.observe, usage[1])


def _stream_end(
    tel: Telemetry,
    request: GatewayRequest,
    series: TargetSeries,
    span: Span,
    record: AttemptRecord,
    stream: ResponseStream,
) -> None:
    """Finish a streamed attempt's record, metrics and span once its stream has ended.

    A stream that broke midway is recorded under its failure; one closed early (the client
    went away, or the server's drain ended) under the reason the edge gave, else
    ``cancelled``.
    """
    failure = stream.failure
    if failure:
        record.reason = failure
    closed = stream.closed_early
    cut = _cut(request) if closed else None
    if cut and not failure:
        record.reason = cut
    _count(tel, request, series, record, span)
    usage = stream.usage
    if usage is not None:
        _count_tokens(tel, series, usage)
    if span.is_recording():
        tel.guard(_annotate_stream, span, stream, cut)
    tel.guard(span.end)


def _annotate_stream(span: Span, stream: ResponseStream, cut: str | None) -> None:
    usage = stream.usage
    if usage is not None:
        span.set_attribute(sc.GEN_AI_USAGE_INPUT_TOKENS, usage[0])
        span.set_attribute(sc.GEN_AI_USAGE_OUTPUT_TOKENS, usage[1])
    if stream.model is not None:
        span.set_attribute(sc.GEN_AI_RESPONSE_MODEL, stream.model)
    if stream.response_id is not None:
        span.set_attribute(sc.GEN_AI_RESPONSE_ID, stream.response_id)
    if stream.finish_reasons:
        span.set_attribute(sc.GEN_AI_RESPONSE_FINISH_REASONS, stream.finish_reasons)
    failure = stream.failure
    closed = stream.closed_early
    if failure:
        span.add_event(sc.EVENT_STREAM_ERROR, {"detail": stream.detail or ""})
        if failure == Reason.STREAM_IDLE:
            span.add_event(sc.EVENT_TIMEOUT, {sc.TIMEOUT_KIND: failure})
        span.set_attribute(sc.ERROR_TYPE, failure)
        span.set_status(Status(StatusCode.ERROR))
    elif closed:
        span.set_attribute(sc.ERROR_TYPE, cut or "client_closed")
    outcome = (cut or "cancelled") if closed else "ok"
    span.set_attribute(sc.OUTCOME, failure or outcome)
