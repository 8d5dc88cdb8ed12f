"""Per-attempt recording: one CLIENT span, one record and one set of samples per upstream attempt.

Innermost, so it sees exactly what each attempt did, labelled by target. The span follows
the OpenTelemetry GenAI conventions (name ``{operation} {model}``, ``gen_ai.*`` attributes,
``error.type`` on failure) plus relaygate's target path, name, attempt number and backoff.
A stream's span stays open until the stream ends, recording the first chunk as an event and
the usage the stream reports; an attempt cut by the timeout layer is recorded as a timeout,
and one cut because the client went away (or the server's drain ended) under the reason the
edge gave in the request's :class:`~relaygate.exchange.ClientLink`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from relaygate.exchange import AttemptRecord, GatewayRequest, GatewayResponse
from relaygate.exporters import semconv as sc
from relaygate.exporters.prometheus import TargetSeries, status_class
from relaygate.middleware.timeout import timeout_response
from relaygate.pipeline import Handler
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
                duration = tel.clock() - start
                timer = request.attempt_timer
                if timer is not None and timer.expired():
                    cut = timeout_response(request)
                    _finish(tel, request, series, span, cut, duration, None)
                else:
                    reason = _cut(request) or "cancelled"
                    record = _append(request, 499, reason, duration)
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
            response.stream = ObservedStream(response.stream, tel, request, series, span, record)
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
    usage = _usage(payload)
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
        choices = payload.get("choices")
        if isinstance(choices, list):
            reasons = [
                c["finish_reason"]
                for c in choices
                if isinstance(c, dict) and isinstance(c.get("finish_reason"), str)
            ]
            if reasons:
                span.set_attribute(sc.GEN_AI_RESPONSE_FINISH_REASONS, reasons)
    if usage is not None:
        span.set_attribute(sc.GEN_AI_USAGE_INPUT_TOKENS, usage[0])
        span.set_attribute(sc.GEN_AI_USAGE_OUTPUT_TOKENS, usage[1])


def _usage(payload: Any) -> tuple[int, int] | None:
    """``(input, output)`` tokens from an OpenAI-shaped ``usage`` object, if present."""
    if not isinstance(payload, dict):
        return None
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens", 0))
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return prompt, completion


def _count_tokens(tel: Telemetry, series: TargetSeries, usage: tuple[int, int]) -> None:
    tel.guard(series.tokens_in.inc, usage[0])
    tel.guard(series.tokens_out.inc, usage[1])
    tel.guard(series.genai_tokens_in.observe, usage[0])
    tel.guard(series.genai_tokens_out.observe, usage[1])


class ObservedStream:
    """Passes a stream's bytes through unchanged while noting usage, model and its end.

    Ends the attempt's span when the stream ends, breaks or is closed by the client.
    ``usage`` holds the ``(input, output)`` tokens of a final usage chunk once seen.
    """

    __slots__ = (
        "_done",
        "_inner",
        "_record",
        "_request",
        "_series",
        "_span",
        "_tel",
        "failure",
        "model",
        "usage",
    )

    def __init__(
        self,
        inner: Any,
        tel: Telemetry,
        request: GatewayRequest,
        series: TargetSeries,
        span: Span,
        record: AttemptRecord,
    ) -> None:
        self._inner = inner
        self._tel = tel
        self._request = request
        self._series = series
        self._span = span
        self._record = record
        self.usage: tuple[int, int] | None = None
        self.model: str | None = None
        self.failure: str | None = None if record.reason == "ok" else record.reason
        self._done = False

    def __aiter__(self) -> ObservedStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk: bytes = await self._inner.__anext__()
        except StopAsyncIteration:
            self._end()
            raise
        if b'"usage"' in chunk:
            self._tel.guard(self._scan, chunk)
        return chunk

    def _scan(self, chunk: bytes) -> None:
        for line in chunk.split(b"\n"):
            if not line.startswith(b"data:") or b'"usage"' not in line:
                continue
            try:
                payload = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                continue
            usage = _usage(payload)
            if usage is not None:
                self.usage = usage
            if isinstance(payload, dict) and isinstance(payload.get("model"), str):
                self.model = payload["model"]

    def _end(self, cancelled: bool = False) -> None:
        if self._done:
            return
        self._done = True
        inner_failure = getattr(self._inner, "failure", None)
        if inner_failure:
            self.failure = inner_failure
            self._record.reason = inner_failure
        cut = _cut(self._request) if cancelled else None
        if cut and not self.failure:
            self._record.reason = cut
        span = self._span
        tel = self._tel
        _count(tel, self._request, self._series, self._record, self._span)
        if self.usage is not None:
            _count_tokens(tel, self._series, self.usage)
        if span.is_recording():
            if self.usage is not None:
                span.set_attribute(sc.GEN_AI_USAGE_INPUT_TOKENS, self.usage[0])
                span.set_attribute(sc.GEN_AI_USAGE_OUTPUT_TOKENS, self.usage[1])
            if self.model is not None:
                span.set_attribute(sc.GEN_AI_RESPONSE_MODEL, self.model)
            if self.failure:
                span.add_event(
                    sc.EVENT_STREAM_ERROR, {"detail": str(getattr(self._inner, "detail", ""))}
                )
                span.set_attribute(sc.ERROR_TYPE, self.failure)
                span.set_status(Status(StatusCode.ERROR))
            elif cancelled:
                span.set_attribute(sc.ERROR_TYPE, cut or "client_closed")
            outcome = (cut or "cancelled") if cancelled else "ok"
            span.set_attribute(sc.OUTCOME, self.failure or outcome)
        tel.guard(span.end)

    async def aclose(self) -> None:
        """Close the upstream stream early (the client went away)."""
        try:
            aclose = getattr(self._inner, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            self._end(cancelled=True)
