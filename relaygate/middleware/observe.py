"""Request-level telemetry, outermost: one SERVER span, request metrics, one ``request`` log
line and the status-board hooks for every answer an edge gives, refusals included.

:meth:`Observe.start` opens a request's :class:`Observation` (request and trace ids, the
shared :class:`~relaygate.exchange.RequestContext`, the SERVER span, the in-flight gauge)
before anything else happens to it; :meth:`Observation.answer` renders the answer's headers
through the edge codec and records the request once the answer is delivered: at once for a
complete body, when the stream ends, breaks or is closed for a streamed one. An answer made
at the edge (401 before the body, 404, 405, 408, 413) goes through the same two calls
(:meth:`Observe.refuse`), so it is logged, counted and carries ``x-request-id`` and
``x-portkey-trace-id`` like any other.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from relaygate.edge import ROUTES, EdgeCodec, EdgeResponse
from relaygate.errors import GatewayError
from relaygate.exchange import (
    ClientLink,
    GatewayRequest,
    GatewayResponse,
    Operation,
    RequestContext,
    ResponseStream,
)
from relaygate.exporters import semconv as sc
from relaygate.exporters.logging import attempt_fields, logs_at
from relaygate.exporters.prometheus import status_class
from relaygate.route_story import ROUTE_SPAN_MAX_BYTES, cap_story, route_story
from relaygate.security.keys import KeyScope
from relaygate.sse import usage_of
from relaygate.strategies.outcome import CANCELLED, OK, Account, account, request_outcome
from relaygate.strategies.trace_sampling import RequestFacts
from relaygate.telemetry import Telemetry, exemplar, trace_ids

UNROUTED_OPERATION = "none"
"""The ``operation`` label of a request refused before its path named an operation."""

_NOOP_SPAN: Span = trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)

# Request ids need to be unique, not secret: the process's PRNG (seeded from the OS, and
# reseeded in a forked child) avoids a system call per request.
_random_bits = random.getrandbits


class Observe:
    """Opens the :class:`Observation` of each request (see the module docstring)."""

    def __init__(
        self, telemetry: Telemetry, codec: EdgeCodec, max_attempts: int | None = None
    ) -> None:
        self._tel = telemetry
        self._codec = codec
        self._max_attempts = max_attempts

    def start(
        self,
        operation: Operation | None,
        headers: Mapping[str, str],
        *,
        method: str = "POST",
        path: str | None = None,
        client: ClientLink | None = None,
        principal: KeyScope | None = None,
        route: str | None = None,
    ) -> Observation:
        """Begin observing a request for ``operation`` (``None``: its path named none;
        ``path`` is then the raw path, never a label). ``route`` is the SERVER span's
        ``http.route`` when the request came in another vendor's API (``/v1/messages``);
        by default the operation's OpenAI route."""
        tel = self._tel
        start = tel.clock()
        tel.guard(tel.metrics.in_flight.inc)
        request_id = f"{_random_bits(96):024x}"
        portkey_trace = headers.get("x-portkey-trace-id")
        trace_id = portkey_trace[:128] if portkey_trace else request_id
        span: Span = _NOOP_SPAN
        if tel.spans_for_attempts:
            parent = propagate.extract(headers) if "traceparent" in headers else None
            attributes: dict[str, Any] = {
                sc.HTTP_REQUEST_METHOD: method,
                sc.REQUEST_ID: request_id,
            }
            if operation is not None:
                attributes[sc.GEN_AI_OPERATION_NAME] = operation.value
                route = route or ROUTES.get(operation)
            if route is not None:
                attributes[sc.HTTP_ROUTE] = route
                name = f"{method} {route}"
            else:
                name = method
            span = tel.tracer.start_span(
                name, context=parent, kind=SpanKind.SERVER, attributes=attributes
            )
            if portkey_trace:
                span.set_attribute(sc.PORTKEY_TRACE_ID, trace_id)
        ctx = RequestContext(
            request_id=request_id,
            trace_id=trace_id,
            metadata={},
            client=client,
            principal=principal,
            max_attempts=self._max_attempts,
        )
        return Observation(tel, self._codec, operation, ctx, span, start)

    def refuse(
        self,
        operation: Operation | None,
        headers: Mapping[str, str],
        error: GatewayError,
        *,
        method: str = "POST",
        extra: Sequence[tuple[str, str]] = (),
        route: str | None = None,
    ) -> EdgeResponse:
        """The observed answer for a request an edge refuses before the pipeline: ``error``'s
        status, body and headers, the usual ids, plus ``extra`` headers (``allow``, ...);
        ``route`` as for :meth:`start`."""
        observation = self.start(operation, headers, method=method, route=route)
        answer = observation.answer(error.to_response(), None)
        present = {name for name, _ in answer.headers}
        answer.headers.extend((k, v) for k, v in error.headers.items() if k not in present)
        answer.headers.extend(extra)
        return answer


