"""Which targets get a Responses request as sent, and what the others are sent instead."""

from __future__ import annotations

from types import MappingProxyType

import httpx
import openai
import orjson
import pytest

from relaygate.errors import GatewayError
from relaygate.exchange import Operation
from relaygate.gateway import GatewayDeps
from relaygate.providers.azure import AzureOpenAI
from relaygate.providers.registry import default_registry
from relaygate.providers.responses.bridge import ResponsesBridge, responses_adapter
from relaygate.transport import AsyncTransport
from tests.fakes import RecordingTransport, chat_payload, gateway_request, target

BODY = {"model": "gpt-4o-mini", "input": "hi", "previous_response_id": "resp_1"}


@pytest.mark.parametrize(
    ("provider", "native"),
    [("openai", True), ("azure-openai", True), ("groq", False), ("custom", False),
     ("bedrock", False)],
)  # fmt: skip
def test_only_openai_and_azure_speak_responses_natively(provider: str, native: bool) -> None:
    adapter = responses_adapter(default_registry().get(provider))
    assert isinstance(adapter, ResponsesBridge) is not native


def test_openai_gets_the_request_as_sent_at_its_responses_path() -> None:
    tgt = target("config", "openai", api_key="sk", custom_host="http://up.test/v1")
    request = gateway_request(BODY, operation=Operation.RESPONSES, target=tgt)
    wire = responses_adapter(default_registry().get("openai")).build_request(request, tgt, {})
    assert wire.url == "http://up.test/v1/responses"
    assert orjson.loads(wire.content) == BODY


def test_azure_gets_its_v1_responses_route_with_the_deployment_as_model() -> None:
    options = {"resource_name": "acme", "deployment_id": "gpt4o-prod"}
    tgt = target("config", "azure-openai", api_key="az", provider_options=MappingProxyType(options))
    request = gateway_request(BODY, operation=Operation.RESPONSES, target=tgt)
    wire = AzureOpenAI().build_request(request, tgt, {})
    assert wire.url == "https://acme.openai.azure.com/openai/v1/responses"
    assert wire.headers["api-key"] == "az"
    assert orjson.loads(wire.content) == {**BODY, "model": "gpt4o-prod"}


def test_a_chat_only_target_gets_the_chat_request_at_its_chat_path() -> None:
    tgt = target("config", "groq", api_key="gsk", custom_host="http://up.test/v1")
    body = {"model": "llama", "input": "hi", "max_output_tokens": 5}
    request = gateway_request(body, operation=Operation.RESPONSES, target=tgt)
    wire = responses_adapter(default_registry().get("groq")).build_request(request, tgt, {})
    assert wire.url == "http://up.test/v1/chat/completions"
    assert orjson.loads(wire.content) == {
        "model": "llama",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5,
    }


@pytest.mark.parametrize(
    ("provider", "path"),
    [("anthropic", "/v1/messages"), ("google", "/v1/models/m:generateContent"),
     ("cohere", "/v1/chat")],
)  # fmt: skip
def test_other_vendors_get_the_chat_request_in_their_own_wire_format(
    provider: str, path: str
) -> None:
    tgt = target("config", provider, api_key="k", custom_host="http://up.test/v1")
    body = {"model": "m", "instructions": "Be brief.", "input": "hi"}
    request = gateway_request(body, operation=Operation.RESPONSES, target=tgt)
    wire = responses_adapter(default_registry().get(provider)).build_request(request, tgt, {})
    assert wire.url == "http://up.test" + path
    sent = orjson.loads(wire.content)
    assert "input" not in sent and "instructions" not in sent
    assert b"Be brief." in wire.content and b"hi" in wire.content


@pytest.mark.parametrize("provider", ["anthropic", "google", "cohere", "bedrock", "groq"])
def test_a_stateful_request_is_refused_by_every_target_that_does_not_speak_responses(
    provider: str,
) -> None:
    tgt = target("config", provider, api_key="k", custom_host="http://up.test/v1")
    request = gateway_request(BODY, operation=Operation.RESPONSES, target=tgt)
    with pytest.raises(GatewayError) as refused:
        responses_adapter(default_registry().get(provider)).build_request(request, tgt, {})
    assert refused.value.status == 400
    assert refused.value.param == "previous_response_id"


async def test_the_in_process_transport_serves_responses() -> None:
    upstream = RecordingTransport(httpx.Response(200, json=chat_payload("Hi from groq")))
    config = {
        "default_config": {
            "provider": "groq",
            "api_key": "gsk",
            "custom_host": "http://up.test/v1",
        },
        "telemetry": {"logs": {"level": "warning"}},
    }
    transport = AsyncTransport(config, GatewayDeps(upstream=upstream.client()))
    async with httpx.AsyncClient(transport=transport) as http:
        sdk = openai.AsyncOpenAI(base_url="http://gw/v1", api_key="x", http_client=http)
        answer = await sdk.responses.create(model="llama", input="hi")
    assert answer.output_text == "Hi from groq"
    assert upstream.requests[0].url.path == "/v1/chat/completions"
