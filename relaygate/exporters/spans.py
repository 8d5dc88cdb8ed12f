"""A lean tracer for the spans relaygate makes itself, feeding the SDK's span processors.

The OpenTelemetry SDK's spans are general-purpose: every one takes four locks, copies and
validates its attributes into bounded containers and consults the sampler, about 40 µs of
CPU for a span with ten attributes on a small machine — several times what relaygate spends
on the rest of a request. relaygate's spans are made by its own code with a handful of
primitive attributes, so :class:`LeanTracer` makes them as plain slotted objects and builds
the SDK's :class:`~opentelemetry.sdk.trace.ReadableSpan` once, when a span ends, for the
same span processors and exporters the SDK would use.

Semantics kept from the SDK: ids from its id generator (the SDK's default random one is
drawn from directly, the same way, and its contexts built as ``SpanContext`` builds them);
the current span read from and set in the API's context; the sampler decides at every local
root and remote parent, and a span under one of this tracer's recording spans follows its
parent's decision (the parent-based behaviour of the default sampler); an unsampled span is
a :class:`~opentelemetry.trace.NonRecordingSpan` with a fresh span id; ``set_status``
ignores ``UNSET`` and never leaves ``OK``; ``None`` attribute values are dropped and lists
stored as tuples; exceptions are recorded as ``exception`` events. Not kept: span limits
(relaygate's spans carry a bounded set of attributes and events by construction) and
``on_start`` callbacks (the batch and simple processors do nothing there). A tracer
provider supplied by a host application is used through the plain API instead.

With :attr:`LeanTracer.tail` set, a SERVER span started as a local root opens a
tail-sampling buffer that its descendants share: they end into it and are turned into
``ReadableSpan`` only if the request's trace is kept (:mod:`relaygate.exporters.tail`).
Attributes that take work to compute are then computed only for a kept trace: a layer hands
:func:`set_attributes_later` a producer and its arguments, which a span of an undecided
trace holds and runs when it is turned into a ``ReadableSpan``; a span whose trace was
dropped stops recording (``is_recording`` answers ``False``).
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import DEFAULT_TRACE_STATE, TraceState
from opentelemetry.util import types

from relaygate.exporters.current import CONTEXT_VAR, SPAN_KEY

if TYPE_CHECKING:
    from relaygate.exporters.tail import TailSampler, TraceBuffer

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSET = Status(StatusCode.UNSET)
_now = time.time_ns
_TRACE_ID_LIMIT = 1 << 128
_new_tuple = tuple.__new__

AttributeProducer = Callable[..., Mapping[str, types.AttributeValue]]
"""Computes a span's attributes from the arguments it was handed (see
:func:`set_attributes_later`)."""


def set_attributes_later(span: trace.Span, producer: AttributeProducer, *args: Any) -> None:
    """Set ``producer(*args)``'s attributes on ``span`` when they can still be exported.

    On a span of relaygate's tracer whose trace awaits its tail-sampling decision, the call
    is held and run only if the trace is kept, when the span is turned into the SDK's
    ``ReadableSpan``; on a span of a dropped trace it is never run; on any other recording
    span it is run now. ``args`` must not change once handed over (pass values, or objects
    no one changes afterwards), and the keys must be ones the span's other calls do not set.
    A producer run now raises to the caller; one run later that raises is counted in
    ``relaygate_telemetry_errors_total`` and costs its own attributes only.
    """
    if type(span) is not LeanSpan:
        if span.is_recording():
            span.set_attributes(producer(*args))
        return
    if span.ended:
        return
    buffer = span.buffer
    if buffer is not None:
        decision = buffer.decision
        if decision is None:  # undecided: held until the span is turned into a ReadableSpan
            later = span._later
            if later is None:
                span._later = [(producer, args)]
            else:
                later.append((producer, args))
            return
        if not decision.keep:
            return
    _store(span._attributes, producer(*args))


def _span_context(
    trace_id: int, span_id: int, flags: TraceFlags, trace_state: TraceState
) -> SpanContext:
    """``SpanContext(trace_id, span_id, False, flags, trace_state)`` for a ``span_id`` known
    to be valid (1 to 2**64-1) and a ``trace_state`` given: the same tuple, built without
    the constructor's checks and defaults."""
    valid = 0 < trace_id < _TRACE_ID_LIMIT
    return _new_tuple(SpanContext, (trace_id, span_id, False, flags, trace_state, valid))


