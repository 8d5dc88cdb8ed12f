"""Caller values that key gateway state or are re-serialised for a vendor stay bounded."""

from __future__ import annotations

from typing import Any

import httpx

from relaygate.edge import MAX_MODEL_CHARS
from relaygate.telemetry import Telemetry
from tests.fakes import RecordingTransport
from tests.inprocess import asgi_client, gateway_app

MESSAGES = [{"role": "user", "content": "hi"}]


def config(provider: str = "openai") -> dict[str, Any]:
    return {
        "default_config": {
            "provider": provider,
            "api_key": "sk-test",
            "custom_host": "http://up.test/v1",
        }
    }


def nested(depth: int) -> str:
    """A JSON object holding arrays ``depth`` deep (written out: orjson would refuse it)."""
    return '{"a": ' + "[" * depth + "1" + "]" * depth + "}"


async def test_a_model_name_past_the_bound_is_a_400_and_reaches_no_upstream(
    telemetry: Telemetry,
) -> None:
    upstream = RecordingTransport()
    app = gateway_app(config(), telemetry, upstream)
    async with asgi_client(app) as client:
        long = await client.post(
            "/v1/chat/completions",
            json={"model": "m" * (MAX_MODEL_CHARS + 1), "messages": MESSAGES},
        )
        fits = await client.post(
            "/v1/chat/completions", json={"model": "m" * MAX_MODEL_CHARS, "messages": MESSAGES}
        )
    assert long.status_code == 400
    assert long.json()["error"]["param"] == "model"
    assert fits.status_code == 200
    assert len(upstream.requests) == 1


async def test_tool_arguments_nested_past_the_encoder_limit_are_a_400_not_a_500(
    telemetry: Telemetry,
) -> None:
    upstream = RecordingTransport()
    app = gateway_app(config("anthropic"), telemetry, upstream)
    arguments = nested(400)
    messages = [
        *MESSAGES,
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]
    async with asgi_client(app) as client:
        answer: httpx.Response = await client.post(
            "/v1/chat/completions", json={"model": "claude", "messages": messages}
        )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_value"
    assert upstream.requests == []
