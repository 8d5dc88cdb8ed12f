"""LeanTracer exports what the SDK's own tracer would, for the same calls.

Each scenario runs once through an SDK tracer and once through a :class:`LeanTracer` on
the same provider set-up; the finished spans must agree on everything but ids and times.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import (
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    format_span_id,
    format_trace_id,
)

from relaygate.exporters.current import attach_span, detach
from relaygate.exporters.spans import LeanSpan, LeanTracer

Scenario = Callable[[trace.Tracer], None]


def _run(
    scenario: Scenario, lean: bool, sampler: Sampler = ALWAYS_ON, roots_sampled: bool = False
) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    tracer: trace.Tracer = provider.get_tracer("relaygate")
    if lean:
        tracer = LeanTracer.of(provider, processor)
        tracer.roots_sampled = roots_sampled
    scenario(tracer)
    return list(exporter.get_finished_spans())


def _shape(spans: list[ReadableSpan]) -> list[dict[str, Any]]:
    """Everything the exporter sends, with ids replaced by their position in the trace."""
    ids = {s.context.span_id: i for i, s in enumerate(spans) if s.context is not None}
    out = []
    for s in spans:
        assert s.context is not None
        parent = s.parent
        out.append(
            {
                "name": s.name,
                "kind": s.kind,
                "parent": (
                    None
                    if parent is None
                    else ids.get(parent.span_id, ("remote", parent.span_id, parent.is_remote))
                ),
                "trace_id_shared": len({x.context.trace_id for x in spans if x.context}) == 1,
                "flags": int(s.context.trace_flags),
                "trace_state": s.context.trace_state,
                "attributes": dict(s.attributes or {}),
                "events": [
                    (e.name, {k: v for k, v in (e.attributes or {}).items() if "stack" not in k})
                    for e in s.events
                ],
                "links": [
                    (ids.get(link.context.span_id), dict(link.attributes or {})) for link in s.links
                ],
                "status": (s.status.status_code, s.status.description),
                "resource": {
                    k: v for k, v in s.resource.attributes.items() if k != "service.instance.id"
                },
                "scope": s.instrumentation_scope,
                "dropped": (s.dropped_attributes, s.dropped_events, s.dropped_links),
                "ordered": (s.start_time or 0) <= (s.end_time or 0),
            }
        )
    return out


def _same(scenario: Scenario, sampler: Sampler = ALWAYS_ON) -> list[dict[str, Any]]:
    sdk = _shape(_run(scenario, lean=False, sampler=sampler))
    lean = _shape(_run(scenario, lean=True, sampler=sampler))
    assert lean == sdk
    return lean


def _request_story(tracer: trace.Tracer) -> None:
    root = tracer.start_span(
        "POST /v1/chat/completions",
        kind=SpanKind.SERVER,
        attributes={"http.request.method": "POST", "list": ["a", "b"]},
    )
    with trace.use_span(root, end_on_exit=True):
        with tracer.start_as_current_span("relaygate.strategy", attributes={"n": 2}) as node:
            node.set_attribute("relaygate.strategy.mode", "fallback")
            node.add_event("relaygate.fallback", {"from": "targets[0]"})
            for attempt in (1, 2):
                span = tracer.start_span(f"chat gpt-{attempt}", kind=SpanKind.CLIENT)
                span.set_attributes({"attempt": attempt, "ok": attempt == 2, "ratio": 0.5})
                if attempt == 1:
                    span.set_status(Status(StatusCode.ERROR, "503"))
                span.end()
        root.set_attribute("http.response.status_code", 200)


def test_a_fallback_story_is_exported_the_same() -> None:
    spans = _same(_request_story)
    assert [s["name"] for s in spans] == [
        "chat gpt-1",
        "chat gpt-2",
        "relaygate.strategy",
        "POST /v1/chat/completions",
    ]
    assert spans[0]["parent"] == 2 and spans[2]["parent"] == 3 and spans[3]["parent"] is None
    assert spans[3]["attributes"]["list"] == ("a", "b")


def test_roots_started_without_asking_the_sampler_are_what_it_would_have_made() -> None:
    """relaygate's own ``ParentBased(ALWAYS_ON)`` is not asked at local roots; under a remote
    parent it still decides."""
    sampler = ParentBased(ALWAYS_ON)
    sdk = _shape(_run(_request_story, lean=False, sampler=sampler))
    assert _shape(_run(_request_story, lean=True, sampler=sampler, roots_sampled=True)) == sdk
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(0))

    def under_unsampled_remote(tracer: trace.Tracer) -> None:
        token = otel_context.attach(trace.set_span_in_context(trace.NonRecordingSpan(remote)))
        try:
            tracer.start_span("server", kind=SpanKind.SERVER).end()
        finally:
            otel_context.detach(token)

    assert _run(under_unsampled_remote, lean=True, sampler=sampler, roots_sampled=True) == []


def test_none_values_are_dropped_rather_than_exported() -> None:
    def with_none(tracer: trace.Tracer) -> None:
        span = tracer.start_span("s", attributes={"kept": 1, "gone": None})
        span.set_attribute("also_gone", None)
        span.set_attributes({"x": None, "y": "y"})
        span.add_event("e", {"a": None, "b": 2})
        span.end()

    (span,) = _run(with_none, lean=True)
    assert dict(span.attributes or {}) == {"kept": 1, "y": "y"}
    assert dict(span.events[0].attributes or {}) == {"b": 2}


def test_status_rules_match_the_sdk() -> None:
    def statuses(tracer: trace.Tracer) -> None:
        steps: list[list[Any]] = [
            [StatusCode.ERROR, StatusCode.OK, StatusCode.ERROR],
            [Status(StatusCode.ERROR, "boom"), StatusCode.UNSET],
            [StatusCode.OK, Status(StatusCode.ERROR, "late")],
            [(StatusCode.ERROR, "described")],
        ]
        for i, sequence in enumerate(steps):
            span = tracer.start_span(f"s{i}")
            for step in sequence:
                if isinstance(step, tuple):
                    span.set_status(*step)
                else:
                    span.set_status(step)
            span.end()

    spans = _same(statuses)
    assert [s["status"][0] for s in spans] == [
        StatusCode.OK,
        StatusCode.ERROR,
        StatusCode.OK,
        StatusCode.ERROR,
    ]


def test_exceptions_names_links_and_calls_after_end() -> None:
    def misc(tracer: trace.Tracer) -> None:
        other = tracer.start_span("other")
        other.end()
        span = tracer.start_span("before", links=[trace.Link(other.get_span_context(), {"k": 1})])
        span.update_name("after")
        try:
            raise ValueError("bad value")
        except ValueError as exc:
            span.record_exception(exc, {"extra": True})
        span.end()
        span.set_attribute("late", 1)
        span.add_event("late")
        span.update_name("later")
        span.end()

    spans = _same(misc)
    assert spans[1]["name"] == "after"
    assert spans[1]["events"][0][1]["exception.type"] == "ValueError"
    assert spans[1]["events"][0][1]["exception.message"] == "bad value"


@pytest.mark.parametrize("sampled", [True, False])
@pytest.mark.parametrize(
    "sampler",
    [ParentBased(ALWAYS_ON), ParentBased(ALWAYS_OFF), ALWAYS_ON, TraceIdRatioBased(0.5)],
    ids=["parent-on", "parent-off", "always-on", "ratio"],
)
def test_sampling_decisions_match_the_sdk(sampled: bool, sampler: Sampler) -> None:
    remote = SpanContext(
        0x1234567890ABCDEF1234567890ABCDEF,
        0x1122334455667788,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else 0),
    )

    def under_remote(tracer: trace.Tracer) -> None:
        token = otel_context.attach(trace.set_span_in_context(trace.NonRecordingSpan(remote)))
        try:
            with tracer.start_as_current_span("server", kind=SpanKind.SERVER):
                tracer.start_span("child").end()
        finally:
            otel_context.detach(token)
        # A local root: the sampler decides from a fresh trace id.
        with tracer.start_as_current_span("root"):
            tracer.start_span("root-child").end()

    spans = _run(under_remote, lean=True, sampler=sampler)
    sdk = _run(under_remote, lean=False, sampler=sampler)
    remote_names = [s.name for s in spans if s.context and s.context.trace_id == remote.trace_id]
    sdk_remote = [s.name for s in sdk if s.context and s.context.trace_id == remote.trace_id]
    assert remote_names == sdk_remote
    if remote_names:
        assert _shape([s for s in spans if s.name in remote_names]) == _shape(
            [s for s in sdk if s.name in remote_names]
        )
    # Local roots depend on a random trace id under the ratio sampler; both tracers keep
    # a root and its child together.
    local = [s.name for s in spans if s.name.startswith("root")]
    assert local in ([], ["root-child", "root"])


def test_unsampled_spans_are_non_recording_with_their_own_span_id() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    tracer = LeanTracer.of(provider, processor)
    span = tracer.start_span("dropped")
    assert not isinstance(span, LeanSpan)
    assert not span.is_recording()
    ctx = span.get_span_context()
    assert ctx.is_valid and not ctx.trace_flags.sampled
    span.end()
    assert exporter.get_finished_spans() == ()


class _FixedIds(IdGenerator):
    """A host's own id generator: counts up from fixed bases."""

    def __init__(self) -> None:
        self.spans = 0x1000

    def generate_span_id(self) -> int:
        self.spans += 1
        return self.spans

    def generate_trace_id(self) -> int:
        return 0xABC


