"""Tail-sampling mechanism: a request's spans wait for its decision, then leave or are dropped.

With tail sampling on (:class:`TailSampler` given to the
:class:`~relaygate.exporters.spans.LeanTracer`), each SERVER span relaygate starts as a
local root (one per request) opens a :class:`TraceBuffer`, and every span under it ends
into that buffer instead of the span processor. The observe layer decides at the request's
end (:func:`relaygate.strategies.trace_sampling.decide`) and :meth:`TraceBuffer.settle`
hands the buffered spans to the batch processor (kept) or lets them go (dropped); spans
that end after the decision follow it. A span is turned into the SDK's ``ReadableSpan``
only when it is kept, so a dropped trace costs its spans' creation and nothing more.

Memory is bounded, and an interesting trace is never lost to the bound: a trace holds at
most ``max_spans_per_trace`` spans and all traces together at most ``max_buffered_spans``.
The span that would pass either bound **decides its trace early: kept** (reason
``overflow``), so its spans leave for the exporter at once and later ones follow
directly. A request span that ends before its request was decided (the observe layer
failed) keeps its trace too (reason ``undecided``).

Kept and dropped traces and spans are counted in ``relaygate_traces_sampled_total{decision,
reason}`` and ``relaygate_trace_spans_total{decision}`` once metrics are bound
(:attr:`TailSampler.metrics`). Like the spans themselves, buffers are used from the event
loop's thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry.sdk.trace import SpanProcessor

from relaygate.strategies.trace_sampling import (
    DROPPED,
    KEPT,
    OVERFLOW,
    UNDECIDED,
    Decision,
    RequestFacts,
    TailPolicy,
    decide,
)

if TYPE_CHECKING:
    from relaygate.exporters.prometheus import CounterChild, GatewayMetrics
    from relaygate.exporters.spans import LeanSpan

DEFAULT_MAX_SPANS_PER_TRACE = 256
"""Spans one trace may hold while its request is undecided."""
DEFAULT_MAX_BUFFERED_SPANS = 20_000
"""Spans all undecided traces may hold together."""

_OVERFLOW = Decision(True, OVERFLOW)
_UNDECIDED = Decision(True, UNDECIDED)


class TailSampler:
    """The tail-sampling policy, the buffers' bounds and where kept spans go."""

    def __init__(
        self,
        processor: SpanProcessor,
        policy: TailPolicy,
        max_spans_per_trace: int = DEFAULT_MAX_SPANS_PER_TRACE,
        max_buffered_spans: int = DEFAULT_MAX_BUFFERED_SPANS,
    ) -> None:
        self.processor = processor
        self.policy = policy
        self.max_spans_per_trace = max(max_spans_per_trace, 1)
        self.max_buffered_spans = max(max_buffered_spans, 1)
        self.buffered = 0
        """Spans held by undecided traces now."""
        self._metrics: GatewayMetrics | None = None
        self._traces: dict[Decision, CounterChild] = {}
        self._spans: dict[bool, CounterChild] = {}

    @property
    def metrics(self) -> GatewayMetrics | None:
        """Where decisions are counted (bound once the metrics exist)."""
        return self._metrics

    @metrics.setter
    def metrics(self, metrics: GatewayMetrics | None) -> None:
        self._metrics = metrics
        self._traces.clear()
        self._spans.clear()

    def open(self, parent_sampled: bool) -> TraceBuffer:
        """A buffer for a new request's trace (``parent_sampled``: it continues a sampled
        ``traceparent``)."""
        return TraceBuffer(self, parent_sampled)

    def count_spans(self, keep: bool, spans: int) -> None:
        """Count ``spans`` spans kept or dropped."""
        child = self._spans.get(keep)
        if child is None:
            metrics = self._metrics
            if metrics is None or not spans:
                return
            child = self._spans[keep] = metrics.trace_spans.labels(KEPT if keep else DROPPED)
        child.inc(spans)

    def count_error(self) -> None:
        """Count a telemetry error (a span's attributes held for later failed to compute)."""
        metrics = self._metrics
        if metrics is not None:
            metrics.telemetry_errors.inc()

    def count_trace(self, decision: Decision) -> None:
        """Count one trace decided by ``decision``."""
        child = self._traces.get(decision)
        if child is None:
            metrics = self._metrics
            if metrics is None:
                return
            child = metrics.traces_sampled.labels(decision.label, decision.reason)
            self._traces[decision] = child
        child.inc()


class TraceBuffer:
    """One request's spans until its decision (see the module docstring)."""

    __slots__ = ("_sampler", "decision", "parent_sampled", "root", "spans")

    def __init__(self, sampler: TailSampler, parent_sampled: bool) -> None:
        self._sampler = sampler
        self.parent_sampled = parent_sampled
        """Whether the trace continues a sampled ``traceparent``."""
        self.spans: list[LeanSpan] = []
        """Ended spans waiting for the decision."""
        self.decision: Decision | None = None
        """The decision, once made (the first one stands)."""
        self.root: LeanSpan | None = None
        """The request's span, which opened the buffer."""

    @property
    def policy(self) -> TailPolicy:
        """The sampler's policy."""
        return self._sampler.policy

    def exports(self, assured: bool = False) -> bool:
        """Whether the trace is (or, ``assured`` by the caller, will be) exported: decided
        kept, or undecided and ``assured``."""
        decision = self.decision
        return assured if decision is None else decision.keep

    def ended(self, span: LeanSpan) -> None:
        """Take a span that ended: hold it, or pass it on / drop it once decided."""
        decision = self.decision
        sampler = self._sampler
        root = span is self.root
        if root:
            # The request's span and its buffer refer to each other: let go of the span
            # once it ended, so a request leaves nothing for the garbage collector.
            self.root = None
        if decision is not None:
            if decision.keep:
                sampler.processor.on_end(span.readable())
            sampler.count_spans(decision.keep, 1)
            return
        if (
            len(self.spans) >= sampler.max_spans_per_trace
            or sampler.buffered >= sampler.max_buffered_spans
        ):
            self.settle(_OVERFLOW)
            self.ended(span)
            return
        self.spans.append(span)
        sampler.buffered += 1
        if root:
            self.settle(_UNDECIDED)

    def failed(self) -> None:
        """Count a telemetry error met while turning one of the trace's spans into the SDK's
        form (:meth:`TailSampler.count_error`)."""
        self._sampler.count_error()

    def decide(self, facts: RequestFacts) -> Decision:
        """Settle the trace by the policy's decision for ``facts`` (see :meth:`settle`)."""
        return self.settle(decide(self._sampler.policy, facts))

    def settle(self, decision: Decision) -> Decision:
        """Apply ``decision`` unless one was made already (which stands and is returned):
        hand the held spans to the processor or drop them, and count the trace."""
        if self.decision is not None:
            return self.decision
        self.decision = decision
        sampler = self._sampler
        spans, self.spans = self.spans, []
        sampler.buffered -= len(spans)
        if decision.keep:
            on_end = sampler.processor.on_end
            for span in spans:
                on_end(span.readable())
        sampler.count_trace(decision)
        sampler.count_spans(decision.keep, len(spans))
        return decision
