"""``SpanEncoder`` encodes exactly what the OTLP exporter's own ``encode_spans`` builds.

The library encoder is the oracle: every case decodes ``SpanEncoder().encode(spans)`` and
compares it, as a message (field presence included), with ``encode_spans(spans)``. Spans are
made three ways: ``ReadableSpan`` constructed directly (plain dicts and tuples), the SDK's
``TracerProvider`` (``BoundedAttributes``/``BoundedList`` containers, span limits) and
relaygate's ``LeanTracer`` (what relaygate really exports).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from relaygate.exporters import otlp_encoding
from relaygate.exporters.otlp_encoding import SpanEncoder
from relaygate.exporters.spans import LeanTracer

RESOURCE = Resource({"service.name": "relaygate", "host.name": "h1"})
SCOPE = InstrumentationScope("relaygate", "1.2.3")
TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
T0 = 1_700_000_000_000_000_000


def ctx(
    span_id: int = 0x00F067AA0BA902B7,
    trace_id: int = TRACE_ID,
    remote: bool = False,
    trace_state: TraceState | None = None,
) -> SpanContext:
    """A sampled span context."""
    return SpanContext(
        trace_id, span_id, remote, TraceFlags(TraceFlags.SAMPLED), trace_state=trace_state
    )


def span(
    name: str = "chat gpt-4o",
    attributes: dict[str, Any] | None = None,
    resource: Resource = RESOURCE,
    scope: InstrumentationScope | None = SCOPE,
    span_id: int = 0x00F067AA0BA902B7,
    **kwargs: Any,
) -> ReadableSpan:
    """A ``ReadableSpan`` built directly, with defaults for everything but what a test sets."""
    kwargs.setdefault("start_time", T0)
    kwargs.setdefault("end_time", T0 + 1_234_567)
    kwargs.setdefault("kind", SpanKind.CLIENT)
    return ReadableSpan(
        name=name,
        context=kwargs.pop("context", None) or ctx(span_id),
        resource=resource,
        attributes=attributes,
        instrumentation_scope=scope,
        **kwargs,
    )


def check(spans: Sequence[ReadableSpan], encoder: SpanEncoder | None = None) -> bytes:
    """Assert ``SpanEncoder`` agrees with the library encoder on ``spans``; the bytes."""
    encoded = (encoder or SpanEncoder()).encode(spans)
    expected = encode_spans(spans)
    decoded = ExportTraceServiceRequest.FromString(encoded)
    assert decoded == expected, f"\nours:\n{decoded}\nlibrary:\n{expected}"
    return encoded


class Recorder:
    """Spans made by the SDK's ``TracerProvider``, collected in memory."""

    def __init__(
        self,
        limits: SpanLimits | None = None,
        resource: Resource = RESOURCE,
        lean: bool = False,
    ) -> None:
        self.exporter = InMemorySpanExporter()
        processor = SimpleSpanProcessor(self.exporter)
        self.provider = TracerProvider(resource=resource, span_limits=limits)
        self.provider.add_span_processor(processor)
        self.tracer: Any = (
            LeanTracer.of(self.provider, processor, "relaygate")
            if lean
            else self.provider.get_tracer("relaygate", "0.1.0")
        )

    def spans(self) -> list[ReadableSpan]:
        """The finished spans so far."""
        return list(self.exporter.get_finished_spans())


@pytest.fixture(params=["sdk", "lean"])
def recorder(request: pytest.FixtureRequest) -> Iterator[Recorder]:
    """A recorder using the SDK's tracer or relaygate's ``LeanTracer``."""
    rec = Recorder(lean=request.param == "lean")
    yield rec
    rec.provider.shutdown()


# -- basics -----------------------------------------------------------------------------------


def test_no_spans() -> None:
    assert check([]) == b""


def test_one_span_without_attributes() -> None:
    check([span()])
    check([span(attributes={})])


def test_span_without_times_name_or_scope() -> None:
    check([span(name="", start_time=None, end_time=None, scope=None)])
    check([span(start_time=T0, end_time=None), span(start_time=None, end_time=T0, span_id=2)])