class Observation:
    """One request under observation: its context, SERVER span and the record at its end."""

    __slots__ = (
        "_codec",
        "_tel",
        "ctx",
        "head_s",
        "operation",
        "request",
        "response",
        "span",
        "start",
        "story",
    )

    def __init__(
        self,
        tel: Telemetry,
        codec: EdgeCodec,
        operation: Operation | None,
        ctx: RequestContext,
        span: Span,
        start: float,
    ) -> None:
        self._tel = tel
        self._codec = codec
        self.operation = operation
        self.ctx = ctx
        self.span = span
        self.start = start
        self.request: GatewayRequest | None = None
        self.response: GatewayResponse | None = None
        self.story = ""
        self.head_s: float | None = None
        """A streamed answer's time from the request's arrival to its head."""

    def answer(self, response: GatewayResponse, request: GatewayRequest | None) -> EdgeResponse:
        """The edge's answer for ``response``; the request is recorded once it is delivered."""
        self._settle(response, request)
        out = self._codec.headers(response, self.ctx, self.story)
        stream = response.stream
        if stream is None:
            self.finish(None)
            return EdgeResponse(response.status, out, response.body or b"")
        self.head_s = self._tel.clock() - self.start
        stream.on_end(self.finish)
        return EdgeResponse(response.status, out, stream=stream)

    def cut(self, response: GatewayResponse, request: GatewayRequest | None) -> None:
        """Record a request whose work was cancelled, answered (if at all) by ``response``."""
        self._settle(response, request)
        self.finish(None)

    def _settle(self, response: GatewayResponse, request: GatewayRequest | None) -> None:
        self.response = response
        self.request = request
        attempts = self.ctx.attempts
        self.story = route_story(attempts) if attempts else (self.ctx.route_note or "")

    def finish(self, stream: ResponseStream | None) -> None:
        """Record the request (a streamed answer's end callback; ``None`` for a body)."""
        tel = self._tel
        try:
            self._record(tel, stream)
        except Exception:  # telemetry never fails a request
            tel.errors += 1
        finally:
            tel.guard(tel.metrics.in_flight.dec)
            tel.guard(self.span.end)

    def _outcome(self, response: GatewayResponse, stream: ResponseStream | None) -> str:
        """The request's outcome (:func:`~relaygate.strategies.outcome.request_outcome`)."""
        ctx = self.ctx
        link = ctx.client.cut if ctx.client is not None else None
        if stream is not None:
            # The edge's reason counts only if it cut this stream short.
            cut = (link or CANCELLED) if stream.closed_early else None
            stream_failure = stream.failure if response.ok else None
        else:
            cut, stream_failure = None, None
        attempts = ctx.attempts
        return request_outcome(
            response.status,
            from_upstream=response.target is not None,
            last_reason=attempts[-1].reason if attempts else None,
            failure=response.failure,
            stream_failure=stream_failure,
            cut=cut,
        )

    def _record(self, tel: Telemetry, stream: ResponseStream | None) -> None:
        metrics = tel.metrics
        ctx = self.ctx
        response = self.response
        assert response is not None
        # Until the last byte: a body is complete when answered, a stream when it ends.
        total = tel.clock() - self.start
        # Overhead over the whole request: total minus upstream attempts and backoff waits.
        # Attempts last as long as their spans (a stream's until it ended), so what is left
        # of the whole request, a stream's included, is the gateway's own time.
        # One plain pass over the attempts (no generator frames on the hot path): their
        # time, how many were made (a target skipped by its circuit breaker is in the
        # story but was not attempted) and whether any carries a note.
        attempts = ctx.attempts
        upstream = 0.0
        made = 0
        noted = False
        for a in attempts:
            upstream += a.duration_s + a.backoff_s
            if a.reason != "circuit_open":
                made += 1
            if a.note:
                noted = True
        overhead = max(total - upstream, 0.0)
        config = ctx.config
        config_id = config.id if config is not None else "none"
        status = response.status
        outcome = self._outcome(response, stream)
        ctx.outcome = outcome
        ok = outcome == OK
        served_by = response.target.path if ok and response.target is not None else None
        span = self.span
        # Tail sampling: the trace is decided now, before exemplars name it.
        buffer = getattr(span, "buffer", None)
        if buffer is not None:
            head = self.head_s
            decision = buffer.decide(
                RequestFacts(
                    outcome,
                    [a.reason for a in attempts],
                    ctx.fallbacks,
                    noted,
                    total if head is None else head,
                    buffer.parent_sampled,
                    span.get_span_context().trace_id,
                )
            )
            if decision.keep:
                span.set_attribute(sc.SAMPLING_REASON, decision.reason)
        ex = exemplar(span)
        op = self.operation.value if self.operation is not None else UNROUTED_OPERATION
        series = metrics.request_series(config_id, op)
        metrics.request_counter(series, config_id, op, status_class(status), outcome).inc()
        series.duration.observe(total, ex)
        series.overhead.observe(overhead)
        if attempts:
            series.attempts_per_request.observe(made)
        exhausted = bool(ctx.attempts) and not response.ok and response.target is not None
        if exhausted:
            metrics.exhausted.labels(config_id, ctx.attempts[-1].reason).inc(1, ex)
        # A stream's story can change after the headers left (an attempt that broke mid-way).
        story = route_story(ctx.attempts) if stream is not None and ctx.attempts else self.story
        usage = stream.usage if stream is not None else usage_of(response.payload)
        if span.is_recording():
            attrs: dict[str, Any] = {
                sc.HTTP_RESPONSE_STATUS_CODE: status,
                sc.CONFIG_ID: config_id,
                sc.ATTEMPTS: len(ctx.attempts),
                sc.OUTCOME: outcome,
            }
            if story:
                attrs[sc.ROUTE] = cap_story(story, ROUTE_SPAN_MAX_BYTES)
            if served_by is not None:
                attrs[sc.SERVED_BY] = served_by
            if usage is not None:
                attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = usage[0]
                attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = usage[1]
            span.set_attributes(attrs)
            if exhausted:
                span.add_event(sc.EVENT_EXHAUSTED, {sc.EXHAUSTED_REASON: ctx.attempts[-1].reason})
            if not ok:
                span.set_attribute(sc.ERROR_TYPE, outcome)
            if account(outcome) is Account.BAD:
                span.set_status(Status(StatusCode.ERROR, outcome))
        for hook in tel.request_hooks:
            tel.guard(hook, ctx, status)
        if not logs_at(tel.logger, logging.INFO):
            return
        ids = trace_ids(span)
        tel.logger.info(
            "request",
            request_id=ctx.request_id,
            trace_id=ids[0] if ids else None,
            span_id=ids[1] if ids else None,
            portkey_trace_id=ctx.trace_id,
            key=ctx.principal.name if ctx.principal is not None else None,
            config=config_id,
            operation=op,
            stream=bool(self.request and self.request.stream),
            status=status,
            outcome=outcome,
            served_by=served_by,
            attempts=[attempt_fields(a) for a in ctx.attempts],
            route=story,
            fallbacks=ctx.fallbacks,
            tokens_in=usage[0] if usage else None,
            tokens_out=usage[1] if usage else None,
            duration_ms=round(total * 1000, 3),
            overhead_ms=round(overhead * 1000, 3),
        )