def test_span_contexts_are_what_the_sdk_constructor_makes() -> None:
    """relaygate builds its spans' contexts without SpanContext's checks: the same tuples."""
    tracer = _run_tracer(RandomIdGenerator())
    root = tracer.start_span("root", kind=SpanKind.SERVER)
    token = attach_span(root)
    try:
        child = tracer.start_span("child")
    finally:
        detach(token)
    for span in (root, child):
        ctx = span.get_span_context()
        rebuilt = SpanContext(ctx.trace_id, ctx.span_id, False, ctx.trace_flags, ctx.trace_state)
        assert tuple(ctx) == tuple(rebuilt) and ctx.is_valid
        assert type(ctx.trace_state) is TraceState and type(ctx.trace_flags) is TraceFlags
    assert child.get_span_context().trace_id == root.get_span_context().trace_id


def test_a_configured_id_generator_is_still_used() -> None:
    tracer = _run_tracer(_FixedIds())
    root = tracer.start_span("root", kind=SpanKind.SERVER)
    with trace.use_span(root):
        child = tracer.start_span("child")
    assert (root.get_span_context().trace_id, root.get_span_context().span_id) == (0xABC, 0x1001)
    assert (child.get_span_context().trace_id, child.get_span_context().span_id) == (0xABC, 0x1002)
    assert isinstance(child, LeanSpan)
    assert child.hex_ids() == (format(0xABC, "032x"), format(0x1002, "016x"), True)


