"""Per-attempt recording: one CLIENT span, one record and one set of samples per upstream attempt.

Just outside the timeout layer (which sits around the provider), so it sees exactly what
each attempt did, labelled by target. The span follows the OpenTelemetry GenAI conventions
(name ``{operation} {model}``, ``gen_ai.*`` attributes, ``error.type`` on failure) plus
relaygate's target path, name, attempt number and backoff.

What an attempt records is what the upstream did, never what the gateway answered in its
place: ``http.response.status_code``, the record's ``status`` and the metrics'
``status_class`` are the status line the upstream sent (a garbage body behind a 200 stays
200, with ``error.type`` ``invalid_response``), and nothing (``status_class="none"``) when
nothing was answered (a timeout, a connect error, a client that left first). ``error.type``
is :func:`~relaygate.strategies.reasons.error_type`, the same value in the span, the
``gen_ai_client_operation_duration_seconds`` ``error_type`` label and the log line.

A stream's attempt lasts until the stream ends: its span, its record's duration and both
duration histograms cover the whole stream; the time to its first chunk is an event and its
own histogram. An attempt the timeout layer cuts arrives here as an ordinary synthesized
answer; one cut because the client went away (or the server's drain ended) is recorded under
the reason the edge gave in the request's :class:`~relaygate.exchange.ClientLink`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, NamedTuple

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from relaygate.config.model import Target
from relaygate.exchange import AttemptRecord, GatewayRequest, GatewayResponse, ResponseStream
from relaygate.exporters import semconv as sc
from relaygate.exporters.current import attach_span, detach
from relaygate.exporters.logging import attempt_fields, joins, logs_at
from relaygate.exporters.prometheus import TargetSeries, status_class
from relaygate.exporters.spans import set_attributes_later
from relaygate.pipeline import Handler
from relaygate.sse import finish_reasons_of, string_field, usage_of
from relaygate.strategies import classify
from relaygate.strategies.reasons import Reason, error_type
from relaygate.telemetry import Telemetry, exemplar, trace_ids

_NOOP: Span = trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)

CANCELLED = "cancelled"
"""Reason of an attempt cancelled without a word from the edge (the caller cancelled)."""

_STREAM_FAILURES = frozenset({Reason.STREAM_ERROR, Reason.STREAM_IDLE})
"""Reasons of a stream that failed after its first chunk (a break, a stall)."""

INTERNAL_ERROR = "internal_error"
"""Reason of an attempt whose handling raised (a bug): nothing was answered by the upstream."""


class Facts(NamedTuple):
    """What an attempt's answer said about itself, for its span and log line."""

    usage: tuple[int, int] | None = None
    model: str | None = None
    response_id: str | None = None
    finish_reasons: list[str] | None = None
    detail: str | None = None


_NO_FACTS = Facts()


def _payload_facts(payload: Any, full: bool = True) -> Facts:
    """What a complete answer's payload says: its usage, and with ``full`` also its model,
    id and finish reasons."""
    if payload is None:
        return _NO_FACTS
    usage = usage_of(payload)
    if not full:
        return _NO_FACTS if usage is None else Facts(usage)
    return _answer_facts(payload, usage)


def _answer_facts(payload: Any, usage: tuple[int, int] | None) -> Facts:
    """``usage`` with the model, id and finish reasons a complete answer's payload names."""
    return Facts(
        usage,
        string_field(payload, "model"),
        string_field(payload, "id"),
        finish_reasons_of(payload) or None,
    )


def _logs_facts(tel: Telemetry) -> bool:
    """Whether the attempt's debug line, which shows the answer's own facts, is written."""
    try:
        return logs_at(tel.logger, logging.DEBUG)
    except Exception:  # telemetry never fails a request
        tel.errors += 1
        return False