def _store(target: dict[str, types.AttributeValue], attributes: Mapping[str, Any]) -> None:
    """Store ``attributes`` in ``target`` as the SDK would: ``None`` values skipped, lists
    as tuples."""
    for key, value in attributes.items():
        if value is None:
            continue
        target[key] = tuple(value) if type(value) is list else value


class LeanTracer(trace.Tracer):
    """A :class:`~opentelemetry.trace.Tracer` whose spans end into ``processor``."""

    def __init__(
        self,
        processor: SpanProcessor,
        sampler: Sampler,
        resource: Resource,
        scope: InstrumentationScope,
        id_generator: IdGenerator,
    ) -> None:
        self.processor = processor
        self.sampler = sampler
        self.resource = resource
        self.scope = scope
        self.id_generator = id_generator
        self.tail: TailSampler | None = None
        """Tail sampling: each request's spans wait for its decision (unset: none)."""
        self.roots_sampled = False
        """Whether ``sampler`` is known to sample every local root with nothing more to
        say (``ParentBased(ALWAYS_ON)``): such a span is then started without asking it."""
        self._random_ids = type(id_generator) is RandomIdGenerator
        """Whether ids are the SDK's random ones, drawn here the way its generator does."""
        random_ids = getattr(id_generator, "is_trace_id_random", None)
        self._root_flags = TraceFlags(
            TraceFlags.RANDOM_TRACE_ID if random_ids is not None and random_ids() else 0
        )

    @classmethod
    def of(
        cls, provider: TracerProvider, processor: SpanProcessor, name: str = "relaygate"
    ) -> LeanTracer:
        """A tracer with ``provider``'s sampler, resource and ids, ending spans into
        ``processor`` (which the caller also adds to ``provider``, so that flushing and
        shutting the provider down covers it)."""
        return cls(
            processor,
            provider.sampler,
            provider.resource,
            InstrumentationScope(name, ""),
            provider.id_generator,
        )

    def start_span(
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        """A started span; recording and exported when sampled (see the module docstring)."""
        # relaygate's spans are made under relaygate's spans: read the current one straight
        # from the context (the API's get_current_span for anything else).
        if context is not None:
            parent_span = context.get(SPAN_KEY)
        elif CONTEXT_VAR is not None:
            parent_span = CONTEXT_VAR.get().get(SPAN_KEY)
        else:
            parent_span = trace.get_current_span()
        if type(parent_span) is LeanSpan and not parent_span.ended:
            # Under one of this tracer's recording spans: follow its (sampled) decision.
            parent_context = parent_span._context
            trace_id = parent_context[0]
            if self._random_ids:
                # The SDK's RandomIdGenerator's draw (never 0), and the tuple SpanContext
                # would build, without their frames and checks.
                span_id = random.getrandbits(64) or self.id_generator.generate_span_id()
                valid = 0 < trace_id < _TRACE_ID_LIMIT
                span_context = _new_tuple(
                    SpanContext,
                    (trace_id, span_id, False, parent_context[3], parent_context[4], valid),
                )
            else:
                span_context = SpanContext(
                    trace_id,
                    self.id_generator.generate_span_id(),
                    False,
                    parent_context[3],
                    parent_context[4],
                )
            span = LeanSpan(
                self, name, span_context, parent_context, kind, attributes, links, start_time
            )
            span.buffer = parent_span.buffer
            # The trace's hex id, formatted once for all its spans.
            span._trace_hex = parent_span._trace_hex or parent_span.trace_hex()
            return span
        # What the API's get_current_span answers: a Span, else INVALID_SPAN.
        parent: SpanContext | None = (
            parent_span.get_span_context()
            if parent_span is not None and isinstance(parent_span, trace.Span)
            else trace.INVALID_SPAN_CONTEXT
        )
        assert parent is not None  # the API always answers a context, INVALID at worst
        if parent[5]:  # is_valid
            trace_id = parent.trace_id
            flags = parent.trace_flags & TraceFlags.RANDOM_TRACE_ID
        else:
            trace_id = (random.getrandbits(128) if self._random_ids else 0) or (
                self.id_generator.generate_trace_id()
            )
            parent, flags = None, self._root_flags
            if self.roots_sampled:
                return self._root(name, trace_id, flags, kind, attributes, links, start_time)
        result = self.sampler.should_sample(context, trace_id, name, kind, attributes, links)
        sampled = result.decision is Decision.RECORD_AND_SAMPLE
        span_context = SpanContext(
            trace_id,
            self.id_generator.generate_span_id(),
            False,
            TraceFlags(flags | TraceFlags.SAMPLED) if sampled else TraceFlags(flags),
            result.trace_state,
        )
        if result.decision is Decision.DROP:
            return trace.NonRecordingSpan(span_context)
        root = LeanSpan(
            self, name, span_context, parent, kind, result.attributes, links, start_time
        )
        self._open(root, kind, parent is not None and parent.trace_flags.sampled)
        return root

    def _root(
        self,
        name: str,
        trace_id: int,
        flags: int,
        kind: SpanKind,
        attributes: types.Attributes,
        links: Sequence[Link] | None,
        start_time: int | None,
    ) -> LeanSpan:
        """A sampled local root (:attr:`roots_sampled`): what the sampler would answer."""
        trace_flags = TraceFlags(flags | TraceFlags.SAMPLED)
        if self._random_ids:
            span_id = random.getrandbits(64) or self.id_generator.generate_span_id()
            span_context = _span_context(trace_id, span_id, trace_flags, DEFAULT_TRACE_STATE)
        else:
            span_context = SpanContext(
                trace_id, self.id_generator.generate_span_id(), False, trace_flags, None
            )
        root = LeanSpan(self, name, span_context, None, kind, attributes, links, start_time)
        self._open(root, kind, False)
        return root

    def _open(self, root: LeanSpan, kind: SpanKind, parent_sampled: bool) -> None:
        """Open ``root``'s tail-sampling buffer when it is a request's span."""
        tail = self.tail
        if tail is not None and kind is SpanKind.SERVER:
            # A request's span: its trace waits for the request's tail-sampling decision.
            buffer = root.buffer = tail.open(parent_sampled)
            buffer.root = root

    @contextmanager
    def start_as_current_span(  # type: ignore[override]  # the API's own decorator is private
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        """:meth:`start_span`, made current for the block (ended after it by default)."""
        span = self.start_span(name, context, kind, attributes, links, start_time)
        with trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current


class LeanSpan(trace.Span):
    """A recording span of :class:`LeanTracer`: plain fields until :meth:`end`."""

    __slots__ = (
        "_attributes",
        "_context",
        "_end",
        "_events",
        "_ids",
        "_kind",
        "_later",
        "_links",
        "_name",
        "_parent",
        "_start",
        "_status",
        "_trace_hex",
        "_tracer",
        "buffer",
        "ended",
    )

    def __init__(
        self,
        tracer: LeanTracer,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: types.Attributes,
        links: Sequence[Link] | None,
        start_time: int | None,
    ) -> None:
        self._tracer = tracer
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        self.ended = False
        self._attributes: dict[str, types.AttributeValue] = {}
        if attributes:
            self.set_attributes(attributes)
        self._events: list[Event] = []
        self._links: tuple[Link, ...] = tuple(links) if links else ()
        self._status = _UNSET
        self._start = start_time if start_time is not None else _now()
        self._end = 0
        self.buffer: TraceBuffer | None = None
        """The tail-sampling buffer of the request this span belongs to, if any."""
        self._ids: tuple[str, str, bool] | None = None
        self._trace_hex: str | None = None
        self._later: list[tuple[AttributeProducer, tuple[Any, ...]]] | None = None

    def trace_hex(self) -> str:
        """The hex trace id (``032x``), formatted once per trace: a span started under
        another of relaygate's spans takes it from its parent."""
        trace_hex = self._trace_hex
        if trace_hex is None:
            trace_id = self._context[0]
            try:
                trace_hex = trace_id.to_bytes(16, "big").hex()
            except OverflowError:  # not a valid id; formatted as the API formats any
                trace_hex = format(trace_id, "032x")
            self._trace_hex = trace_hex
        return trace_hex

    def hex_ids(self) -> tuple[str, str, bool]:
        """Hex trace id, hex span id and whether the span is sampled (formatted once)."""
        ids = self._ids
        if ids is None:
            ctx = self._context
            span_id = ctx[1]
            try:
                span_hex = span_id.to_bytes(8, "big").hex()
            except OverflowError:  # not a valid id; formatted as the API formats any
                span_hex = format(span_id, "016x")
            ids = self._ids = (
                self._trace_hex or self.trace_hex(),
                span_hex,
                bool(ctx[3] & TraceFlags.SAMPLED),
            )
        return ids

    def get_span_context(self) -> SpanContext:
        """This span's context."""
        return self._context

    def is_recording(self) -> bool:
        """``True`` until the span ends, unless its trace was dropped by tail sampling."""
        if self.ended:
            return False
        buffer = self.buffer
        if buffer is None:
            return True
        decision = buffer.decision
        return decision is None or decision.keep

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        """Set several attributes; ``None`` values are skipped, lists stored as tuples."""
        if not self.ended:
            _store(self._attributes, attributes)

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        """Set one attribute (see :meth:`set_attributes`)."""
        if self.ended or value is None:
            return
        self._attributes[key] = tuple(value) if type(value) is list else value

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        """Add an event, timestamped now unless ``timestamp`` is given."""
        if self.ended:
            return
        attrs = {k: v for k, v in attributes.items() if v is not None} if attributes else {}
        self._events.append(Event(name, attrs, timestamp if timestamp is not None else _now()))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        """Add a link to ``context``."""
        if not self.ended and context.is_valid:
            self._links = (*self._links, Link(context, attributes))

    def update_name(self, name: str) -> None:
        """Rename the span."""
        if not self.ended:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """Set the status as the SDK does: ``UNSET`` is ignored and ``OK`` is final."""
        if self.ended or self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            if status.status_code is not StatusCode.UNSET:
                self._status = status
        elif status is not StatusCode.UNSET:
            self._status = Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """Add an ``exception`` event with type, message and stack trace."""
        attrs: dict[str, Any] = {
            "exception.type": type(exception).__qualname__,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(
                traceback.format_exception(type(exception), exception, exception.__traceback__)
            ),
            "exception.escaped": str(escaped),
        }
        if attributes:
            attrs.update(attributes)
        self.add_event("exception", attrs, timestamp)

    def end(self, end_time: int | None = None) -> None:
        """End the span and hand it to the span processor, or to its trace's tail-sampling
        buffer (once)."""
        if self.ended:
            return
        self.ended = True
        self._end = end_time if end_time is not None else _now()
        buffer = self.buffer
        if buffer is None:
            self._tracer.processor.on_end(self.readable())
        else:
            buffer.ended(self)

    def readable(self) -> ReadableSpan:
        """The ended span in the SDK's form, for span processors and exporters, with the
        attributes held for later (:func:`set_attributes_later`) computed now."""
        tracer = self._tracer
        attributes = self._attributes
        later = self._later
        if later is not None:
            self._later = None
            for producer, args in later:
                try:
                    _store(attributes, producer(*args))
                except Exception:  # telemetry never fails a request: counted, not raised
                    if self.buffer is not None:
                        self.buffer.failed()
        return ReadableSpan(
            name=self._name,
            context=self._context,
            parent=self._parent,
            resource=tracer.resource,
            attributes=attributes,
            events=self._events,
            links=self._links,
            kind=self._kind,
            status=self._status,
            start_time=self._start,
            end_time=self._end,
            instrumentation_scope=tracer.scope,
        )

    def __repr__(self) -> str:
        return f"LeanSpan(name={self._name!r}, context={self._context!r})"
