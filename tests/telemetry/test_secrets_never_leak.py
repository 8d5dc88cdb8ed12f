"""A recognisable credential sent through every path never shows up in any telemetry output,
error body or response header."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import orjson
import pytest
import structlog
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import generate_latest

from relaygate.exporters.logging import processors
from relaygate.telemetry import Telemetry
from tests.fakes import RecordingTransport
from tests.inprocess import asgi_client, gateway_app

PROVIDER_KEY = "sk-LEAKCANARY-provider-7f3a"
GATEWAY_KEY = "gw-LEAKCANARY-gateway-91c2"
HEADER_KEY = "sk-LEAKCANARY-header-55d0"
CANARY = "LEAKCANARY"

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def upstream(request: httpx.Request) -> httpx.Response:
    if request.url.host == "down.test":
        return httpx.Response(503, json={"error": {"message": "down", "type": "server"}})
    if request.url.host == "garbage.test":
        return httpx.Response(200, content=b"<html>")
    return httpx.Response(
        200,
        json={
            "id": "x",
            "object": "chat.completion",
            "model": "m",
            "choices": [],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
        },
    )


def inline(*hosts: str, extra: dict[str, Any] | None = None) -> str:
    targets = [
        {
            "provider": "openai",
            "api_key": HEADER_KEY,
            "custom_host": f"http://{h}/v1",
            **(extra or {}),
        }
        for h in hosts
    ]
    return json.dumps({"strategy": {"mode": "fallback"}, "targets": targets})


VENDORS = json.dumps(
    {
        "strategy": {"mode": "fallback"},
        "targets": [
            {
                "provider": provider,
                "api_key": HEADER_KEY,
                "custom_host": f"http://{host}/v1",
                "override_params": {"model": "m"},
            }
            for provider, host in (("google", "down.test"), ("cohere", "ok.test"))
        ],
    }
)
"""An inline config over the translated providers (Gemini's key header, Cohere's bearer)."""

CASES: dict[str, tuple[int, dict[str, str]]] = {
    "success via default config": (200, {}),
    "fallback via default config": (200, {"x-portkey-config": "flaky"}),
    "error: every target down": (503, {"x-portkey-config": "down"}),
    "inline config success": (200, {"x-portkey-config": inline("ok.test")}),
    "inline config fallback": (200, {"x-portkey-config": inline("down.test", "ok.test")}),
    "inline config exhausted with garbage": (502, {"x-portkey-config": inline("garbage.test")}),
    "inline google then cohere": (200, {"x-portkey-config": VENDORS}),
    "invalid inline config": (
        400,
        {"x-portkey-config": inline("ok.test", extra={"retry": {"attempts": -1}})},
    ),
    "unknown provider inline": (
        400,
        {"x-portkey-config": json.dumps({"provider": "nope", "api_key": HEADER_KEY})},
    ),
    "config-less provider call": (
        200,
        {
            "x-portkey-provider": "openai",
            "x-portkey-custom-host": "http://ok.test/v1",
            "authorization": f"Bearer {HEADER_KEY}",
        },
    ),
    "bad json config": (400, {"x-portkey-config": "{" + HEADER_KEY}),
    "credentials in an inline custom_host": (
        400,
        {
            "x-portkey-config": json.dumps(
                {"provider": "openai", "custom_host": f"http://user:{HEADER_KEY}@ok.test/v1"}
            )
        },
    ),
    "credentials in the custom-host header": (
        400,
        {
            "x-portkey-config": inline("ok.test"),
            "x-portkey-custom-host": f"http://{HEADER_KEY}@ok.test/v1",
        },
    ),
    "custom-host header beneath a config with its own host": (
        200,
        {"x-portkey-custom-host": "http://evil.test/v1"},
    ),
    "wrong gateway key": (401, {"x-portkey-api-key": HEADER_KEY}),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_credentials_appear_nowhere_in_telemetry_errors_or_headers(
    case: str, telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    app = gateway_app(
        {
            "auth": {"api_keys": [GATEWAY_KEY]},
            "default_config": {
                "provider": "openai",
                "api_key": PROVIDER_KEY,
                "custom_host": "http://ok.test/v1",
            },
            "configs": {
                "flaky": {
                    "strategy": {"mode": "fallback"},
                    "targets": [
                        {
                            "provider": "openai",
                            "api_key": PROVIDER_KEY,
                            "custom_host": "http://down.test/v1",
                            "retry": {"attempts": 1},
                        },
                        {
                            "provider": "groq",
                            "api_key": PROVIDER_KEY,
                            "custom_host": "http://ok.test/v1",
                        },
                    ],
                },
                "down": {
                    "provider": "openai",
                    "api_key": PROVIDER_KEY,
                    "custom_host": "http://down.test/v1",
                },
            },
            "retry": {"initial_backoff_ms": 1, "max_backoff_ms": 1},
        },
        telemetry,
        RecordingTransport(upstream),
    )
    expected_status, case_headers = CASES[case]
    headers = {"x-portkey-api-key": GATEWAY_KEY, **case_headers}
    rendered = io.StringIO()
    with structlog.testing.capture_logs() as logs:
        async with asgi_client(app, "http://gw") as client:
            response = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
            metrics_text = (await client.get("/metrics")).text
    # Render every captured line through the real JSON processor chain as well.
    for entry in logs:
        event = dict(entry)
        for proc in processors("json"):
            event = proc(None, event.get("log_level", "info"), event)
        rendered.write(str(event))

    assert response.status_code == expected_status, response.text
    assert CANARY not in response.text
    assert all(CANARY not in f"{k}: {v}" for k, v in response.headers.items())
    assert CANARY not in metrics_text
    assert CANARY not in generate_latest(telemetry.metrics.registry).decode()
    assert CANARY not in rendered.getvalue()
    assert CANARY not in orjson.dumps(logs, default=str).decode()
    for span in spans.get_finished_spans():
        assert CANARY not in span.to_json(), span.name


def test_redaction_processor_masks_credential_named_fields() -> None:
    from relaygate.exporters.logging import redact

    event = redact(None, "info", {"event": "x", "api_key": "sk-1", "authorization": "Bearer y"})
    assert event == {"event": "x", "api_key": "***", "authorization": "***"}