def _stream_facts(stream: ResponseStream) -> Facts:
    return Facts(
        stream.usage, stream.model, stream.response_id, stream.finish_reasons, stream.detail
    )


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
            operation = request.operation.value
            series = metrics.series(config.id, target, model, operation, supplied)
            span = _NOOP
            if tel.spans_for_attempts:
                request_model = target.model or request.model or ""
                span = tel.tracer.start_span(
                    f"{operation} {request_model}".rstrip(), kind=SpanKind.CLIENT
                )
                set_attributes_later(
                    span,
                    _attempt_attributes,
                    target,
                    operation,
                    request_model,
                    request.attempt,
                    request.backoff_s,
                    request.stream,
                )
            start = tel.clock()
            try:
                if span is _NOOP:
                    response = await inner(request)
                else:
                    # The attempt's span is current while it runs (a plain attach: its
                    # outcome, errors included, is recorded on it below).
                    token = attach_span(span)
                    try:
                        response = await inner(request)
                    finally:
                        detach(token)
            except asyncio.CancelledError:
                # Not a timeout (the timeout layer, inside, answers those): the client went
                # away, the drain ended, or the caller cancelled. Nothing was answered.
                reason = _cut(request) or CANCELLED
                record = _append(request, span, None, reason, tel.clock() - start)
                _record(tel, request, series, span, record, _NO_FACTS)
                raise
            except Exception:
                record = _append(request, span, None, INTERNAL_ERROR, tel.clock() - start)
                _record(tel, request, series, span, record, _NO_FACTS)
                raise
            duration = tel.clock() - start
            response.target = target
            record = _append(request, span, response.status_as_sent, _reason(response), duration)
            stream = response.stream
            if stream is None:
                # The answer's usage is read always (the token metrics); its model, id and
                # finish reasons for a debug line now, for the span only if it is exported.
                payload = response.payload
                full = _logs_facts(tel)
                facts = _payload_facts(payload, full)
                _record(tel, request, series, span, record, facts, None if full else payload)
                return response
            record.ttfc_s = duration
            tel.guard(series.ttft.observe, duration, exemplar(span))
            if span.is_recording():
                span.add_event(sc.EVENT_FIRST_CHUNK, {sc.FIRST_CHUNK_ELAPSED_S: duration})
            if record.reason != Reason.OK and stream.failure is None:
                stream.failure = record.reason

            def ended(stream: ResponseStream) -> None:
                record.duration_s = tel.clock() - start
                _stream_outcome(request, record, stream)
                _record(tel, request, series, span, record, _stream_facts(stream))

            stream.on_end(ended)
            return response

        return log


def _attempt_attributes(
    target: Target, operation: str, model: str, attempt: int, backoff_s: float, stream: bool
) -> dict[str, Any]:
    """The attempt span's request attributes: operation, provider, model, target, attempt
    number, the backoff before it and whether it streams."""
    attrs: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: operation,
        sc.GEN_AI_PROVIDER_NAME: sc.gen_ai_provider_name(target.provider),
        sc.GEN_AI_REQUEST_MODEL: model,
        sc.TARGET_PATH: target.path,
        sc.ATTEMPT: attempt,
        sc.BACKOFF_S: backoff_s,
        sc.STREAM: stream,
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


def _append(
    request: GatewayRequest, span: Span, status: int | None, reason: str, duration: float
) -> AttemptRecord:
    """Add the attempt to the request's route story (in order, as it happens)."""
    target = request.target
    assert target is not None
    ids = trace_ids(span) if span is not _NOOP else None
    record = AttemptRecord(
        target=target,
        attempt=request.attempt,
        status=status,
        reason=reason,
        duration_s=duration,
        backoff_s=request.backoff_s,
        span_id=ids[1] if ids else None,
    )
    request.ctx.attempts.append(record)
    return record


def _stream_outcome(request: GatewayRequest, record: AttemptRecord, stream: ResponseStream) -> None:
    """The reason of a streamed attempt once its stream ended: its failure if it broke (or
    answered a failure), the edge's reason if it was closed early (``cancelled`` without
    one), else the reason it started with."""
    if stream.failure:
        record.reason = stream.failure
    elif stream.closed_early:
        record.reason = _cut(request) or CANCELLED


def _record(
    tel: Telemetry,
    request: GatewayRequest,
    series: TargetSeries,
    span: Span,
    record: AttemptRecord,
    facts: Facts,
    payload: Any = None,
) -> None:
    """Record a finished attempt: its metric samples, its span (then ended), its log line.
    ``payload``: the complete answer whose full facts the span reads if it is exported
    (``facts`` then hold its usage only)."""
    reason = record.reason
    etype = error_type(reason, record.status)
    _count(tel, request, series, span, record, etype, facts.usage)
    if span.is_recording():
        tel.guard(_annotate, span, record, etype, facts, payload)
    tel.guard(span.end)
    tel.guard(_log, tel, request, span, record, facts)