@pytest.mark.parametrize("kind", list(SpanKind))
def test_every_span_kind(kind: SpanKind) -> None:
    check([span(kind=kind)])


def test_provider_spans(recorder: Recorder) -> None:
    with recorder.tracer.start_as_current_span("outer", kind=SpanKind.SERVER) as outer:
        outer.set_attribute("http.route", "/v1/chat/completions")
        with recorder.tracer.start_as_current_span("inner", attributes={"a": 1}) as inner:
            inner.add_event("relaygate.first_chunk", {"time_to_first_chunk_s": 0.25})
            inner.set_status(Status(StatusCode.ERROR, "upstream 503"))
    check(recorder.spans())


# -- attribute values -------------------------------------------------------------------------

VALUES: list[Any] = [
    "openai",
    "",
    "ünïcødé ✓ 𝄞 模型",
    True,
    False,
    0,
    1,
    -1,
    127,
    128,
    16384,
    -(2**62),
    2**62,
    2**63 - 1,
    -(2**63),
    1.5,
    0.0,
    -0.0,
    -2.5e-300,
    float("inf"),
    float("-inf"),
    b"",
    b"\x00\xff raw",
    ("a", "", "ü"),
    (True, False),
    (0, -1, 2**62),
    (1.5, -0.0),
    (b"x", b""),
    (),
    [],
    ["list", "of", "str"],
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_attribute_value(value: Any) -> None:
    check([span(attributes={"k": value})])


def test_every_value_kind_in_one_span_and_event_and_link() -> None:
    attributes = {f"k{i}": value for i, value in enumerate(VALUES)}
    events = [Event("e", attributes, T0 + 5)]
    links = [Link(ctx(7, trace_id=99), attributes)]
    check([span(attributes=attributes, events=events, links=links)])


def test_provider_attribute_values(recorder: Recorder) -> None:
    for i, value in enumerate(VALUES):
        with recorder.tracer.start_as_current_span(f"s{i}") as current:
            current.set_attribute("k", value)
            current.set_attributes({"other": value, "fixed": "x"})
    spans = recorder.spans()
    assert len(spans) == len(VALUES)
    check(spans)


def test_values_only_the_library_encoder_accepts() -> None:
    # Not valid OTel attribute values, but encode_spans handles them: so do we.
    odd = {
        "none": None,
        "mapping": {"a": 1, 2: "b", "nested": {"x": [1, 2]}},
        "mixed": ("a", 1, 2.5, None, b"z"),
        "nested": [[1, 2], ["a"]],
        "bytearray": bytearray(b"ab"),
        "": "empty key",
    }
    check([span(attributes=odd)])


def test_unencodable_values_raise_and_are_left_out_like_the_library(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad: list[Any] = [object(), 2**63, -(2**63) - 1, "\ud800", [1, object()], {1j}]
    for value in bad:
        with pytest.raises((TypeError, ValueError)):
            otlp_encoding._any_value(value)
    attributes = {"good": "kept", **{f"bad{i}": value for i, value in enumerate(bad)}}
    attributes["after"] = 3
    with caplog.at_level(logging.ERROR):
        encoded = check([span(attributes=attributes)])
        check([span(attributes=attributes)])  # a second pass must not have cached a failure
    request = ExportTraceServiceRequest.FromString(encoded)
    keys = [kv.key for kv in request.resource_spans[0].scope_spans[0].spans[0].attributes]
    assert keys == ["good", "after"]
    ours = [r for r in caplog.records if r.name == otlp_encoding.__name__]
    assert len(ours) == 2 * len(bad)
    assert all("Failed to encode key bad" in r.getMessage() for r in ours)


def test_errors_outside_attributes_raise() -> None:
    with pytest.raises(ValueError):
        SpanEncoder().encode([ReadableSpan("no context")])
    with pytest.raises(KeyError):
        SpanEncoder().encode([span(kind="client")])


# -- events, links, status, parents, trace state ----------------------------------------------


def test_events_with_and_without_attributes() -> None:
    events = [
        Event("relaygate.retry", {"relaygate.attempt": 2, "error.type": "503"}, T0 + 10),
        Event("relaygate.first_chunk", None, T0 + 20),
        Event("", {}, T0 + 30),
    ]
    check([span(events=events)])


def test_links_with_attributes() -> None:
    links = [
        Link(ctx(11, trace_id=1), {"relaygate.attempt": 1, "why": "fallback"}),
        Link(ctx(12, trace_id=2, remote=True, trace_state=TraceState([("k", "v")]))),
        Link(ctx(13, trace_id=3), {}),
    ]
    check([span(links=links)])


def test_provider_events_links_and_exception(recorder: Recorder) -> None:
    link = Link(ctx(21, trace_id=5, remote=True), {"l": "x"})
    with recorder.tracer.start_as_current_span("s", links=[link]) as current:
        current.add_event("plain")
        current.add_event("with attributes", {"n": 1, "f": 0.5, "s": "v"})
        current.record_exception(RuntimeError("boom"))
    check(recorder.spans())


@pytest.mark.parametrize(
    "status",
    [
        Status(StatusCode.UNSET),
        Status(StatusCode.OK),
        Status(StatusCode.ERROR),
        Status(StatusCode.ERROR, "upstream returned 503"),
        Status(StatusCode.ERROR, "ü" * 200),
    ],
    ids=["unset", "ok", "error", "error-description", "error-long-description"],
)
def test_status(status: Status) -> None:
    encoder = SpanEncoder()
    check([span(status=status), span(status=status, span_id=2)], encoder)
    check([span(status=Status(StatusCode.OK)), span(status=status, span_id=2)], encoder)


@pytest.mark.parametrize(
    "parent",
    [None, ctx(0x1111), ctx(0x2222, remote=True)],
    ids=["root", "local-parent", "remote-parent"],
)
def test_parent(parent: SpanContext | None) -> None:
    check([span(parent=parent)])


def test_provider_remote_parent(recorder: Recorder) -> None:
    remote = set_span_in_context(NonRecordingSpan(ctx(0x3333, remote=True)))
    with recorder.tracer.start_as_current_span("child", context=remote):
        pass
    with (
        recorder.tracer.start_as_current_span("root"),
        recorder.tracer.start_as_current_span("local child"),
    ):
        pass
    check(recorder.spans())


def test_trace_state() -> None:
    state = TraceState([("vendor", "abc"), ("other", "1-2")])
    check([span(context=ctx(trace_state=state))])
    check([span(context=ctx(trace_state=TraceState()))])


# -- grouping ---------------------------------------------------------------------------------


def test_two_resources_interleaved() -> None:
    other = Resource({"service.name": "other"}, schema_url="https://opentelemetry.io/schemas/1.2")
    spans = [
        span(span_id=1),
        span(span_id=2, resource=other),
        span(span_id=3),
        span(span_id=4, resource=other, scope=None),
        span(span_id=5),
    ]
    check(spans)


def test_equal_resource_objects_share_one_resource_spans() -> None:
    # ReadableSpan() without a resource makes a fresh, equal Resource per span.
    spans = [ReadableSpan(f"s{i}", context=ctx(i + 1)) for i in range(3)]
    copy = Resource(dict(RESOURCE.attributes))
    spans += [span(span_id=10), span(span_id=11, resource=copy), span(span_id=12)]
    request = ExportTraceServiceRequest.FromString(check(spans))
    assert len(request.resource_spans) == 2


def test_two_scopes_under_one_resource() -> None:
    versioned = InstrumentationScope(
        "relaygate.gateway",
        "0.1.0",
        "https://opentelemetry.io/schemas/1.26.0",
        {"scope.attr": "x", "n": 3},
    )
    same_but_equal = InstrumentationScope("relaygate", "1.2.3")
    spans = [
        span(span_id=1),
        span(span_id=2, scope=versioned),
        span(span_id=3, scope=same_but_equal),
        span(span_id=4, scope=None),
        span(span_id=5, scope=versioned),
        span(span_id=6),
    ]
    request = ExportTraceServiceRequest.FromString(check(spans))
    assert len(request.resource_spans[0].scope_spans) == 3


def test_provider_two_scopes_and_resources() -> None:
    first = Recorder()
    second = Recorder(resource=Resource.create({"service.name": "second"}))
    tracers = [
        first.tracer,
        first.provider.get_tracer("other.scope", "2.0", schema_url="https://example.com/s"),
        second.tracer,
    ]
    for i in range(9):
        with tracers[i % 3].start_as_current_span(f"s{i}"):
            pass
    check(first.spans() + second.spans())


# -- limits, sizes, caches --------------------------------------------------------------------


def test_dropped_counts() -> None:
    limits = SpanLimits(
        max_span_attributes=2,
        max_events=1,
        max_links=1,
        max_event_attributes=1,
        max_link_attributes=1,
    )
    recorder = Recorder(limits=limits)
    links = [Link(ctx(i, trace_id=9), {"a": 1, "b": 2}) for i in range(1, 4)]
    with recorder.tracer.start_as_current_span("limited", links=links) as current:
        current.set_attributes({"a": 1, "b": "two", "c": 3.0, "d": True})
        current.add_event("e1", {"x": 1, "y": 2})
        current.add_event("e2", {"x": 1, "y": 2, "z": 3})
    spans = recorder.spans()
    assert spans[0].dropped_attributes and spans[0].dropped_events and spans[0].dropped_links
    request = ExportTraceServiceRequest.FromString(check(spans))
    pb_span = request.resource_spans[0].scope_spans[0].spans[0]
    assert pb_span.dropped_attributes_count == 2
    assert pb_span.events[0].dropped_attributes_count == 2
    assert pb_span.links[0].dropped_attributes_count == 1


@pytest.mark.parametrize("size", [127, 128, 300, 16383, 16384, 70_000])
def test_long_names_and_values(size: int) -> None:
    text = "x" * size
    wide = "é" * (size // 2 + 1)  # two bytes per character
    attributes = {text: text, "wide": wide, "k": text.encode(), "arr": (text, wide)}
    events = [Event(text, {text: 1, "v": wide}, T0)]
    links = [Link(ctx(3), {"v": text})]
    scope = InstrumentationScope(text, wide, text, {text: wide})
    resource = Resource({"service.name": wide, text: text}, schema_url=text)
    spans = [
        span(text, attributes, events=events, links=links),
        span(wide, attributes, resource=resource, scope=scope, span_id=2),
        span(status=Status(StatusCode.ERROR, text), span_id=3),
    ]
    encoder = SpanEncoder()
    assert check(spans, encoder) == check(spans, encoder)


def test_same_spans_twice_give_identical_bytes() -> None:
    recorder = Recorder()
    for i in range(20):
        attributes = {"gen_ai.system": "openai", "server.port": 443, "i": i % 3, "ok": True}
        with recorder.tracer.start_as_current_span("chat", attributes=attributes):
            pass
    spans = recorder.spans()
    encoder = SpanEncoder()
    first = check(spans, encoder)
    assert encoder._kv_cache  # the second pass reads cached KeyValues
    assert check(spans, encoder) == first
    assert SpanEncoder().encode(spans) == first


def test_cache_filling_past_its_cap_still_encodes_correctly() -> None:
    encoder = SpanEncoder(kv_cache_size=8)
    for batch in range(5):
        spans = [
            span(
                f"s{i % 3}",
                {"n": batch * 100 + i, "s": f"v{i}", "b": i % 2 == 0, "same": "x", "i": 1},
                span_id=i + 1,
            )
            for i in range(12)
        ]
        check(spans, encoder)
        assert len(encoder._kv_cache) <= 8
        assert len(encoder._str_cache) <= 8


def test_cache_keeps_true_and_one_apart() -> None:
    encoder = SpanEncoder()
    # True == 1 and hash(True) == hash(1): the cache must still tell them apart.
    for first, second in [(True, 1), (1, True), (False, 0), (0, False)]:
        check([span(attributes={"k": first}), span(attributes={"k": second}, span_id=2)], encoder)


def test_long_strings_are_not_cached() -> None:
    encoder = SpanEncoder()
    check([span(attributes={"k": "y" * 257, "f": 1.5})], encoder)
    assert [key for key, _, _ in encoder._kv_cache if key in ("k", "f")] == []


def test_public_accessor_path_for_span_subclasses() -> None:
    class OtherSpan(ReadableSpan):
        pass

    recorder = Recorder(limits=SpanLimits(max_span_attributes=1, max_events=1))
    with recorder.tracer.start_as_current_span("s", attributes={"a": 1, "b": 2}) as current:
        current.add_event("e1")
        current.add_event("e2", {"k": "v"})
    original = recorder.spans()[0]
    wrapped = OtherSpan(
        name=original.name,
        context=original.context,
        parent=original.parent,
        resource=original.resource,
        attributes=original._attributes,
        events=original._events,
        links=original._links,
        kind=original.kind,
        status=original.status,
        start_time=original.start_time,
        end_time=original.end_time,
        instrumentation_scope=original.instrumentation_scope,
    )
    assert check([wrapped]) == check([original])


def test_concurrent_encoders_sharing_caches() -> None:
    encoder = SpanEncoder(kv_cache_size=16)
    spans = [
        span(f"s{i}", {"n": i % 40, "s": f"v{i % 30}", "f": i / 3}, span_id=i + 1)
        for i in range(64)
    ]
    expected = encode_spans(spans)
    failures: list[str] = []

    def work() -> None:
        for _ in range(30):
            if ExportTraceServiceRequest.FromString(encoder.encode(spans)) != expected:
                failures.append("mismatch")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_str_tuples_and_floats_take_their_caches_and_still_match() -> None:
    encoder = SpanEncoder()
    spans = [
        span(
            attributes={
                "gen_ai.response.finish_reasons": ("stop",),
                "relaygate.backoff_s": float(i) / 4,
                "mixed": (1, True) if i % 2 else (True, 1),
            },
            span_id=i + 1,
        )
        for i in range(6)
    ]
    first = check(spans, encoder)
    assert ("gen_ai.response.finish_reasons", ("stop",), tuple) in encoder._kv_cache
    assert "relaygate.backoff_s" in encoder._float_prefix
    # Only tuples of str are kept: (1, True) == (True, 1) must not share an encoding.
    assert not [key for key in encoder._kv_cache if key[0] == "mixed"]
    assert check(spans, encoder) == first


def test_float_int_and_bool_under_one_key_stay_apart() -> None:
    encoder = SpanEncoder()
    values = [1.0, 1, True, 0.0, 0, False, -0.0, 2.5]
    for _ in range(2):
        check([span(attributes={"k": value}, span_id=i + 1) for i, value in enumerate(values)])
        for i, value in enumerate(values):
            check([span(attributes={"k": value}, span_id=i + 1)], encoder)


def test_long_or_many_item_str_tuples_are_not_cached() -> None:
    encoder = SpanEncoder()
    long_items = ("x" * 200, "y" * 100)
    many = tuple(f"r{i}" for i in range(17))
    check([span(attributes={"long": long_items, "many": many, "short": ("a", "b")})], encoder)
    assert [key[0] for key in encoder._kv_cache if key[0] in ("long", "many", "short")] == ["short"]


def test_span_context_subclasses_read_through_their_properties() -> None:
    class OtherContext(SpanContext):
        pass

    state = TraceState([("vendor", "x")])
    context = OtherContext(TRACE_ID, 5, False, TraceFlags(TraceFlags.SAMPLED), state)
    parent = OtherContext(TRACE_ID, 6, True, TraceFlags(TraceFlags.SAMPLED))
    assert otlp_encoding._CONTEXT_TUPLE
    ours = check([span(context=context, parent=parent)])
    plain = SpanContext(TRACE_ID, 5, False, TraceFlags(TraceFlags.SAMPLED), state)
    plain_parent = SpanContext(TRACE_ID, 6, True, TraceFlags(TraceFlags.SAMPLED))
    assert check([span(context=plain, parent=plain_parent)]) == ours
