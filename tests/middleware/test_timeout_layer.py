"""The timeout layer: an attempt is cut at the tighter of its own timeout and the deadline."""

from __future__ import annotations

import asyncio

import orjson
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from relaygate.exchange import GatewayRequest, GatewayResponse
from relaygate.exporters import semconv as sc
from relaygate.middleware.timeout import TimeoutLayer
from relaygate.telemetry import Telemetry
from tests.fakes import ScriptedHandler, answer, gateway_request, target

SHORT_MS = 50
LONG_S = 60.0


async def never_answers(request: GatewayRequest) -> GatewayResponse:
    """An upstream attempt that hangs until cancelled."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_an_attempt_beyond_the_target_timeout_gets_portkeys_408(
    telemetry: Telemetry,
) -> None:
    inner = ScriptedHandler(never_answers)
    request = gateway_request(target=target(request_timeout_ms=SHORT_MS))
    response = await TimeoutLayer(telemetry)(inner)(request)
    assert response.status == 408
    assert response.failure == "timeout"
    assert response.status_as_sent is None  # the 408 is the gateway's, not the upstream's
    assert response.headers["content-type"] == "application/json"
    assert response.body is not None
    assert orjson.loads(response.body)["error"] == {
        "message": f"Request exceeded the timeout sent in the request: {SHORT_MS}ms",
        "type": "timeout_error",
        "param": None,
        "code": "request_timeout",
    }


async def test_an_attempt_beyond_the_request_deadline_gets_a_504(telemetry: Telemetry) -> None:
    inner = ScriptedHandler(never_answers)
    deadline = asyncio.get_running_loop().time() + SHORT_MS / 1000
    request = gateway_request(target=target(request_timeout_ms=60_000), deadline=deadline)
    response = await TimeoutLayer(telemetry)(inner)(request)
    assert response.status == 504
    assert response.failure == "deadline"
    assert response.body is not None
    error = orjson.loads(response.body)["error"]
    assert error["type"] == "timeout_error"
    assert error["code"] == "deadline_exceeded"


async def test_the_deadline_bounds_a_target_without_its_own_timeout(
    telemetry: Telemetry,
) -> None:
    inner = ScriptedHandler(never_answers)
    deadline = asyncio.get_running_loop().time() + SHORT_MS / 1000
    response = await TimeoutLayer(telemetry)(inner)(
        gateway_request(target=target(), deadline=deadline)
    )
    assert response.status == 504


async def test_the_target_timeout_wins_when_it_is_the_tighter_bound(
    telemetry: Telemetry,
) -> None:
    inner = ScriptedHandler(never_answers)
    deadline = asyncio.get_running_loop().time() + LONG_S
    request = gateway_request(target=target(request_timeout_ms=SHORT_MS), deadline=deadline)
    response = await TimeoutLayer(telemetry)(inner)(request)
    assert response.status == 408


async def test_an_answer_within_the_bound_passes_through_unchanged(telemetry: Telemetry) -> None:
    ok = answer(200)
    inner = ScriptedHandler(ok)
    request = gateway_request(target=target(request_timeout_ms=60_000))
    response = await TimeoutLayer(telemetry)(inner)(request)
    assert response is ok


async def test_without_any_bound_the_request_goes_inwards_untouched(telemetry: Telemetry) -> None:
    inner = ScriptedHandler(answer(200))
    request = gateway_request(target=target())
    await TimeoutLayer(telemetry)(inner)(request)
    assert inner.requests == [request]


async def test_the_deadline_is_read_against_the_injected_clock(telemetry: Telemetry) -> None:
    inner = ScriptedHandler(never_answers)
    request = gateway_request(target=target(request_timeout_ms=600_000), deadline=1000.0)
    # The injected clock says the deadline passed: the attempt gets no time at all.
    response = await TimeoutLayer(telemetry, now=lambda: 1000.5)(inner)(request)
    assert response.status == 504


async def test_a_cancellation_from_outside_passes_through_as_a_cancellation(
    telemetry: Telemetry,
) -> None:
    request = gateway_request(target=target(request_timeout_ms=60_000))
    task = asyncio.ensure_future(TimeoutLayer(telemetry)(ScriptedHandler(never_answers))(request))
    await asyncio.sleep(0)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("a client's cancellation became an answer")


async def test_the_cut_attempt_is_cancelled_not_left_running(telemetry: Telemetry) -> None:
    cancelled = asyncio.Event()

    async def hangs(request: GatewayRequest) -> GatewayResponse:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    request = gateway_request(target=target(request_timeout_ms=SHORT_MS))
    await TimeoutLayer(telemetry)(ScriptedHandler(hangs))(request)
    assert cancelled.is_set()


async def test_a_timeout_is_a_span_event_on_the_timeout_span(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    request = gateway_request(target=target("config.targets[0]", request_timeout_ms=SHORT_MS))
    await TimeoutLayer(telemetry)(ScriptedHandler(never_answers))(request)
    (span,) = [s for s in spans.get_finished_spans() if s.name == sc.SPAN_TIMEOUT]
    assert span.attributes is not None
    assert span.attributes[sc.TARGET_PATH] == "config.targets[0]"
    assert span.attributes[sc.TIMEOUT_MS] == SHORT_MS
    assert [e.name for e in span.events] == [sc.EVENT_TIMEOUT]
