"""The OpenAI-compatible adapter: the outgoing request for every table row."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import orjson
import pytest

from relaygate.errors import GatewayError
from relaygate.exchange import Operation
from relaygate.providers.base import UpstreamRequest
from relaygate.providers.openai_compat import OpenAICompatible, parse_json_object
from relaygate.providers.registry import ProviderRegistry, default_registry
from tests.fakes import gateway_request, target

RAW = (
    b'{ "model" : "gpt-4o-mini",\n  "messages": [{"role": "user", "content": "caf\\u00e9"}],'
    b'\n  "temperature": 1.50 }'
)
PARSED = orjson.loads(RAW)


def build(
    provider: str = "openai",
    *,
    operation: Operation = Operation.CHAT,
    stream: bool = False,
    extra: dict[str, str] | None = None,
    **target_kwargs: Any,
) -> UpstreamRequest:
    """The upstream request the registered adapter of ``provider`` builds."""
    tgt = target(provider=provider, **target_kwargs)
    request = gateway_request(PARSED, raw_body=RAW, operation=operation, stream=stream)
    adapter = default_registry().get(provider)
    return adapter.build_request(request, tgt, extra or {})


@pytest.mark.parametrize(
    ("provider", "url"),
    [
        ("openai", "https://api.openai.com/v1/chat/completions"),
        ("together-ai", "https://api.together.xyz/v1/chat/completions"),
        ("groq", "https://api.groq.com/openai/v1/chat/completions"),
        ("mistral-ai", "https://api.mistral.ai/v1/chat/completions"),
        ("deepseek", "https://api.deepseek.com/v1/chat/completions"),
        ("fireworks-ai", "https://api.fireworks.ai/inference/v1/chat/completions"),
        ("openrouter", "https://openrouter.ai/api/v1/chat/completions"),
        ("perplexity-ai", "https://api.perplexity.ai/chat/completions"),
        ("x-ai", "https://api.x.ai/v1/chat/completions"),
        ("ollama", "http://127.0.0.1:11434/v1/chat/completions"),
    ],
)
def test_each_table_row_sends_chat_to_its_providers_url(provider: str, url: str) -> None:
    wire = build(provider, api_key="sk-test")
    assert (wire.method, wire.url) == ("POST", url)
    assert wire.headers["authorization"] == "Bearer sk-test"


@pytest.mark.parametrize(
    ("operation", "path"),
    [
        (Operation.CHAT, "/v1/chat/completions"),
        (Operation.TEXT_COMPLETION, "/v1/completions"),
        (Operation.EMBEDDINGS, "/v1/embeddings"),
    ],
)
def test_each_operation_has_its_openai_path(operation: Operation, path: str) -> None:
    assert build(operation=operation).url == "https://api.openai.com" + path


def test_the_api_key_goes_in_a_bearer_authorization_header() -> None:
    wire = build(api_key="sk-abc")
    assert wire.headers["authorization"] == "Bearer sk-abc"
    assert "api-key" not in wire.headers


def test_a_target_without_a_key_sends_no_authorization() -> None:
    assert "authorization" not in build().headers


def test_the_client_body_is_forwarded_byte_for_byte_without_overrides() -> None:
    assert build().content == RAW


def test_override_params_are_merged_over_the_client_body() -> None:
    overrides = MappingProxyType({"model": "llama-3.1-8b", "max_tokens": 16})
    wire = build("groq", override_params=overrides)
    assert orjson.loads(wire.content) == {**PARSED, "model": "llama-3.1-8b", "max_tokens": 16}


def test_forwarded_headers_are_sent_as_given() -> None:
    wire = build(extra={"x-team": "search", "traceparent": "00-abc-def-01"})
    assert wire.headers["x-team"] == "search"
    assert wire.headers["traceparent"] == "00-abc-def-01"


def test_the_targets_key_wins_over_a_forwarded_authorization_header() -> None:
    wire = build(api_key="sk-provider", extra={"authorization": "Bearer gw-gateway-key"})
    assert wire.headers["authorization"] == "Bearer sk-provider"


def test_custom_host_replaces_the_table_base_url() -> None:
    wire = build("custom", custom_host="http://10.1.2.3:8000/v1")
    assert wire.url == "http://10.1.2.3:8000/v1/chat/completions"


def test_a_non_streaming_request_asks_for_json() -> None:
    wire = build()
    assert wire.stream is False
    assert wire.headers["accept"] == "application/json"
    assert wire.headers["content-type"] == "application/json"


def test_a_streaming_request_asks_for_server_sent_events() -> None:
    wire = build(stream=True)
    assert wire.stream is True
    assert wire.headers["accept"] == "text/event-stream"


def test_the_target_timeout_bounds_the_gap_between_streamed_chunks() -> None:
    assert build(stream=True, request_timeout_ms=2500).idle_timeout_s == 2.5
    assert build(stream=True).idle_timeout_s is None


def test_an_operation_the_provider_does_not_serve_is_refused() -> None:
    with pytest.raises(GatewayError) as caught:
        build("perplexity-ai", operation=Operation.EMBEDDINGS)
    assert (caught.value.status, caught.value.code) == (400, "unsupported_operation")


def test_an_adapter_is_a_table_row_not_code() -> None:
    row = OpenAICompatible("acme", "https://llm.acme.test/v2")
    request = gateway_request(PARSED, raw_body=RAW)
    wire = row.build_request(request, target(provider="acme", api_key="k"), {})
    assert wire.url == "https://llm.acme.test/v2/chat/completions"
    assert wire.headers["authorization"] == "Bearer k"


def test_parse_response_returns_the_json_object() -> None:
    assert parse_json_object(b'{"id": "x"}') == {"id": "x"}


@pytest.mark.parametrize("body", [b"<html>oops</html>", b"[1, 2]", b"", b'"text"'])
def test_parse_response_refuses_anything_but_a_json_object(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_json_object(body)


def test_the_registry_refuses_an_unknown_provider_listing_known_ones() -> None:
    with pytest.raises(GatewayError) as caught:
        default_registry().get("nonesuch")
    assert (caught.value.status, caught.value.code) == (400, "unknown_provider")
    assert "azure-openai" in caught.value.message
    assert "groq" in caught.value.message


def test_a_registered_adapter_replaces_the_one_of_the_same_name() -> None:
    registry = ProviderRegistry(default_registry().names.values())
    registry.register(OpenAICompatible("openai", "http://127.0.0.1:1/v1"))
    request = gateway_request(PARSED, raw_body=RAW)
    wire = registry.get("openai").build_request(request, target(), {})
    assert wire.url == "http://127.0.0.1:1/v1/chat/completions"
