"""`/metrics` in Prometheus and OpenMetrics formats, bounded labels, and trace exemplars."""

from __future__ import annotations

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from relaygate.exporters.prometheus import GatewayMetrics
from relaygate.telemetry import Telemetry
from tests.fakes import RecordingTransport
from tests.inprocess import asgi_client, gateway_app


def upstream(request: httpx.Request) -> httpx.Response:
    if request.url.host == "down.test":
        return httpx.Response(503, json={"error": {"message": "down"}})
    return httpx.Response(200, json={"id": "1", "object": "chat.completion", "choices": []})


def app(telemetry: Telemetry, models: list[str] | None = None) -> httpx.AsyncClient:
    if models:
        telemetry.metrics = GatewayMetrics(CollectorRegistry(), models=models)
    gw = gateway_app(
        {
            "default_config": {
                "strategy": {"mode": "fallback"},
                "targets": [
                    {"name": "primary", "provider": "openai", "custom_host": "http://down.test/v1"},
                    {"name": "backup", "provider": "openai", "custom_host": "http://up.test/v1"},
                ],
            }
        },
        telemetry,
        RecordingTransport(upstream),
    )
    return asgi_client(gw, "http://gw")


async def chat(client: httpx.AsyncClient, model: str) -> None:
    response = await client.post("/v1/chat/completions", json={"model": model, "messages": []})
    assert response.status_code == 200


async def test_unknown_model_names_do_not_create_new_series(telemetry: Telemetry) -> None:
    async with app(telemetry, models=["gpt-4o"]) as client:
        for i in range(20):
            await chat(client, f"attacker-model-{i}")
        await chat(client, "gpt-4o")
        text = (await client.get("/metrics")).text
    models = {
        sample.labels["model"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "model" in sample.labels
    }
    assert models == {"other", "gpt-4o"}


async def test_prometheus_text_format_lists_every_relaygate_family(telemetry: Telemetry) -> None:
    async with app(telemetry) as client:
        await chat(client, "m")
        response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(response.text)}
    assert {
        "relaygate_requests",
        "relaygate_upstream_attempts",
        "relaygate_fallbacks",
        "relaygate_upstream_duration_seconds",
        "relaygate_gateway_overhead_seconds",
        "gen_ai_client_operation_duration_seconds",
        "relaygate_requests_in_flight",
    } <= names


async def test_openmetrics_carries_trace_exemplars_on_latency_and_fallbacks(
    telemetry: Telemetry,
) -> None:
    async with app(telemetry) as client:
        await chat(client, "m")
        response = await client.get(
            "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
        )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    lines = response.text.splitlines()
    fallback = [line for line in lines if line.startswith("relaygate_fallbacks_total{")]
    assert fallback and all("# {trace_id=" in line for line in fallback)
    latency = [
        line
        for line in lines
        if line.startswith("relaygate_request_duration_seconds_bucket") and "# {" in line
    ]
    assert latency, "a latency bucket carries an exemplar"
