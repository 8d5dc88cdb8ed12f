"""Hostile input through the real ASGI app: each ends in an OpenAI-shaped 4xx, never a 500 or a
stall, and fan-out stays within the configured bounds.

Upstream calls go to an ``httpx.MockTransport`` that counts them; nothing leaves the process.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from structlog.testing import capture_logs

from relaygate.exporters import semconv as sc
from relaygate.telemetry import Telemetry
from tests.fakes import RecordingTransport
from tests.inprocess import asgi_client, gateway_app

CHAT = "/v1/chat/completions"
BODY: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
UPSTREAM = "http://upstream.invalid/v1"


async def no_sleep(_: float) -> None:
    """Retry waits pass at once."""


def retried(times: int) -> dict[str, Any]:
    """A target retried ``times`` times on 503."""
    return {"provider": "openai", "retry": {"attempts": times, "on_status_codes": [503]}}


def server_config(**limits: Any) -> dict[str, Any]:
    """A server config whose provider defaults point every openai target at the mock."""
    return {
        "providers": {"openai": {"api_key": "sk-operator", "custom_host": UPSTREAM}},
        "configs": {
            "pinned": {"provider": "openai", "override_params": {"model": "gpt-4o"}},
            "wide": {
                "strategy": {"mode": "fallback"},
                "targets": [retried(3) for _ in range(8)],
            },
        },
        "default_config": "pinned",
        "limits": limits,
        # Eight targets on one endpoint: the default circuit breaker would skip most of them,
        # and these tests hold the attempt budget alone.
        "breaker": {"enabled": False},
    }


def make_app(telemetry: Telemetry, upstream: RecordingTransport, **limits: Any) -> Starlette:
    """The gateway app over ``upstream``, with ``limits``."""
    return gateway_app(server_config(**limits), telemetry, upstream, sleep=no_sleep)


Call = Callable[..., Awaitable[httpx.Response]]


@pytest.fixture
def upstream() -> RecordingTransport:
    """An upstream answering every call with a chat completion."""
    return RecordingTransport()


@pytest.fixture
def post(telemetry: Telemetry, upstream: RecordingTransport) -> Call:
    """POST to the chat route of an app with default limits."""
    app = make_app(telemetry, upstream)
    return lambda **kw: send(app, **kw)


async def send(app: Starlette, **kwargs: Any) -> httpx.Response:
    """One POST to the chat route through ``httpx.ASGITransport``."""
    async with asgi_client(app) as client:
        return await client.post(CHAT, **kwargs)


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The error object of an OpenAI-shaped error answer with ``status``."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error"
    error: dict[str, Any] = body["error"]
    return error


def nested_objects(levels: int, leaf: str = "1") -> str:
    """JSON text of ``levels`` nested objects (built as text: any depth, no recursion)."""
    return '{"a":' * levels + leaf + "}" * levels


def nested_lists(levels: int) -> str:
    """JSON text of ``levels`` nested lists."""
    return "[" * levels + "1" + "]" * levels


def body_with(field: str) -> bytes:
    """:data:`BODY` with an extra field ``x`` holding the JSON text ``field``."""
    return (json.dumps(BODY)[:-1] + f', "x": {field}}}').encode()


# --- nesting depth -----------------------------------------------------------------------------


async def test_a_body_300_levels_deep_under_override_params_is_a_400(
    post: Call, upstream: RecordingTransport
) -> None:
    """Merged with ``override_params`` such a body could no longer be encoded (orjson stops
    at 255 levels); it is refused before routing."""
    response = await post(content=body_with(nested_lists(300)))
    error = error_of(response, 400)
    assert error["code"] == "nesting_too_deep"
    assert "100 levels" in error["message"]
    assert upstream.requests == []


async def test_a_body_at_the_depth_limit_is_forwarded_with_its_overrides(
    post: Call, upstream: RecordingTransport
) -> None:
    response = await post(content=body_with(nested_lists(99)))
    assert response.status_code == 200, response.text
    sent = json.loads(upstream.bodies[0])
    assert sent["model"] == "gpt-4o"


async def test_the_depth_limit_is_configurable(
    telemetry: Telemetry, upstream: RecordingTransport
) -> None:
    app = make_app(telemetry, upstream, max_json_depth=10)
    error = error_of(await send(app, content=body_with(nested_objects(10))), 400)
    assert error["code"] == "nesting_too_deep"
    assert (await send(app, content=body_with(nested_objects(8)))).status_code == 200


async def test_override_params_1000_levels_deep_in_a_header_config_is_a_400(
    post: Call, upstream: RecordingTransport
) -> None:
    config = '{"provider": "openai", "override_params": {"x": ' + nested_objects(1000) + "}}"
    error = error_of(await post(json=BODY, headers={"x-portkey-config": config}), 400)
    assert error["code"] == "invalid_config"
    assert "override_params.x.a.a: nests more than 64 levels deep" in error["message"]
    assert upstream.requests == []


async def test_and_200_levels_deep_in_a_header_config_is_a_400(
    post: Call, upstream: RecordingTransport
) -> None:
    query = '{"$and": [' * 200 + '{"params.model": "x"}' + "]}" * 200
    config = (
        '{"strategy": {"mode": "conditional", "default": "a", "conditions": '
        f'[{{"query": {query}, "then": "a"}}]}}, '
        '"targets": [{"name": "a", "provider": "openai"}]}'
    )
    error = error_of(await post(json=BODY, headers={"x-portkey-config": config}), 400)
    assert error["code"] == "invalid_config"
    assert "nests more than 64 levels deep" in error["message"]
    assert upstream.requests == []


async def test_and_nesting_within_the_document_bound_but_past_the_query_bound_is_a_400(
    post: Call,
) -> None:
    query = '{"$and": [' * 12 + '{"params.model": "x"}' + "]}" * 12
    config = (
        '{"strategy": {"mode": "conditional", "default": "a", "conditions": '
        f'[{{"query": {query}, "then": "a"}}]}}, '
        '"targets": [{"name": "a", "provider": "openai"}]}'
    )
    error = error_of(await post(json=BODY, headers={"x-portkey-config": config}), 400)
    assert "$and/$or nest more than 8 levels deep" in error["message"]


@pytest.mark.parametrize("levels", [150, 2000])
async def test_deeply_nested_metadata_is_a_400(
    post: Call, upstream: RecordingTransport, levels: int
) -> None:
    response = await post(json=BODY, headers={"x-portkey-metadata": nested_objects(levels)})
    error = error_of(response, 400)
    assert error["code"] == "nesting_too_deep"
    assert error["param"] == "x-portkey-metadata"
    assert upstream.requests == []


async def test_a_body_past_the_decoders_own_limit_is_a_400_nesting_too_deep(
    post: Call, upstream: RecordingTransport
) -> None:
    error = error_of(await post(content=body_with(nested_lists(5000))), 400)
    assert error["code"] == "nesting_too_deep"
    assert upstream.requests == []


async def test_a_condition_on_a_very_deep_path_simply_does_not_match(
    post: Call, upstream: RecordingTransport
) -> None:
    """Paths resolve iteratively: a 4,000-part path over a 99-level body routes by default."""
    path = "params.x" + ".0" * 4000
    config = json.dumps(
        {
            "strategy": {
                "mode": "conditional",
                "conditions": [{"query": {path: 1}, "then": "a"}],
                "default": "b",
            },
            "targets": [
                {"name": "a", "provider": "openai", "override_params": {"model": "a"}},
                {"name": "b", "provider": "openai", "override_params": {"model": "b"}},
            ],
        }
    )
    response = await post(content=body_with(nested_lists(99)), headers={"x-portkey-config": config})
    assert response.status_code == 200, response.text
    assert json.loads(upstream.bodies[0])["model"] == "b"


# --- $regex ------------------------------------------------------------------------------------


def regex_config(pattern: str) -> str:
    """A header config sending ``messages.0.content`` matching ``pattern`` to target a."""
    return json.dumps(
        {
            "strategy": {
                "mode": "conditional",
                "conditions": [
                    {"query": {"params.messages.0.content": {"$regex": pattern}}, "then": "a"}
                ],
                "default": "b",
            },
            "targets": [
                {"name": "a", "provider": "openai", "override_params": {"model": "a"}},
                {"name": "b", "provider": "openai", "override_params": {"model": "b"}},
            ],
        }
    )


async def test_a_backtracking_bomb_is_evaluated_in_linear_time(
    post: Call, upstream: RecordingTransport
) -> None:
    """On Python's ``re`` this request would hold the event loop for hours."""
    body = {**BODY, "messages": [{"role": "user", "content": "a" * 5000 + "!"}]}
    response = await post(json=body, headers={"x-portkey-config": regex_config("^(a+)+$")})
    assert response.status_code == 200
    assert json.loads(upstream.bodies[0])["model"] == "b"


