"""The fallback layer: walking the config tree, moving on, and recording each move."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from relaygate.config.model import Condition, Node
from relaygate.errors import GatewayError
from relaygate.exchange import GatewayResponse
from relaygate.exporters import semconv as sc
from relaygate.exporters.prometheus import GatewayMetrics
from relaygate.middleware.fallback import FallbackLayer
from relaygate.telemetry import Telemetry
from tests.fakes import (
    ScriptedHandler,
    ScriptedRand,
    answer,
    gateway_request,
    routing,
    strategy,
    target,
)

T0 = target("config.targets[0]", name="primary")
T1 = target("config.targets[1]", name="secondary")
T2 = target("config.targets[2]", name="tertiary")


async def route(
    root: Node,
    inner: ScriptedHandler,
    telemetry: Telemetry,
    *,
    rand: Callable[[], float] | None = None,
    now: Callable[[], float] | None = None,
    deadline: float | None = None,
    metadata: Mapping[str, Any] | None = None,
    body: Mapping[str, Any] | None = None,
    config_id: str = "test",
    caller: bool = False,
) -> GatewayResponse:
    """Route one request through a fallback layer over ``root``, answering from ``inner``;
    ``caller`` marks the config as caller-supplied."""
    layer = FallbackLayer(telemetry, rand=rand or ScriptedRand(0.0), now=now)
    config = replace(routing(root, config_id), caller_supplied=caller)
    request = gateway_request(body, config=config, metadata=metadata, deadline=deadline)
    return await layer(inner)(request)


def fallback(*children: Node, **kwargs: Any) -> Node:
    """A fallback strategy node at the config root."""
    return strategy("config", "fallback", *children, **kwargs)


async def test_fallback_tries_targets_in_config_order_until_one_answers_ok(
    telemetry: Telemetry,
) -> None:
    inner = ScriptedHandler(answer(503), answer(500), answer(200))
    response = await route(fallback(T0, T1, T2), inner, telemetry)
    assert response.status == 200
    assert inner.paths == [T0.path, T1.path, T2.path]


async def test_fallback_stops_at_the_first_ok_answer(telemetry: Telemetry) -> None:
    inner = ScriptedHandler(answer(503), answer(200), answer(200))
    response = await route(fallback(T0, T1, T2), inner, telemetry)
    assert response.status == 200
    assert inner.paths == [T0.path, T1.path]
    assert inner.remaining == 1


async def test_fallback_returns_the_last_targets_answer_when_every_target_fails(
    telemetry: Telemetry,
) -> None:
    last = answer(502, body=b'{"error":{"message":"last"}}')
    inner = ScriptedHandler(answer(503), last)
    response = await route(fallback(T0, T1), inner, telemetry)
    assert response is last


async def test_fallback_without_status_codes_moves_on_after_a_client_error(
    telemetry: Telemetry,
) -> None:
    inner = ScriptedHandler(answer(400), answer(200))
    response = await route(fallback(T0, T1), inner, telemetry)
    assert response.status == 200
    assert inner.paths == [T0.path, T1.path]


async def test_fallback_without_status_codes_moves_on_after_a_transport_failure(
    telemetry: Telemetry,
) -> None:
    inner = ScriptedHandler(answer(502, failure="connect_error"), answer(200))
    response = await route(fallback(T0, T1), inner, telemetry)
    assert response.status == 200
    assert inner.paths == [T0.path, T1.path]


async def test_fallback_returns_an_unlisted_status_at_once(telemetry: Telemetry) -> None:
    inner = ScriptedHandler(answer(500), answer(200))
    response = await route(fallback(T0, T1, on_status_codes=frozenset({429})), inner, telemetry)
    assert response.status == 500
    assert inner.paths == [T0.path]


async def test_fallback_moves_on_for_a_listed_status(telemetry: Telemetry) -> None:
    inner = ScriptedHandler(answer(429), answer(200))
    response = await route(fallback(T0, T1, on_status_codes=frozenset({429})), inner, telemetry)
    assert response.status == 200
    assert inner.paths == [T0.path, T1.path]


@pytest.mark.parametrize(
    ("failed", "codes", "moves_on"),
    [
        (answer(408, failure="timeout"), {408}, True),
        (answer(408, failure="timeout"), {502}, False),
        (answer(502, failure="connect_error"), {502}, True),
        (answer(502, failure="connect_error"), {503}, False),
    ],
    ids=["timeout-listed", "timeout-unlisted", "connect-listed", "connect-unlisted"],
)
async def test_fallback_matches_transport_failures_by_their_synthetic_status(
    telemetry: Telemetry, failed: GatewayResponse, codes: set[int], moves_on: bool
) -> None:
    inner = ScriptedHandler(failed, answer(200))
    response = await route(fallback(T0, T1, on_status_codes=frozenset(codes)), inner, telemetry)
    assert (response.status == 200) is moves_on
    assert len(inner.requests) == (2 if moves_on else 1)


async def test_fallback_binds_each_target_to_the_request_it_sends_inwards(
    telemetry: Telemetry,
) -> None:
    inner = ScriptedHandler(answer(503), answer(200))
    await route(fallback(T0, T1), inner, telemetry)
    assert [r.target for r in inner.requests] == [T0, T1]


async def test_single_strategy_uses_only_its_first_child(telemetry: Telemetry) -> None:
    inner = ScriptedHandler(answer(503))
    response = await route(strategy("config", "single", T0, T1), inner, telemetry)
    assert response.status == 503
    assert inner.paths == [T0.path]


@pytest.mark.parametrize(
    ("draw", "expected"),
    [(0.0, 0), (0.24, 0), (0.25, 1), (0.99, 1)],
    ids=["bottom", "just-inside-first", "second-starts", "top"],
)
async def test_loadbalance_picks_the_child_chosen_by_the_injected_draw(
    telemetry: Telemetry, draw: float, expected: int
) -> None:
    light = target("config.targets[0]", weight=1.0)
    heavy = target("config.targets[1]", weight=3.0)
    inner = ScriptedHandler(answer(200))
    await route(
        strategy("config", "loadbalance", light, heavy), inner, telemetry, rand=ScriptedRand(draw)
    )
    assert inner.paths == [(light, heavy)[expected].path]


async def test_loadbalance_does_not_fall_back_when_its_pick_fails(telemetry: Telemetry) -> None:
    inner = ScriptedHandler(answer(503))
    response = await route(strategy("config", "loadbalance", T0, T1), inner, telemetry)
    assert response.status == 503
    assert len(inner.requests) == 1


@pytest.mark.parametrize(
    ("mode", "statuses", "draw", "tried"),
    [
        ("loadbalance", (503, 200), 0.9, ("b", "c")),
        ("fallback", (503, 503, 200), None, ("a", "b", "c")),
    ],
    ids=[
        "a-loadbalance-inside-falls-back-to-the-next-sibling",
        "a-fallback-inside-exhausts-its-children-before-the-outer-one-moves-on",
    ],
)
async def test_a_nested_strategy_inside_fallback(
    telemetry: Telemetry,
    mode: str,
    statuses: tuple[int, ...],
    draw: float | None,
    tried: tuple[str, ...],
) -> None:
    children = {
        "a": target("config.targets[0].targets[0]"),
        "b": target("config.targets[0].targets[1]"),
        "c": target("config.targets[1]"),
    }
    a, b, c = children.values()
    tree = fallback(strategy("config.targets[0]", mode, a, b), c)
    inner = ScriptedHandler(*(answer(status) for status in statuses))
    rand = None if draw is None else ScriptedRand(draw)
    response = await route(tree, inner, telemetry, rand=rand)
    assert response.status == 200
    assert inner.paths == [children[name].path for name in tried]


async def test_inner_status_codes_do_not_leak_to_the_outer_fallback(
    telemetry: Telemetry,
) -> None:
    a = target("config.targets[0].targets[0]")
    c = target("config.targets[1]")
    inner_node = strategy("config.targets[0]", "fallback", a, on_status_codes=frozenset({429}))
    inner = ScriptedHandler(answer(500), answer(200))
    response = await route(fallback(inner_node, c), inner, telemetry)
    assert response.status == 200
    assert inner.paths == [a.path, c.path]


def conditional(**kwargs: Any) -> Node:
    """A conditional node over targets named ``big`` and ``small``."""
    big = target("config.targets[0]", name="big")
    small = target("config.targets[1]", name="small")
    return strategy("config", "conditional", big, small, **kwargs)


async def test_conditional_routes_on_request_metadata(telemetry: Telemetry) -> None:
    node = conditional(
        conditions=(Condition(query={"metadata.plan": "pro"}, then="big"),), default="small"
    )
    inner = ScriptedHandler(answer(200))
    await route(node, inner, telemetry, metadata={"plan": "pro"})
    assert inner.paths == ["config.targets[0]"]


async def test_conditional_routes_on_request_params(telemetry: Telemetry) -> None:
    node = conditional(
        conditions=(Condition(query={"params.model": {"$eq": "tiny"}}, then="small"),),
        default="big",
    )
    inner = ScriptedHandler(answer(200))
    await route(node, inner, telemetry, body={"model": "tiny", "messages": []})
    assert inner.paths == ["config.targets[1]"]


async def test_conditional_uses_the_default_child_when_no_condition_matches(
    telemetry: Telemetry,
) -> None:
    node = conditional(
        conditions=(Condition(query={"metadata.plan": "pro"}, then="big"),), default="small"
    )
    inner = ScriptedHandler(answer(200))
    await route(node, inner, telemetry, metadata={"plan": "free"})
    assert inner.paths == ["config.targets[1]"]


async def test_conditional_without_match_or_default_is_refused_with_400(
    telemetry: Telemetry,
) -> None:
    node = conditional(conditions=(Condition(query={"metadata.plan": "pro"}, then="big"),))
    inner = ScriptedHandler()
    with pytest.raises(GatewayError) as caught:
        await route(node, inner, telemetry, metadata={"plan": "free"})
    assert caught.value.status == 400
    assert caught.value.code == "no_route"
    assert inner.requests == []


async def test_passed_deadline_stops_further_fallbacks(telemetry: Telemetry) -> None:
    inner = ScriptedHandler(answer(503), answer(200))
    response = await route(fallback(T0, T1), inner, telemetry, now=lambda: 100.0, deadline=100.0)
    assert response.status == 503
    assert inner.paths == [T0.path]


async def test_deadline_still_ahead_lets_the_fallback_proceed(telemetry: Telemetry) -> None:
    inner = ScriptedHandler(answer(503), answer(200))
    response = await route(fallback(T0, T1), inner, telemetry, now=lambda: 99.0, deadline=100.0)
    assert response.status == 200
    assert inner.paths == [T0.path, T1.path]


async def test_each_move_counts_in_the_fallback_metric_by_target_name(
    telemetry: Telemetry,
) -> None:
    inner = ScriptedHandler(answer(503), answer(429), answer(200))
    await route(fallback(T0, T1, T2), inner, telemetry)
    registry = telemetry.metrics.registry
    first = {"config": "test", "from_target": "primary", "to_target": "secondary"}
    second = {"config": "test", "from_target": "secondary", "to_target": "tertiary"}
    assert (
        registry.get_sample_value(sc.M_FALLBACKS + "_total", {**first, "reason": "status_5xx"})
        == 1.0
    )
    assert (
        registry.get_sample_value(sc.M_FALLBACKS + "_total", {**second, "reason": "status_429"})
        == 1.0
    )


async def test_caller_configs_label_fallbacks_by_name_within_the_label_budget(
    telemetry: Telemetry,
) -> None:
    telemetry.metrics = GatewayMetrics(CollectorRegistry(), max_caller_label_values=2)
    for first, second in ((T0, T1), (T1, T2)):
        inner = ScriptedHandler(answer(408, failure="timeout"), answer(200))
        await route(fallback(first, second), inner, telemetry, config_id="inline", caller=True)
    get = telemetry.metrics.registry.get_sample_value
    moves = {
        (s.labels["from_target"], s.labels["to_target"]): s.value
        for family in telemetry.metrics.registry.collect()
        if family.name == sc.M_FALLBACKS
        for s in family.samples
        if s.name.endswith("_total")
    }
    # primary and secondary fill the budget of two; tertiary is past it.
    assert moves == {("primary", "secondary"): 1.0, ("secondary", "other"): 1.0}
    assert get(sc.M_LABEL_OVERFLOW + "_total", {"label": "target"}) == 1.0


async def test_server_configs_label_fallbacks_by_name_past_any_budget(
    telemetry: Telemetry,
) -> None:
    telemetry.metrics = GatewayMetrics(CollectorRegistry(), max_caller_label_values=0)
    inner = ScriptedHandler(answer(503), answer(200))
    await route(fallback(T0, T1), inner, telemetry, config_id="prod")
    labels = {"config": "prod", "from_target": "primary", "to_target": "secondary"}
    get = telemetry.metrics.registry.get_sample_value
    assert get(sc.M_FALLBACKS + "_total", {**labels, "reason": "status_5xx"}) == 1.0
    assert get(sc.M_LABEL_OVERFLOW + "_total", {"label": "target"}) is None


async def test_each_move_is_a_span_event_on_the_strategy_span(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    inner = ScriptedHandler(answer(503), answer(200))
    await route(fallback(T0, T1), inner, telemetry)
    (span,) = [s for s in spans.get_finished_spans() if s.name == sc.SPAN_STRATEGY]
    assert span.attributes is not None
    assert span.attributes[sc.STRATEGY_MODE] == "fallback"
    events = [e for e in span.events if e.name == sc.EVENT_FALLBACK]
    assert len(events) == 1
    assert dict(events[0].attributes or {}) == {
        sc.FALLBACK_FROM_PATH: T0.path,
        sc.FALLBACK_FROM_NAME: "primary",
        sc.FALLBACK_TO_PATH: T1.path,
        sc.FALLBACK_TO_NAME: "secondary",
        sc.FALLBACK_REASON: "status_5xx",
    }


async def test_fallbacks_are_counted_on_the_request_context(telemetry: Telemetry) -> None:
    layer = FallbackLayer(telemetry, rand=ScriptedRand(0.0))
    request = gateway_request(config=routing(fallback(T0, T1, T2)))
    await layer(ScriptedHandler(answer(503), answer(503), answer(200)))(request)
    assert request.ctx.fallbacks == 2


async def test_a_success_records_no_fallback(telemetry: Telemetry) -> None:
    inner = ScriptedHandler(answer(200))
    await route(fallback(T0, T1), inner, telemetry)
    registry = telemetry.metrics.registry
    labels = {
        "config": "test",
        "from_target": "primary",
        "to_target": "secondary",
        "reason": "status_5xx",
    }
    assert registry.get_sample_value(sc.M_FALLBACKS + "_total", labels) is None


async def test_each_move_is_a_fallback_line_joined_to_the_span_carrying_its_event(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    """Request id, trace and span of the event, the config as the request line names it, and
    both nodes by name (the metrics' labels) and path."""
    inner = ScriptedHandler(answer(503), answer(200))
    with capture_logs() as logs:
        await route(fallback(T0, T1), inner, telemetry, config_id="prod")
    (span,) = [s for s in spans.get_finished_spans() if s.name == sc.SPAN_STRATEGY]
    (line,) = [e for e in logs if e["event"] == "fallback"]
    assert span.context is not None
    assert (line["request_id"], line["config"]) == ("req-1", "prod")
    assert (line["trace_id"], line["span_id"]) == (
        format(span.context.trace_id, "032x"),
        format(span.context.span_id, "016x"),
    )
    assert (line["from_target"], line["from_target_path"]) == ("primary", T0.path)
    assert (line["to_target"], line["to_target_path"]) == ("secondary", T1.path)
    assert line["reason"] == "status_5xx"
