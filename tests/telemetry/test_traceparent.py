"""relaygate's own traceparent injection writes exactly what the global propagator writes.

:data:`relaygate.exporters.traceparent.inject` takes a short way for relaygate's own spans
under OpenTelemetry's default propagator; every case here is held to
``opentelemetry.propagate.inject`` for the same current context, under the default
propagator and under others.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from relaygate.exporters import traceparent
from relaygate.exporters.current import attach_span, detach
from relaygate.exporters.spans import LeanSpan, LeanTracer


def _tracer() -> LeanTracer:
    provider = TracerProvider()
    tracer = LeanTracer.of(provider, SimpleSpanProcessor(InMemorySpanExporter()))
    tracer.roots_sampled = True
    return tracer


@pytest.fixture
def textmap() -> Iterator[None]:
    """Restore the global propagator a test replaces."""
    before = propagate.get_global_textmap()
    yield
    propagate.set_global_textmap(before)


def _both() -> tuple[dict[str, str], dict[str, str]]:
    ours: dict[str, str] = {}
    traceparent.inject(ours)
    theirs: dict[str, str] = {}
    propagate.inject(theirs)
    return ours, theirs


def _both_under(span: trace.Span) -> tuple[dict[str, str], dict[str, str]]:
    """:func:`_both` with ``span`` current."""
    token = attach_span(span)
    try:
        return _both()
    finally:
        detach(token)


def _under_remote(state: TraceState | None, sampled: bool) -> trace.Span:
    """A CLIENT span of relaygate's under a request span continuing a caller's trace."""
    remote = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else 0),
        trace_state=state,
    )
    parent = trace.set_span_in_context(trace.NonRecordingSpan(remote))
    tracer = _tracer()
    server = tracer.start_span("POST", context=parent, kind=SpanKind.SERVER)
    token = attach_span(server)
    try:
        return tracer.start_span("chat gpt", kind=SpanKind.CLIENT)
    finally:
        detach(token)


@pytest.mark.parametrize("state", [None, TraceState([("vendor", "abc"), ("other", "1")])])
@pytest.mark.parametrize("sampled", [True, False])
def test_a_client_span_is_propagated_as_the_default_propagator_does(
    state: TraceState | None, sampled: bool
) -> None:
    span = _under_remote(state, sampled)
    ours, theirs = _both_under(span)
    assert ours == theirs
    ids = span.get_span_context()
    assert ours["traceparent"].split("-")[1:3] == [
        format(ids.trace_id, "032x"),
        format(ids.span_id, "016x"),
    ]
    assert ("tracestate" in ours) is (state is not None)


def test_baggage_is_left_to_the_baggage_propagator() -> None:
    span = _tracer().start_span("root", kind=SpanKind.SERVER)
    token = otel_context.attach(
        trace.set_span_in_context(span, baggage.set_baggage("team", "search b"))
    )
    try:
        ours, theirs = _both()
    finally:
        otel_context.detach(token)
    assert ours == theirs
    assert ours["baggage"] == "team=search+b"


def test_no_span_or_a_foreign_span_goes_through_the_propagator() -> None:
    assert _both() == ({}, {})
    foreign = TracerProvider().get_tracer("host").start_span("host span")
    ours, theirs = _both_under(foreign)
    assert ours == theirs and "traceparent" in ours


class _Stamp(TextMapPropagator):
    """A host's own propagator: one fixed header."""

    def extract(self, carrier, context=None, getter=None):  # type: ignore[no-untyped-def]
        return context

    def inject(self, carrier, context=None, setter=None):  # type: ignore[no-untyped-def]
        carrier["x-stamp"] = "1"

    @property
    def fields(self) -> set[str]:
        return {"x-stamp"}


@pytest.mark.parametrize(
    ("configured", "stamped"),
    [
        (_Stamp(), True),
        (TraceContextTextMapPropagator(), False),
        (CompositePropagator([TraceContextTextMapPropagator(), _Stamp()]), True),
        (CompositePropagator([W3CBaggagePropagator(), TraceContextTextMapPropagator()]), False),
    ],
    ids=["custom", "tracecontext-alone", "with-custom", "other-order"],
)
def test_any_other_global_propagator_is_called_as_it_is(
    configured: TextMapPropagator, stamped: bool, textmap: None
) -> None:
    propagate.set_global_textmap(configured)
    span = _tracer().start_span("root", kind=SpanKind.SERVER)
    assert type(span) is LeanSpan
    ours, theirs = _both_under(span)
    assert ours == theirs
    assert ("x-stamp" in ours) is stamped