@pytest.mark.parametrize("pattern", [r"(a+)\1", "(?=a)a", "a" * 1001])
async def test_a_pattern_the_linear_engine_cannot_run_is_a_400(
    post: Call, upstream: RecordingTransport, pattern: str
) -> None:
    response = await post(json=BODY, headers={"x-portkey-config": regex_config(pattern)})
    error = error_of(response, 400)
    assert error["code"] == "invalid_config"
    assert "strategy.conditions[0].query.params.messages.0.content.$regex" in error["message"]
    assert upstream.requests == []


async def test_an_unknown_operator_in_a_header_config_is_a_400(post: Call) -> None:
    config = json.dumps(
        {
            "strategy": {
                "mode": "conditional",
                "conditions": [{"query": {"params.model": {"$where": "1"}}, "then": "a"}],
            },
            "targets": [{"name": "a", "provider": "openai"}],
        }
    )
    error = error_of(await post(json=BODY, headers={"x-portkey-config": config}), 400)
    assert "strategy.conditions[0].query.params.model.$where: unknown operator" in error["message"]


# --- fan-out -----------------------------------------------------------------------------------


async def test_a_31_kb_header_config_with_1400_targets_is_refused_without_upstream_calls(
    post: Call, upstream: RecordingTransport
) -> None:
    config = json.dumps(
        {"strategy": {"mode": "fallback"}, "targets": [{"provider": "openai"}] * 1400},
        separators=(",", ":"),
    )
    assert 30_000 < len(config) < 32 * 1024
    error = error_of(await post(json=BODY, headers={"x-portkey-config": config}), 400)
    assert error["code"] == "invalid_config"
    assert "more than 50 targets" in error["message"]
    assert upstream.requests == []


