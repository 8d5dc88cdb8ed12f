"""The telemetry handles every layer receives: tracer, metrics, logger, clock.

Injected, never global: tests pass an in-memory tracer provider, a fresh
``CollectorRegistry`` and captured logs. ``detail`` sets how many spans a request makes:
``full`` (a span per layer and per strategy node), ``attempts`` (the request span and one
CLIENT span per upstream attempt) or ``off``. ``request_hooks`` are called with the
finished request's :class:`~relaygate.exchange.RequestContext` and final status (the status
page's feed). Every call made on behalf of telemetry is guarded: a failing exporter, hook
or metric never fails a request.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue
from prometheus_client import CollectorRegistry

from relaygate.exchange import GatewayResponse, RequestContext, ResponseStream
from relaygate.exporters.current import attach_span, detach
from relaygate.exporters.prometheus import GatewayMetrics
from relaygate.exporters.spans import LeanSpan
from relaygate.strategies.reasons import classify

Detail = Literal["full", "attempts", "off"]
"""How many spans a request produces (see the module docstring)."""

_NOOP_SPAN: Span = NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)
_TRACER_NAME = "relaygate"


def _default_logger() -> Any:
    return structlog.get_logger("relaygate")


@dataclass
class Telemetry:
    """Tracer, metrics, logger and clock shared by the pipeline's layers."""

    tracer: Tracer = field(default_factory=lambda: trace.get_tracer(_TRACER_NAME))
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    logger: Any = field(default_factory=_default_logger)
    detail: Detail = "full"
    clock: Callable[[], float] = time.perf_counter
    shutdown: Callable[[], None] = lambda: None
    request_hooks: list[Callable[[RequestContext, int], None]] = field(default_factory=list)
    _errors: int = field(default=0, init=False, repr=False)

    @property
    def errors(self) -> int:
        """Telemetry calls that raised and were swallowed so far (``tel.errors += 1`` counts
        one); each is also counted in ``metrics``' ``relaygate_telemetry_errors_total``."""
        return self._errors

    @errors.setter
    def errors(self, value: int) -> None:
        added = value - self._errors
        self._errors = value
        if added > 0:
            # The count above stands even when the metrics themselves are broken.
            with contextlib.suppress(Exception):
                self.metrics.telemetry_errors.inc(added)

    @property
    def spans_for_attempts(self) -> bool:
        """Whether request and per-attempt spans are made."""
        return self.detail != "off"

    def layer_span(
        self, name: str, attributes: Mapping[str, AttributeValue] | None = None
    ) -> LayerScope:
        """A current INTERNAL span for one layer at ``full`` detail, else a no-op span
        (:class:`LayerScope`: the layer settles its answer on it).

        A plain class rather than ``start_as_current_span``: the layers open one per
        request each, and the generator-based context managers cost several times more.
        """
        if self.detail != "full":
            return _NOOP_LAYER
        return LayerScope(
            self.tracer.start_span(name, kind=SpanKind.INTERNAL, attributes=attributes)
        )

    def guard(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run a telemetry call, swallowing and counting any error it raises."""
        try:
            fn(*args, **kwargs)
        except Exception:  # telemetry must never fail a request
            self.errors += 1


class LayerScope(AbstractContextManager[Span]):
    """A layer's span as a context manager (see :meth:`Telemetry.layer_span`).

    The span is current for the block and ends after it; an exception marks it an error.
    A layer hands the answer it returns to :meth:`settle`: a failed answer marks the span an
    error, and a streamed one keeps the span open until the stream ends (marking it an error
    if the stream breaks), so the layer's span ends after the attempt spans under it.
    """

    __slots__ = ("_held", "_span", "_token")

    def __init__(self, span: Span) -> None:
        self._span = span
        self._held = False

    def __enter__(self) -> Span:
        self._token = attach_span(self._span)
        return self._span

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        detach(self._token)
        if exc_type is not None and issubclass(exc_type, Exception):
            self._span.set_status(Status(StatusCode.ERROR, exc_type.__name__))
        elif self._held:
            return
        self._span.end()

    def settle(self, response: GatewayResponse, failed: bool | None = None) -> GatewayResponse:
        """Record the layer's answer on its span and return it.

        ``failed`` (default: the answer is not 2xx) sets the span's status to ERROR, described
        by the answer's reason. A streamed answer ends the span when its stream ends.
        """
        span = self._span
        if failed if failed is not None else not response.ok:
            span.set_status(Status(StatusCode.ERROR, _reason_of(response)))
        stream = response.stream
        if stream is not None:
            self._held = True
            stream.on_end(self._stream_ended)
        return response

    def _stream_ended(self, stream: ResponseStream) -> None:
        span = self._span
        try:
            if stream.failure:
                span.set_status(Status(StatusCode.ERROR, stream.failure))
        finally:
            span.end()


def _reason_of(response: GatewayResponse) -> str:
    """The bounded reason of a failed answer: its failure, else its status class."""
    if response.failure:
        return response.failure
    return classify(response.status).value


class _NoopLayer(LayerScope):
    """The layer span when layer spans are off: yields a non-recording span, does nothing."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(_NOOP_SPAN)

    def __enter__(self) -> Span:
        return _NOOP_SPAN

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        return None

    def settle(self, response: GatewayResponse, failed: bool | None = None) -> GatewayResponse:
        """Return ``response``: there is no span to record it on."""
        return response


_NOOP_LAYER = _NoopLayer()


def build_telemetry(
    settings: Any,
    registry: CollectorRegistry | None = None,
    env: Mapping[str, str] | None = None,
    flush_timeout_s: float = 3.0,
) -> Telemetry:
    """Telemetry for a server config's ``telemetry`` section (a ``TelemetrySettings``).

    Tracing follows :func:`relaygate.exporters.otel.setup_tracing`; a tracing detail of
    ``off`` or no exporter makes spans free. ``registry`` defaults to a fresh one.
    ``flush_timeout_s`` bounds the final span export of ``shutdown`` (and each OTLP export).
    The logger honours ``settings.logs`` (:class:`~relaygate.exporters.logging.RelaygateLogger`)
    and never changes the host application's logging configuration.
    """
    from relaygate.exporters.logging import RelaygateLogger
    from relaygate.exporters.otel import setup_tracing
    from relaygate.strategies.trace_sampling import TailPolicy

    traces = settings.traces
    tail = traces.tail_sampling
    threshold = tail.latency_threshold_ms
    tracing = setup_tracing(
        exporter=traces.exporter,
        endpoint=str(traces.endpoint) if traces.endpoint else None,
        sample_ratio=traces.sample_ratio,
        service_name=settings.service_name,
        env=env,
        flush_timeout_s=flush_timeout_s,
        tail_policy=TailPolicy(tail.keep_ok_ratio, None if threshold is None else threshold / 1000),
        max_spans_per_trace=tail.max_spans_per_trace,
        max_buffered_spans=tail.max_buffered_spans,
    )
    detail: Detail = traces.detail if tracing.exporter != "none" else "off"
    metrics = GatewayMetrics(
        registry,
        models=settings.metrics.models,
        max_caller_label_values=settings.metrics.max_caller_label_values,
    )
    if tracing.tail is not None:
        tracing.tail.metrics = metrics
    return Telemetry(
        tracer=tracing.tracer,
        metrics=metrics,
        logger=RelaygateLogger(settings.logs.level, settings.logs.format, env),
        detail=detail,
        shutdown=tracing.shutdown,
    )


def exemplar(span: Span | None = None, *, kept: bool = False) -> dict[str, str] | None:
    """``{"trace_id": ...}`` of the current (or given) sampled span, for metric exemplars.

    Under tail sampling, only of a trace that is exported: decided kept, or still undecided
    and ``kept`` (the caller knows the trace will be kept: a failed attempt, a fallback)."""
    span = span or trace.get_current_span()
    if type(span) is LeanSpan:  # relaygate's own span: its ids are formatted once
        trace_hex, _, sampled = span.hex_ids()
        if not sampled:
            return None
        buffer = span.buffer
        if buffer is not None and not buffer.exports(kept):
            return None
        return {"trace_id": trace_hex}
    ctx = span.get_span_context()
    if not ctx.trace_flags.sampled:
        return None
    buffer = getattr(span, "buffer", None)
    if buffer is not None and not buffer.exports(kept):
        return None
    return {"trace_id": format(ctx.trace_id, "032x")}


def trace_ids(span: Span | None = None) -> tuple[str, str] | None:
    """Hex ``(trace_id, span_id)`` of the current (or given) span, if valid."""
    span = span or trace.get_current_span()
    if type(span) is LeanSpan:  # always valid; its ids are formatted once
        ids = span.hex_ids()
        return ids[0], ids[1]
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
