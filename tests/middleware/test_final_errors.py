"""Final upstream errors through the fallback and retry layers: no retry, no fallback, and
the stop is recorded."""

from __future__ import annotations

import orjson
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from relaygate.exporters import semconv as sc
from relaygate.middleware.fallback import FallbackLayer
from relaygate.middleware.retry import RetryLayer
from relaygate.strategies import Backoff
from relaygate.telemetry import Telemetry
from tests.fakes import (
    RecordingSleep,
    ScriptedHandler,
    ScriptedRand,
    answer,
    gateway_request,
    routing,
    strategy,
    target,
)

FILTERED = orjson.dumps({"error": {"message": "filtered", "type": None, "code": "content_filter"}})
TOO_LONG = orjson.dumps(
    {
        "error": {
            "message": "too long",
            "type": "invalid_request_error",
            "code": "context_length_exceeded",
        }
    }
)
T0 = target("config.targets[0]", name="primary")
T1 = target("config.targets[1]", name="secondary")


def final_count(telemetry: Telemetry, code: str, stopped: str) -> float:
    value = telemetry.metrics.registry.get_sample_value(
        "relaygate_final_errors_total", {"config": "test", "code": code, "stopped": stopped}
    )
    return value or 0.0


async def test_a_content_filter_refusal_is_answered_without_falling_back(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    inner = ScriptedHandler(answer(400, body=FILTERED), answer(200))
    layer = FallbackLayer(telemetry, rand=ScriptedRand(0.0))
    request = gateway_request(config=routing(strategy("config", "fallback", T0, T1)))
    response = await layer(inner)(request)
    assert response.status == 400
    assert response.body == FILTERED
    assert inner.paths == [T0.path]
    assert final_count(telemetry, "content_filter", "fallback") == 1
    events = [e for s in spans.get_finished_spans() for e in s.events]
    assert [dict(e.attributes or {}) for e in events if e.name == sc.EVENT_FINAL_ERROR] == [
        {"code": "content_filter", "stopped": "fallback", sc.TARGET_PATH: T0.path}
    ]


async def test_a_context_length_error_falls_back_to_the_next_target(telemetry: Telemetry) -> None:
    inner = ScriptedHandler(answer(400, body=TOO_LONG), answer(200))
    layer = FallbackLayer(telemetry, rand=ScriptedRand(0.0))
    request = gateway_request(config=routing(strategy("config", "fallback", T0, T1)))
    response = await layer(inner)(request)
    assert response.status == 200
    assert inner.paths == [T0.path, T1.path]


async def test_on_error_codes_lets_a_listed_refusal_fall_back(telemetry: Telemetry) -> None:
    inner = ScriptedHandler(answer(400, body=FILTERED), answer(200))
    layer = FallbackLayer(telemetry, rand=ScriptedRand(0.0))
    node = strategy("config", "fallback", T0, T1, on_error_codes=frozenset({"content_filter"}))
    response = await layer(inner)(gateway_request(config=routing(node)))
    assert response.status == 200
    assert final_count(telemetry, "content_filter", "fallback") == 0


async def test_a_final_answer_is_not_recorded_where_nothing_would_have_followed(
    telemetry: Telemetry,
) -> None:
    inner = ScriptedHandler(answer(400, body=FILTERED))
    layer = FallbackLayer(telemetry, rand=ScriptedRand(0.0))
    node = strategy("config", "fallback", T0, T1, on_status_codes=frozenset({503}))
    response = await layer(inner)(gateway_request(config=routing(node)))
    assert response.status == 400
    assert final_count(telemetry, "content_filter", "fallback") == 0


async def test_a_final_answer_is_not_retried_even_when_its_status_is_listed(
    telemetry: Telemetry,
) -> None:
    tgt = target(attempts=3, on_status_codes=[400])
    inner = ScriptedHandler(answer(400, body=FILTERED), answer(200))
    sleep = RecordingSleep()
    layer = RetryLayer(telemetry, Backoff(), sleep=sleep, now=lambda: 0.0)
    response = await layer(inner)(gateway_request(target=tgt))
    assert response.status == 400
    assert inner.remaining == 1
    assert sleep.waits == []
    assert (
        telemetry.metrics.registry.get_sample_value(
            "relaygate_final_errors_total",
            {"config": "test", "code": "content_filter", "stopped": "retry"},
        )
        == 1
    )


async def test_a_target_under_on_error_codes_retries_the_listed_code(
    telemetry: Telemetry,
) -> None:
    tgt = target(attempts=1, on_status_codes=[400], on_error_codes=frozenset({"*"}))
    inner = ScriptedHandler(answer(400, body=FILTERED), answer(200))
    layer = RetryLayer(telemetry, Backoff(), sleep=RecordingSleep(), now=lambda: 0.0)
    response = await layer(inner)(gateway_request(target=tgt))
    assert response.status == 200