def failing() -> RecordingTransport:
    """An upstream answering every call with 503."""
    return RecordingTransport(httpx.Response(503, json={"error": {"message": "down"}}))


async def test_the_attempt_budget_caps_upstream_calls_across_the_tree_and_retries(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    """Eight targets with three retries each would make 32 calls; the budget allows 5."""
    upstream = failing()
    app = make_app(telemetry, upstream, max_attempts_per_request=5)
    response = await send(app, json=BODY, headers={"x-portkey-config": "wide"})
    assert response.status_code == 503
    assert len(upstream.requests) == 5
    assert response.headers["x-relaygate-route"] == (
        "config.targets[0]:503,503,503,503>config.targets[1]:503"
    )
    events = [e for s in spans.get_finished_spans() for e in s.events]
    spent = [dict(e.attributes or {}) for e in events if e.name == sc.EVENT_ATTEMPT_BUDGET_SPENT]
    # The retry layer stopped retrying targets[1]; the fallback layer did not move on.
    assert spent == [
        {sc.ATTEMPTS: 5, sc.ATTEMPT_BUDGET_SKIPPED_PATH: "config.targets[1]"},
        {sc.ATTEMPTS: 5, sc.ATTEMPT_BUDGET_SKIPPED_PATH: "config.targets[2]"},
    ]


async def test_the_default_attempt_budget_is_20(telemetry: Telemetry) -> None:
    upstream = failing()
    app = make_app(telemetry, upstream)
    response = await send(app, json=BODY, headers={"x-portkey-config": "wide"})
    assert response.status_code == 503
    assert len(upstream.requests) == 20


async def test_a_budget_stop_between_targets_is_not_counted_as_a_fallback(
    telemetry: Telemetry,
) -> None:
    upstream = failing()
    app = make_app(telemetry, upstream, max_attempts_per_request=4)
    response = await send(app, json=BODY, headers={"x-portkey-config": "wide"})
    assert response.headers["x-relaygate-route"] == "config.targets[0]:503,503,503,503"
    assert len(upstream.requests) == 4
    fallbacks = telemetry.metrics.registry.get_sample_value(
        "relaygate_fallbacks_total",
        {
            "config": "wide",
            "from_target": "config.targets[0]",
            "to_target": "config.targets[1]",
            "reason": "status_5xx",
        },
    )
    assert not fallbacks


# --- the route header --------------------------------------------------------------------------


async def test_the_route_header_is_cut_at_an_attempt_boundary_and_the_log_keeps_it_all(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    upstream = failing()
    app = make_app(telemetry, upstream, max_route_header_bytes=100)
    with capture_logs() as logs:
        response = await send(app, json=BODY, headers={"x-portkey-config": "wide"})
    header = response.headers["x-relaygate-route"]
    assert len(header.encode()) <= 100
    assert header == (
        "config.targets[0]:503,503,503,503>config.targets[1]:503,503,503,503...(+12 more)"
    )
    line = next(e for e in logs if e["event"] == "request")
    assert len(line["attempts"]) == 20
    assert line["route"].count("503") == 20
    server = next(s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER)
    assert server.attributes is not None
    assert server.attributes[sc.ROUTE] == line["route"]


async def test_the_target_bound_is_the_servers_for_header_and_named_configs_alike(
    telemetry: Telemetry, upstream: RecordingTransport
) -> None:
    wide = {"strategy": {"mode": "fallback"}, "targets": [{"provider": "openai"}] * 55}
    config = server_config(max_targets_per_config=60)
    config["configs"]["wide"] = wide
    app = gateway_app(config, telemetry, upstream, sleep=no_sleep)
    assert (await send(app, json=BODY, headers={"x-portkey-config": "wide"})).status_code == 200
    header = json.dumps({**wide, "targets": [{"provider": "openai"}] * 60})
    assert (await send(app, json=BODY, headers={"x-portkey-config": header})).status_code == 200
    header = json.dumps({**wide, "targets": [{"provider": "openai"}] * 61})
    error = error_of(await send(app, json=BODY, headers={"x-portkey-config": header}), 400)
    assert "more than 60 targets" in error["message"]