def test_hex_ids_are_the_api_formatting_shared_by_the_trace() -> None:
    tracer = _run_tracer(RandomIdGenerator())
    root = tracer.start_span("root", kind=SpanKind.SERVER)
    with trace.use_span(root):
        children = [tracer.start_span(f"child {i}") for i in range(3)]
    for span in (root, *children):
        assert isinstance(span, LeanSpan)
        ctx = span.get_span_context()
        assert span.hex_ids() == (
            format_trace_id(ctx.trace_id),
            format_span_id(ctx.span_id),
            ctx.trace_flags.sampled,
        )


def test_the_current_span_helpers_are_the_apis() -> None:
    tracer = _run_tracer(RandomIdGenerator())
    root = tracer.start_span("root", kind=SpanKind.SERVER)
    before = otel_context.get_current()
    token = attach_span(root)
    assert trace.get_current_span() is root
    inner = otel_context.attach(otel_context.set_value("other", 1))
    otel_context.detach(inner)
    detach(token)
    assert otel_context.get_current() is before
    assert trace.get_current_span() is trace.INVALID_SPAN


def _run_tracer(ids: IdGenerator) -> LeanTracer:
    provider = TracerProvider(id_generator=ids)
    tracer = LeanTracer.of(provider, SimpleSpanProcessor(InMemorySpanExporter()))
    tracer.roots_sampled = True
    return tracer


def test_under_another_runtime_context_the_apis_calls_are_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without OpenTelemetry's default context variable, the same spans come out."""
    import relaygate.exporters.current as current
    import relaygate.exporters.spans as spans
    import relaygate.exporters.traceparent as traceparent

    monkeypatch.setattr(current, "_var", None)
    monkeypatch.setattr(spans, "CONTEXT_VAR", None)
    monkeypatch.setattr(traceparent, "CONTEXT_VAR", None)
    assert [s["name"] for s in _same(_request_story)][-1] == "POST /v1/chat/completions"
    tracer = _run_tracer(RandomIdGenerator())
    root = tracer.start_span("root", kind=SpanKind.SERVER)
    token = attach_span(root)
    try:
        assert trace.get_current_span() is root
        carrier: dict[str, str] = {}
        traceparent.inject(carrier)
        assert carrier["traceparent"].split("-")[2] == format_span_id(
            root.get_span_context().span_id
        )
    finally:
        detach(token)
    assert trace.get_current_span() is trace.INVALID_SPAN
