"""Tail sampling's mechanism: a request's spans wait for its decision, then are exported or
dropped; memory stays bounded; metrics and the log line stay complete for every request."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import orjson
import pytest
import structlog
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest
from structlog.testing import capture_logs

from relaygate.config.server import parse_server_config
from relaygate.exchange import Operation
from relaygate.exporters.prometheus import GatewayMetrics
from relaygate.exporters.spans import LeanTracer, set_attributes_later
from relaygate.exporters.tail import TailSampler
from relaygate.strategies.trace_sampling import Decision, RequestFacts, TailPolicy
from relaygate.telemetry import Telemetry, build_telemetry
from tests.telemetry.test_request_truth import streamed
from tests.telemetry.test_story_consistency import (
    CHAT,
    Upstreams,
    gateway,
    metric,
    ok_json,
    run,
    status,
    stream_ok,
)

DROP_CLEAN = TailPolicy(keep_ok_ratio=0.0, latency_threshold_s=None)

SAMPLED_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UNSAMPLED_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


class Rig:
    """A lean tracer with a tail sampler, exporting into memory, counting into metrics."""

    def __init__(
        self, policy: TailPolicy = DROP_CLEAN, per_trace: int = 256, total: int = 20_000
    ) -> None:
        self.spans = InMemorySpanExporter()
        self.provider = TracerProvider()
        processor = SimpleSpanProcessor(self.spans)
        self.provider.add_span_processor(processor)
        self.tracer = LeanTracer.of(self.provider, processor)
        self.sampler = TailSampler(processor, policy, per_trace, total)
        self.tracer.tail = self.sampler
        self.metrics = GatewayMetrics(CollectorRegistry())
        self.sampler.metrics = self.metrics

    def request(self, children: int = 2) -> trace.Span:
        """A request span (SERVER, a local root) with ``children`` ended child spans."""
        root = self.tracer.start_span("POST /v1/chat/completions", kind=SpanKind.SERVER)
        with trace.use_span(root, end_on_exit=False):
            for n in range(children):
                self.tracer.start_span(f"child {n}").end()
        return root

    def exported(self) -> list[str]:
        return [s.name for s in self.spans.get_finished_spans()]

    def count(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def rig() -> Iterator[Rig]:
    made = Rig()
    yield made
    made.provider.shutdown()


def facts(outcome: str = "ok", *reasons: str) -> RequestFacts:
    return RequestFacts(outcome, list(reasons or ["ok"]))


def test_spans_wait_for_the_decision_and_a_dropped_trace_exports_nothing(rig: Rig) -> None:
    root = rig.request(children=2)
    assert rig.exported() == []  # held until the request is decided
    assert rig.sampler.buffered == 2
    assert root.buffer.decide(facts()) == Decision(False, "ratio")  # type: ignore[attr-defined]
    root.end()
    assert rig.exported() == []
    assert rig.sampler.buffered == 0
    assert rig.count("relaygate_traces_sampled_total", decision="dropped", reason="ratio") == 1
    assert rig.count("relaygate_trace_spans_total", decision="dropped") == 3


def test_a_kept_trace_exports_every_span_with_its_tree(rig: Rig) -> None:
    root = rig.request(children=2)
    assert root.buffer.decide(facts("status_5xx", "status_5xx")).keep  # type: ignore[attr-defined]
    assert rig.exported() == ["child 0", "child 1"]
    root.end()
    spans = rig.spans.get_finished_spans()
    assert [s.name for s in spans] == ["child 0", "child 1", "POST /v1/chat/completions"]
    server = spans[-1]
    assert all(s.context.trace_id == server.context.trace_id for s in spans)
    root_id = server.context.span_id
    assert all(s.parent is not None and s.parent.span_id == root_id for s in spans[:2])
    assert all(s.end_time is not None and s.end_time >= (s.start_time or 0) for s in spans)
    assert rig.count("relaygate_traces_sampled_total", decision="kept", reason="error") == 1
    assert rig.count("relaygate_trace_spans_total", decision="kept") == 3


def test_spans_ending_after_the_decision_follow_it(rig: Rig) -> None:
    kept, dropped = rig.request(children=0), rig.request(children=0)
    late_kept = rig.tracer.start_span("late", context=trace.set_span_in_context(kept))
    late_dropped = rig.tracer.start_span("late", context=trace.set_span_in_context(dropped))
    kept.buffer.decide(facts("ok", "status_5xx", "ok"))  # type: ignore[attr-defined]
    dropped.buffer.decide(facts())  # type: ignore[attr-defined]
    late_kept.end()
    late_dropped.end()
    kept.end()
    dropped.end()
    assert rig.exported() == ["late", "POST /v1/chat/completions"]
    assert rig.count("relaygate_trace_spans_total", decision="dropped") == 2


@pytest.mark.parametrize("decided_first", [True, False])
def test_a_finished_request_leaves_nothing_for_the_garbage_collector(
    rig: Rig, decided_first: bool
) -> None:
    """Its spans and buffer are freed when the last reference goes, as they end (a kept
    trace's spans once exported), not by a later collection pass."""
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            root = rig.request(children=2)
            if decided_first:
                root.buffer.decide(facts())  # type: ignore[attr-defined]
            root.end()
            del root
        rig.spans.clear()
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_the_first_decision_stands(rig: Rig) -> None:
    root = rig.request()
    assert not root.buffer.decide(facts()).keep  # type: ignore[attr-defined]
    assert not root.buffer.decide(facts("timeout", "timeout")).keep  # type: ignore[attr-defined]
    assert rig.count("relaygate_traces_sampled_total", decision="dropped", reason="ratio") == 1


def test_a_request_span_that_ends_undecided_keeps_its_trace(rig: Rig) -> None:
    rig.request(children=1).end()
    assert rig.exported() == ["child 0", "POST /v1/chat/completions"]
    assert rig.count("relaygate_traces_sampled_total", decision="kept", reason="undecided") == 1


def test_a_trace_past_its_span_cap_is_kept_early_and_holds_nothing() -> None:
    rig = Rig(per_trace=3)
    root = rig.request(children=3)
    assert rig.exported() == [] and rig.sampler.buffered == 3
    with trace.use_span(root, end_on_exit=False):
        rig.tracer.start_span("fourth").end()  # past the cap: decided early, kept
    assert rig.exported() == ["child 0", "child 1", "child 2", "fourth"]
    assert rig.sampler.buffered == 0
    # The request's own decision comes too late to drop it.
    assert root.buffer.decide(facts()) == Decision(True, "overflow")  # type: ignore[attr-defined]
    root.end()
    assert len(rig.exported()) == 5
    assert rig.count("relaygate_traces_sampled_total", decision="kept", reason="overflow") == 1
    rig.provider.shutdown()


def test_all_traces_together_hold_at_most_the_global_cap() -> None:
    rig = Rig(total=4)
    first = rig.request(children=3)
    second = rig.request(children=1)
    assert rig.sampler.buffered == 4 and rig.exported() == []
    with trace.use_span(second, end_on_exit=False):
        rig.tracer.start_span("over").end()  # the buffer is full: this trace leaves now
    assert rig.exported() == ["child 0", "over"]
    assert rig.sampler.buffered == 3
    assert not first.buffer.decide(facts()).keep  # type: ignore[attr-defined]
    assert rig.sampler.buffered == 0
    rig.provider.shutdown()


def test_spans_outside_a_request_are_not_held(rig: Rig) -> None:
    rig.tracer.start_span("background").end()
    assert rig.exported() == ["background"]


def test_a_sampled_remote_parent_marks_the_trace(rig: Rig) -> None:
    parent = propagate.extract({"traceparent": SAMPLED_PARENT})
    root = rig.tracer.start_span("req", context=parent, kind=SpanKind.SERVER)
    assert root.buffer.parent_sampled  # type: ignore[attr-defined]
    unsampled = propagate.extract({"traceparent": UNSAMPLED_PARENT})
    skipped = rig.tracer.start_span("req", context=unsampled, kind=SpanKind.SERVER)
    assert not skipped.is_recording()  # the parent-based head sampler dropped it already


# Through the gateway: clean successes dropped (ratio 0), everything interesting kept.


@pytest.fixture
def tail_rig() -> Iterator[tuple[Telemetry, Rig]]:
    made = Rig()
    telemetry = Telemetry(
        tracer=made.tracer,
        metrics=made.metrics,
        logger=structlog.get_logger("relaygate"),
        detail="full",
    )
    yield telemetry, made
    made.provider.shutdown()


def requests_ok(tel: Telemetry) -> float:
    labels = {"config": "default", "operation": "chat", "status_class": "2xx", "outcome": "ok"}
    return metric(tel, "relaygate_requests_total", **labels)


async def test_a_clean_success_is_dropped_but_counted_and_logged(
    tail_rig: tuple[Telemetry, Rig],
) -> None:
    tel, rig = tail_rig
    gw = gateway(tel, Upstreams({"a.test": [ok_json]}))
    with capture_logs() as logs:
        code, _, _ = await run(gw)
    assert code == 200
    assert rig.exported() == []
    assert requests_ok(tel) == 1
    (line,) = [entry for entry in logs if entry["event"] == "request"]
    assert line["outcome"] == "ok" and line["trace_id"]
    assert rig.count("relaygate_traces_sampled_total", decision="dropped", reason="ratio") == 1
    # No exemplar names the dropped trace.
    assert "trace_id" not in (exposition(tel))


async def test_a_fallback_trace_is_exported_whole_with_its_reason(
    tail_rig: tuple[Telemetry, Rig],
) -> None:
    tel, rig = tail_rig
    gw = gateway(tel, Upstreams({"a.test": [lambda: status(503)], "b.test": [ok_json]}))
    code, _, _ = await run(gw)
    assert code == 200
    spans = rig.spans.get_finished_spans()
    clients = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert [s.attributes["relaygate.target.path"] for s in clients] == [
        "config.targets[0]",
        "config.targets[1]",
    ]
    (server,) = [s for s in spans if s.kind is SpanKind.SERVER]
    assert server.attributes["relaygate.sampling.reason"] == "fallback"
    assert len({s.context.trace_id for s in spans}) == 1
    assert rig.count("relaygate_traces_sampled_total", decision="kept", reason="fallback") == 1
    assert rig.count("relaygate_trace_spans_total", decision="kept") == len(spans)
    assert format(server.context.trace_id, "032x") in exposition(tel)


async def test_a_sampled_traceparent_keeps_a_clean_success(
    tail_rig: tuple[Telemetry, Rig],
) -> None:
    tel, rig = tail_rig
    gw = gateway(tel, Upstreams({"a.test": [ok_json, ok_json]}))
    edge = await gw.handle(Operation.CHAT, orjson.dumps(CHAT), {"traceparent": SAMPLED_PARENT})
    assert edge.status == 200
    (server,) = [s for s in rig.spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert format(server.context.trace_id, "032x") == SAMPLED_PARENT.split("-")[1]
    assert server.attributes["relaygate.sampling.reason"] == "parent_sampled"
    rig.spans.clear()
    edge = await gw.handle(Operation.CHAT, orjson.dumps(CHAT), {"traceparent": UNSAMPLED_PARENT})
    assert edge.status == 200
    assert rig.exported() == []
    assert requests_ok(tel) == 2
    kept = {"decision": "kept", "reason": "parent_sampled"}
    assert rig.count("relaygate_traces_sampled_total", **kept) == 1


def exposition(tel: Telemetry) -> str:
    """The registry in OpenMetrics, the format that carries exemplars."""
    return generate_latest(tel.metrics.registry).decode()


@pytest.mark.parametrize(
    ("tail_sampling", "samples"),
    [(None, False), ({"keep_ok_ratio": 1}, False), ({"keep_ok_ratio": 0.1}, True)],
)
def test_only_a_ratio_below_one_holds_spans_back(
    tail_sampling: dict[str, float] | None, samples: bool
) -> None:
    traces: dict[str, object] = {"exporter": "console"}
    if tail_sampling is not None:
        traces["tail_sampling"] = tail_sampling
    settings = parse_server_config({"telemetry": {"traces": traces}}).telemetry
    tel = build_telemetry(settings, CollectorRegistry(), env={})
    try:
        tail = getattr(tel.tracer, "tail", None)
        assert (tail is not None) is samples
        if tail is not None:
            assert tail.policy == TailPolicy(keep_ok_ratio=0.1, latency_threshold_s=2.0)
            assert tail.metrics is tel.metrics
    finally:
        tel.shutdown()


async def test_a_clean_stream_is_dropped_whole_and_a_broken_one_kept_whole(
    tail_rig: tuple[Telemetry, Rig],
) -> None:
    tel, rig = tail_rig
    script = {"a.test": [stream_ok, streamed(cut=True)], "b.test": [lambda: status(503)]}
    gw = gateway(tel, Upstreams(script))
    code, _, _ = await run(gw, stream=True)
    assert code == 200
    assert rig.exported() == []
    assert rig.sampler.buffered == 0  # every span of the stream was let go
    dropped = rig.count("relaygate_trace_spans_total", decision="dropped")
    assert dropped >= 3
    code, _, _ = await run(gw, stream=True)
    assert code == 200
    spans = rig.spans.get_finished_spans()
    # The clean stream's shape, plus the recovery attempt on b: all exported, one trace.
    assert len(spans) > dropped
    assert len({s.context.trace_id for s in spans}) == 1
    (server,) = [s for s in spans if s.kind is SpanKind.SERVER]
    assert server.attributes["relaygate.outcome"] == "stream_error"
    assert server.attributes["relaygate.sampling.reason"] == "error"
    assert rig.sampler.buffered == 0


class Producer:
    """An attribute producer that counts its calls."""

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    def __call__(self, value: int) -> dict[str, int]:
        self.calls += 1
        if self.fail:
            raise RuntimeError("boom")
        return {"later": value}


def test_attributes_held_for_later_are_computed_only_for_a_kept_trace(rig: Rig) -> None:
    kept, dropped = (
        rig.tracer.start_span("k", kind=SpanKind.SERVER),
        rig.tracer.start_span("d", kind=SpanKind.SERVER),
    )
    produce = Producer()
    for root in (kept, dropped):
        child = rig.tracer.start_span("child", context=trace.set_span_in_context(root))
        set_attributes_later(child, produce, 7)
        child.set_attribute("now", 1)
        child.end()
    assert produce.calls == 0  # both traces undecided
    kept.buffer.decide(facts("status_5xx", "status_5xx"))  # type: ignore[attr-defined]
    assert produce.calls == 1
    dropped.buffer.decide(facts())  # type: ignore[attr-defined]
    assert not dropped.is_recording()  # a dropped trace's spans record nothing more
    assert kept.is_recording()
    set_attributes_later(dropped, produce, 9)  # never run
    set_attributes_later(kept, produce, 8)  # decided kept: run now
    assert produce.calls == 2
    kept.end()
    dropped.end()
    by_name = {s.name: s for s in rig.spans.get_finished_spans()}
    assert set(by_name) == {"child", "k"}
    assert dict(by_name["child"].attributes or {}) == {"now": 1, "later": 7}
    assert by_name["k"].attributes == {"later": 8}
    assert produce.calls == 2


def test_a_failing_producer_costs_its_attributes_only(rig: Rig) -> None:
    root = rig.tracer.start_span("r", kind=SpanKind.SERVER)
    set_attributes_later(root, Producer(fail=True), 1)
    set_attributes_later(root, Producer(), 2)
    root.set_attribute("now", 1)
    root.buffer.decide(facts("status_5xx", "status_5xx"))  # type: ignore[attr-defined]
    root.end()
    (span,) = rig.spans.get_finished_spans()
    assert span.attributes == {"now": 1, "later": 2}
    assert rig.count("relaygate_telemetry_errors_total") == 1  # counted, never raised


def test_attributes_for_later_are_set_at_once_without_tail_sampling() -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    processor = SimpleSpanProcessor(spans)
    provider.add_span_processor(processor)
    lean = LeanTracer.of(provider, processor)
    produce = Producer()
    for span in (lean.start_span("lean"), provider.get_tracer("host").start_span("host")):
        set_attributes_later(span, produce, 3)
        span.end()
    set_attributes_later(trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT), produce, 4)
    assert produce.calls == 2
    with pytest.raises(RuntimeError):  # run now: the caller's guard sees the failure
        set_attributes_later(lean.start_span("failing"), Producer(fail=True), 5)
    assert [(s.name, dict(s.attributes or {})) for s in spans.get_finished_spans()] == [
        ("lean", {"later": 3}),
        ("host", {"later": 3}),
    ]


_PER_REQUEST = {"relaygate.sampling.reason", "relaygate.request_id"}


def _shape(spans: InMemorySpanExporter) -> list[tuple[str, dict[str, object], list[str], str]]:
    """Each span's name, attributes (but the request's id and sampling reason), events and
    status, in order."""
    out = []
    for s in sorted(spans.get_finished_spans(), key=lambda s: s.start_time or 0):
        attrs = {k: v for k, v in (s.attributes or {}).items() if k not in _PER_REQUEST}
        out.append((s.name, attrs, [e.name for e in s.events], s.status.status_code.name))
    return out


@pytest.mark.parametrize("stream", [False, True])
async def test_a_kept_trace_carries_what_an_unsampled_export_carries(stream: bool) -> None:
    """Attributes computed later (request, server, outcome, the answer's facts) are all on a
    kept trace's spans, exactly as when every trace is exported."""
    shapes = []
    for sampled in (False, True):
        rig = Rig()
        if not sampled:
            rig.tracer.tail = None
        tel = Telemetry(tracer=rig.tracer, metrics=rig.metrics, detail="full")
        answer = stream_ok if stream else ok_json
        gw = gateway(tel, Upstreams({"a.test": [lambda: status(503)], "b.test": [answer]}))
        code, _, _ = await run(gw, stream=stream)
        assert code == 200
        shapes.append(_shape(rig.spans))
        rig.provider.shutdown()
    unsampled, kept = shapes
    assert kept == unsampled
    (ok_client,) = [
        attrs
        for name, attrs, _, _ in kept
        if attrs.get("relaygate.outcome") == "ok" and "relaygate.target.path" in attrs
    ]
    assert ok_client["server.address"] == "b.test"
    assert ok_client["gen_ai.response.model"] == "m"
    assert ok_client["gen_ai.usage.output_tokens"] == (2 if stream else 3)
    if not stream:  # the scripted stream names no finish reason
        assert ok_client["gen_ai.response.finish_reasons"] == ("stop",)
