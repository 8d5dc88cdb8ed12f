"""A failing, slow or unreachable telemetry backend costs the request nothing."""

from __future__ import annotations

import time
from collections.abc import Sequence

import httpx
import orjson
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry

from relaygate.config.server import parse_server_config
from relaygate.exchange import Operation, RequestContext
from relaygate.exporters.prometheus import GatewayMetrics
from relaygate.gateway import Gateway, GatewayDeps
from relaygate.providers.client import HttpxUpstream
from relaygate.telemetry import Telemetry

CHAT = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})


class BrokenExporter(SpanExporter):
    """Raises on every export after a long stall, as a dead collector behind a proxy would."""

    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        time.sleep(0.2)
        raise ConnectionError("collector down")

    def shutdown(self) -> None:
        return None


def ok(_: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"id": "1", "object": "chat.completion", "choices": []})


def gateway(telemetry: Telemetry) -> Gateway:
    server = parse_server_config(
        {"default_config": {"provider": "openai", "custom_host": "http://u.test/v1"}}
    )
    upstream = HttpxUpstream(httpx.AsyncClient(transport=httpx.MockTransport(ok)))
    return Gateway(server, GatewayDeps(upstream=upstream, telemetry=telemetry))


async def test_a_failing_span_exporter_does_not_fail_requests() -> None:
    exporter = BrokenExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=10))
    tel = Telemetry(tracer=provider.get_tracer("t"), metrics=GatewayMetrics(CollectorRegistry()))
    gw = gateway(tel)
    statuses = [(await gw.handle(Operation.CHAT, CHAT, {})).status for _ in range(20)]
    assert statuses == [200] * 20
    provider.shutdown()
    assert exporter.calls >= 1


async def test_a_raising_request_hook_does_not_fail_requests() -> None:
    def hook(ctx: RequestContext, status: int) -> None:
        raise RuntimeError("status board broke")

    tel = Telemetry(metrics=GatewayMetrics(CollectorRegistry()), request_hooks=[hook])
    response = await gateway(tel).handle(Operation.CHAT, CHAT, {})
    assert response.status == 200
    assert tel.errors >= 1
    exported = tel.metrics.registry.get_sample_value("relaygate_telemetry_errors_total")
    assert exported == tel.errors


async def test_a_raising_logger_does_not_fail_requests() -> None:
    class Exploding:
        def __getattr__(self, name: str) -> object:
            def fail(*args: object, **kwargs: object) -> None:
                raise OSError("log sink full")

            return fail

    tel = Telemetry(metrics=GatewayMetrics(CollectorRegistry()), logger=Exploding())
    response = await gateway(tel).handle(Operation.CHAT, CHAT, {})
    assert response.status == 200
    assert tel.errors >= 1
    assert tel.metrics.registry.get_sample_value("relaygate_requests_in_flight") == 0
    exported = tel.metrics.registry.get_sample_value("relaygate_telemetry_errors_total")
    assert exported == tel.errors


def test_swallowed_errors_are_counted_even_when_the_metrics_themselves_are_broken() -> None:
    """``errors`` keeps counting when the exported counter cannot be reached."""
    tel = Telemetry(metrics=GatewayMetrics(CollectorRegistry()))
    tel.guard(lambda: 1 / 0)
    assert tel.metrics.registry.get_sample_value("relaygate_telemetry_errors_total") == 1
    tel.metrics = object()  # type: ignore[assignment]
    tel.guard(lambda: 1 / 0)
    assert tel.errors == 2
