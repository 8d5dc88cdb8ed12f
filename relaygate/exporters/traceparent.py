"""``traceparent`` for the upstream request: the global propagator's, the short way when
that is provably the same.

:data:`inject` is ``opentelemetry.propagate.inject(carrier)`` for the current context. When
the global propagator is exactly the API's default (a ``CompositePropagator`` of the SDK's
W3C trace-context propagator, then its W3C baggage propagator) and the current span is one
of relaygate's own :class:`~relaygate.exporters.spans.LeanSpan`, it writes the
``traceparent`` (and ``tracestate``) the trace-context propagator would write, from the
span's ids formatted once, and hands baggage, if the context carries any, to the default's
own baggage propagator. Any other propagator, span or runtime context: the propagator is
called as it is.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping

from opentelemetry import propagate
from opentelemetry.baggage import _BAGGAGE_KEY
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from relaygate.exporters.current import CONTEXT_VAR, SPAN_KEY
from relaygate.exporters.spans import LeanSpan


def _default_baggage(textmap: TextMapPropagator) -> TextMapPropagator | None:
    """The baggage propagator of ``textmap`` when it is the API's default (trace context,
    then baggage, nothing else), else ``None``."""
    if type(textmap) is not CompositePropagator:
        return None
    parts = list(textmap._propagators)
    if [type(p) for p in parts] != [TraceContextTextMapPropagator, W3CBaggagePropagator]:
        return None
    return parts[1]


class _Injector:
    """:data:`inject`: remembers the last global propagator seen and whether it is the
    default."""

    __slots__ = ("baggage", "seen")

    def __init__(self) -> None:
        self.seen: TextMapPropagator | None = None
        self.baggage: TextMapPropagator | None = None

    def __call__(self, carrier: MutableMapping[str, str]) -> None:
        textmap = propagate.get_global_textmap()
        if textmap is not self.seen:
            self.seen, self.baggage = textmap, _default_baggage(textmap)
        baggage = self.baggage
        if baggage is None or CONTEXT_VAR is None:
            textmap.inject(carrier)
            return
        context = CONTEXT_VAR.get()
        span = context.get(SPAN_KEY)
        if type(span) is not LeanSpan:
            textmap.inject(carrier)
            return
        span_context = span.get_span_context()
        if not span_context[5]:  # is_valid
            textmap.inject(carrier)
            return
        trace_hex, span_hex, _ = span.hex_ids()
        carrier["traceparent"] = f"00-{trace_hex}-{span_hex}-{span_context.trace_flags:02x}"
        if span_context.trace_state:
            carrier["tracestate"] = span_context.trace_state.to_header()
        if context.get(_BAGGAGE_KEY):
            baggage.inject(carrier, context)


inject: Callable[[MutableMapping[str, str]], None] = _Injector()
"""``opentelemetry.propagate.inject(carrier)`` for the current context (see the module
docstring for when it takes the short way)."""