def _count(
    tel: Telemetry,
    request: GatewayRequest,
    series: TargetSeries,
    span: Span,
    record: AttemptRecord,
    etype: str | None,
    usage: tuple[int, int] | None,
) -> None:
    """Count a finished attempt in the per-target metrics: one duration, the attempt's."""
    metrics = tel.metrics
    reason = record.reason
    duration = record.duration_s
    try:
        series.attempt(metrics, status_class(record.status), reason).inc()
        series.duration.observe(duration, exemplar(span, kept=reason != Reason.OK))
        if etype is None:
            series.genai_duration_ok.observe(duration)
        else:
            provider = sc.gen_ai_provider_name(record.target.provider)
            genai = (request.operation.value, provider, series.labels[3], etype)
            metrics.genai_duration.labels(*genai).observe(duration)
        if reason == Reason.TIMEOUT:
            series.timeouts.inc()
        if usage is not None:
            series.tokens_in.inc(usage[0])
            series.tokens_out.inc(usage[1])
            series.genai_tokens_in.observe(usage[0])
            series.genai_tokens_out.observe(usage[1])
    except Exception:  # telemetry never fails a request
        tel.errors += 1


def _annotate(
    span: Span, record: AttemptRecord, etype: str | None, facts: Facts, payload: Any
) -> None:
    """The attempt's outcome on its span: ERROR status and a broken stream's events now, on
    failure; its attributes (:func:`_outcome_attributes`) only if the span is exported."""
    if etype is not None:
        if record.ttfc_s is not None and record.reason in _STREAM_FAILURES:
            span.add_event(sc.EVENT_STREAM_ERROR, {sc.STREAM_ERROR_DETAIL: facts.detail or ""})
            if record.reason == Reason.STREAM_IDLE:
                span.add_event(sc.EVENT_TIMEOUT, {sc.TIMEOUT_KIND: record.reason})
        span.set_status(Status(StatusCode.ERROR))
    set_attributes_later(
        span, _outcome_attributes, record.reason, record.status, etype, facts, payload
    )


def _outcome_attributes(
    reason: str, status: int | None, etype: str | None, facts: Facts, payload: Any
) -> dict[str, Any]:
    """The attempt's outcome attributes: status as sent (none if nothing was answered),
    outcome, ``error.type`` on failure, and what the answer said (its model, id and finish
    reasons read from ``payload``, a complete answer, when given; ``facts`` holds its
    usage)."""
    if payload is not None:
        facts = _answer_facts(payload, facts.usage)
    # None values are left out (a host's SDK span warns about them).
    attrs: dict[str, Any] = {sc.OUTCOME: reason}
    if status is not None:
        attrs[sc.HTTP_RESPONSE_STATUS_CODE] = status
    if etype is not None:
        attrs[sc.ERROR_TYPE] = etype
    if facts.model is not None:
        attrs[sc.GEN_AI_RESPONSE_MODEL] = facts.model
    if facts.response_id is not None:
        attrs[sc.GEN_AI_RESPONSE_ID] = facts.response_id
    if facts.finish_reasons:
        attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = facts.finish_reasons
    usage = facts.usage
    if usage is not None:
        attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = usage[0]
        attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = usage[1]
    return attrs


def _log(
    tel: Telemetry, request: GatewayRequest, span: Span, record: AttemptRecord, facts: Facts
) -> None:
    """The attempt's ``upstream_attempt`` debug line, joined to its own CLIENT span (not
    even built when the logger says debug lines are filtered out)."""
    logger = tel.logger
    if not logs_at(logger, logging.DEBUG):
        return
    config = request.config
    usage = facts.usage
    line = joins(request.ctx.request_id, config.id if config else None, span)
    line.update(attempt_fields(record))
    logger.debug(
        "upstream_attempt",
        **line,
        operation=request.operation.value,
        stream=request.stream,
        response_model=facts.model,
        response_id=facts.response_id,
        finish_reasons=facts.finish_reasons,
        tokens_in=usage[0] if usage else None,
        tokens_out=usage[1] if usage else None,
    )
