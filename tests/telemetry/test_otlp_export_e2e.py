"""The real `relaygate serve` process exports OTLP/HTTP traces a receiver can decode."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import MockFactory
from tests.servers import running_gateway, serve_in_thread


def receiver(store: list[dict[str, Any]]) -> Starlette:
    """An OTLP/HTTP trace receiver decoding protobuf payloads into plain dicts: name, kind,
    ids (hex; ``parent_span_id`` empty for a root), attributes, events, status (OTLP code:
    0 unset, 1 ok, 2 error, and message) and start and end times (ns)."""

    async def traces(request: Request) -> Response:
        payload = ExportTraceServiceRequest()
        payload.ParseFromString(await request.body())
        for resource_spans in payload.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}.get(
                "service.name"
            )
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    attrs = {}
                    for a in span.attributes:
                        value = a.value
                        attrs[a.key] = getattr(value, value.WhichOneof("value") or "string_value")
                    store.append(
                        {
                            "service": service,
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "kind": span.kind,
                            "attributes": attrs,
                            "events": [e.name for e in span.events],
                            "event_attrs": [
                                {a.key: a.value.string_value for a in e.attributes}
                                for e in span.events
                            ],
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "status_code": span.status.code,
                            "status_message": span.status.message,
                            "start_ns": span.start_time_unix_nano,
                            "end_ns": span.end_time_unix_nano,
                        }
                    )
        return Response(b"", media_type="application/x-protobuf")

    return Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])


def otlp_env(endpoint: str) -> dict[str, str]:
    """Environment making `relaygate serve` export its spans to the OTLP/HTTP receiver at
    ``endpoint`` in batches sent every 100 ms."""
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


def test_fallback_request_exports_one_trace_naming_both_targets(
    tmp_path: Path, mock_upstream: MockFactory
) -> None:
    down = mock_upstream(name="down", error_rate=1.0, error_status=503)
    healthy = mock_upstream(name="healthy")
    store: list[dict[str, Any]] = []
    config = {
        "default_config": {
            "strategy": {"mode": "fallback"},
            "targets": [
                {
                    "name": "primary",
                    "provider": "openai",
                    "api_key": "sk-a",
                    "custom_host": f"{down.url}/v1",
                },
                {
                    "name": "backup",
                    "provider": "groq",
                    "api_key": "sk-b",
                    "custom_host": f"{healthy.url}/v1",
                },
            ],
        },
        "telemetry": {"service_name": "relaygate-e2e", "traces": {"detail": "full"}},
    }
    with serve_in_thread(receiver(store)) as collector:
        env = otlp_env(collector.url)
        with running_gateway(tmp_path, config, env) as gw:
            response = httpx.post(
                f"{gw.url}/v1/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                timeout=30,
            )
            assert response.status_code == 200
            forwarded = httpx.get(f"{healthy.url}/_mock/requests", timeout=10).json()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if any(s["kind"] == 2 for s in store):  # SPAN_KIND_SERVER
                    break
                time.sleep(0.1)
    server_spans = [s for s in store if s["kind"] == 2]
    assert len(server_spans) == 1
    trace_id = server_spans[0]["trace_id"]
    in_trace = [s for s in store if s["trace_id"] == trace_id]
    assert all(s["service"] == "relaygate-e2e" for s in in_trace)
    attempts = [s for s in in_trace if s["kind"] == 3]  # SPAN_KIND_CLIENT
    assert [s["attributes"]["relaygate.target.name"] for s in attempts] == ["primary", "backup"]
    failed, served = attempts
    assert failed["attributes"]["error.type"] == "503"
    assert failed["attributes"]["http.response.status_code"] == 503
    assert served["attributes"]["gen_ai.provider.name"] == "groq"
    assert "error.type" not in served["attributes"]
    fallback = [
        attrs
        for s in in_trace
        for name, attrs in zip(s["events"], s["event_attrs"], strict=True)
        if name == "relaygate.fallback"
    ]
    assert fallback == [
        {
            "relaygate.fallback.from.path": "config.targets[0]",
            "relaygate.fallback.from.name": "primary",
            "relaygate.fallback.to.path": "config.targets[1]",
            "relaygate.fallback.to.name": "backup",
            "relaygate.fallback.reason": "status_5xx",
        }
    ]
    traceparent = forwarded[-1]["headers"]["traceparent"]
    assert traceparent.split("-")[1] == trace_id
    assert server_spans[0]["attributes"]["relaygate.route"] == (
        "config.targets[0]:503>config.targets[1]:200"
    )
