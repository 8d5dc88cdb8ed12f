"""The retry layer: how many calls a target gets, how long it waits, and what it records."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from structlog.testing import capture_logs

from relaygate.config.model import Target
from relaygate.exchange import GatewayResponse, ResponseStream
from relaygate.exporters import semconv as sc
from relaygate.middleware.retry import RetryLayer
from relaygate.strategies import Backoff
from relaygate.telemetry import Telemetry
from tests.fakes import (
    RecordingSleep,
    ScriptedHandler,
    ScriptedRand,
    StreamBody,
    answer,
    gateway_request,
    target,
)

NO_JITTER = Backoff(initial_s=1.0, multiplier=2.0, max_s=10.0, jitter=0.0, max_retry_after_s=30.0)


async def run(
    tgt: Target,
    inner: ScriptedHandler,
    telemetry: Telemetry,
    *,
    sleep: RecordingSleep | None = None,
    backoff: Backoff = NO_JITTER,
    max_attempts: int = 5,
    rand: ScriptedRand | None = None,
    deadline: float | None = None,
    now: float = 0.0,
    **request: Any,
) -> GatewayResponse:
    """Send one request for ``tgt`` through a retry layer with injected sleep, draw and clocks."""
    layer = RetryLayer(
        telemetry,
        backoff,
        max_attempts=max_attempts,
        sleep=sleep or RecordingSleep(),
        rand=rand or ScriptedRand(0.5),
        wall=lambda: 1_000_000.0,
        now=lambda: now,
    )
    return await layer(inner)(gateway_request(target=tgt, deadline=deadline, **request))


async def test_retries_a_failing_target_until_it_answers_ok(telemetry: Telemetry) -> None:
    inner = ScriptedHandler(answer(503), answer(503), answer(200))
    response = await run(target(attempts=3), inner, telemetry)
    assert response.status == 200
    assert [r.attempt for r in inner.requests] == [1, 2, 3]


async def test_attempts_count_retries_after_the_first_call(telemetry: Telemetry) -> None:
    inner = ScriptedHandler(answer(503), answer(503), answer(502))
    response = await run(target(attempts=2), inner, telemetry)
    assert response.status == 502
    assert len(inner.requests) == 3


async def test_attempts_above_the_server_cap_are_capped(telemetry: Telemetry) -> None:
    inner = ScriptedHandler(*(answer(503) for _ in range(11)))
    response = await run(target(attempts=10), inner, telemetry, max_attempts=2)
    assert response.status == 503
    assert len(inner.requests) == 3


async def test_zero_attempts_means_a_single_call(telemetry: Telemetry) -> None:
    inner = ScriptedHandler(answer(503), answer(200))
    response = await run(target(attempts=0), inner, telemetry)
    assert response.status == 503
    assert len(inner.requests) == 1


async def test_a_status_outside_the_retry_codes_is_returned_at_once(telemetry: Telemetry) -> None:
    inner = ScriptedHandler(answer(400), answer(200))
    response = await run(target(attempts=3), inner, telemetry)
    assert response.status == 400
    assert len(inner.requests) == 1


async def test_custom_retry_codes_replace_the_default_ones(telemetry: Telemetry) -> None:
    tgt = target(attempts=3, on_status_codes={400})
    inner = ScriptedHandler(answer(400), answer(503), answer(200))
    response = await run(tgt, inner, telemetry)
    assert response.status == 503
    assert len(inner.requests) == 2


async def test_a_connect_error_is_retried_as_a_502(telemetry: Telemetry) -> None:
    inner = ScriptedHandler(answer(502, failure="connect_error"), answer(200))
    response = await run(target(attempts=1), inner, telemetry)
    assert response.status == 200
    assert len(inner.requests) == 2


async def test_a_timeout_is_not_retried_under_the_default_codes(telemetry: Telemetry) -> None:
    inner = ScriptedHandler(answer(408, failure="timeout"), answer(200))
    response = await run(target(attempts=2), inner, telemetry)
    assert response.status == 408
    assert len(inner.requests) == 1


async def test_a_request_deadline_answer_is_never_retried(telemetry: Telemetry) -> None:
    inner = ScriptedHandler(answer(504, failure="deadline"), answer(200))
    response = await run(target(attempts=2, on_status_codes={504}), inner, telemetry)
    assert response.status == 504
    assert len(inner.requests) == 1


async def test_waits_grow_by_the_backoff_multiplier(telemetry: Telemetry) -> None:
    sleep = RecordingSleep()
    inner = ScriptedHandler(answer(503), answer(503), answer(503), answer(200))
    await run(target(attempts=3), inner, telemetry, sleep=sleep)
    assert sleep.waits == [1.0, 2.0, 4.0]


async def test_each_attempt_carries_the_wait_that_preceded_it(telemetry: Telemetry) -> None:
    inner = ScriptedHandler(answer(503), answer(503), answer(200))
    await run(target(attempts=2), inner, telemetry)
    assert [r.backoff_s for r in inner.requests] == [0.0, 1.0, 2.0]


async def test_jitter_scales_the_wait_by_the_injected_draw(telemetry: Telemetry) -> None:
    sleep = RecordingSleep()
    jittery = Backoff(initial_s=1.0, multiplier=2.0, max_s=10.0, jitter=0.5)
    inner = ScriptedHandler(answer(503), answer(503), answer(200))
    await run(
        target(attempts=2),
        inner,
        telemetry,
        sleep=sleep,
        backoff=jittery,
        rand=ScriptedRand(0.0, 1.0),
    )
    assert sleep.waits == [0.5, 3.0]


async def test_retry_after_is_waited_when_the_target_asks_for_it(telemetry: Telemetry) -> None:
    sleep = RecordingSleep()
    inner = ScriptedHandler(answer(429, headers={"retry-after": "3"}), answer(200))
    await run(target(attempts=1, use_retry_after_header=True), inner, telemetry, sleep=sleep)
    assert sleep.waits == [3.0]


async def test_retry_after_ms_is_read_in_milliseconds(telemetry: Telemetry) -> None:
    sleep = RecordingSleep()
    inner = ScriptedHandler(answer(503, headers={"retry-after-ms": "250"}), answer(200))
    await run(target(attempts=1, use_retry_after_header=True), inner, telemetry, sleep=sleep)
    assert sleep.waits == [0.25]


async def test_retry_after_is_ignored_unless_the_target_asks_for_it(
    telemetry: Telemetry,
) -> None:
    sleep = RecordingSleep()
    inner = ScriptedHandler(answer(429, headers={"retry-after": "3"}), answer(200))
    await run(target(attempts=1), inner, telemetry, sleep=sleep)
    assert sleep.waits == [1.0]


async def test_retry_after_beyond_the_cap_ends_retrying(telemetry: Telemetry) -> None:
    sleep = RecordingSleep()
    inner = ScriptedHandler(answer(429, headers={"retry-after": "120"}), answer(200))
    response = await run(
        target(attempts=3, use_retry_after_header=True), inner, telemetry, sleep=sleep
    )
    assert response.status == 429
    assert len(inner.requests) == 1
    assert sleep.waits == []


async def test_a_wait_longer_than_the_remaining_deadline_ends_retrying(
    telemetry: Telemetry,
) -> None:
    sleep = RecordingSleep()
    inner = ScriptedHandler(answer(503), answer(200))
    response = await run(target(attempts=3), inner, telemetry, sleep=sleep, deadline=10.5, now=10.0)
    assert response.status == 503
    assert len(inner.requests) == 1
    assert sleep.waits == []


async def test_a_failed_answer_is_released_before_the_retry(telemetry: Telemetry) -> None:
    body = StreamBody([b"data: partial\n\n"])
    failed = GatewayResponse(status=503, stream=ResponseStream(body))
    inner = ScriptedHandler(failed, answer(200))
    await run(target(attempts=1), inner, telemetry)
    assert body.closed


async def test_each_retry_counts_in_the_retries_metric_by_reason(telemetry: Telemetry) -> None:
    tgt = target("config.targets[0]", name="primary", attempts=3)
    inner = ScriptedHandler(answer(503), answer(429), answer(503), answer(200))
    await run(tgt, inner, telemetry)
    registry = telemetry.metrics.registry
    base = {"config": "test", "target": "primary", "provider": "openai", "model": "other"}
    name = sc.M_RETRIES + "_total"
    assert registry.get_sample_value(name, {**base, "reason": "status_5xx"}) == 2.0
    assert registry.get_sample_value(name, {**base, "reason": "status_429"}) == 1.0


async def test_no_retry_is_counted_when_the_first_call_succeeds(telemetry: Telemetry) -> None:
    tgt = target("config.targets[0]", name="primary", attempts=3)
    await run(tgt, ScriptedHandler(answer(200)), telemetry)
    base = {"config": "test", "target": "primary", "provider": "openai", "model": "other"}
    value = telemetry.metrics.registry.get_sample_value(
        sc.M_RETRIES + "_total", {**base, "reason": "status_5xx"}
    )
    assert value is None


async def test_each_retry_is_a_span_event_with_its_wait(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    tgt = target("config.targets[0]", attempts=2, use_retry_after_header=True)
    inner = ScriptedHandler(answer(503), answer(429, headers={"retry-after": "2"}), answer(200))
    await run(tgt, inner, telemetry)
    (span,) = [s for s in spans.get_finished_spans() if s.name == sc.SPAN_RETRY]
    assert span.attributes is not None
    assert span.attributes[sc.ATTEMPTS] == 3
    events = [dict(e.attributes or {}) for e in span.events if e.name == sc.EVENT_RETRY]
    assert [(e[sc.RETRY_REASON], e[sc.RETRY_WAIT_S], e[sc.RETRY_WAIT_SOURCE]) for e in events] == [
        ("status_5xx", 1.0, "backoff"),
        ("status_429", 2.0, "retry_after"),
    ]
    assert [e[sc.ATTEMPT] for e in events] == [1, 2]


async def test_each_retry_is_a_retry_line_joined_to_the_span_carrying_its_event(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    tgt = target("config.targets[0]", name="primary", attempts=1)
    with capture_logs() as logs:
        await run(tgt, ScriptedHandler(answer(503), answer(200)), telemetry)
    (span,) = [s for s in spans.get_finished_spans() if s.name == sc.SPAN_RETRY]
    (event,) = [dict(e.attributes or {}) for e in span.events if e.name == sc.EVENT_RETRY]
    (line,) = [e for e in logs if e["event"] == "retry"]
    assert span.context is not None
    assert (line["trace_id"], line["span_id"]) == (
        format(span.context.trace_id, "032x"),
        format(span.context.span_id, "016x"),
    )
    assert line["request_id"] == "req-1"
    assert (line["target"], line["target_path"]) == ("primary", "config.targets[0]")
    assert (event[sc.TARGET_NAME], event[sc.TARGET_PATH]) == ("primary", "config.targets[0]")
    assert (line["attempt"], line["reason"]) == (event[sc.ATTEMPT], event[sc.RETRY_REASON])
    assert line["wait_ms"] == event[sc.RETRY_WAIT_S] * 1000
