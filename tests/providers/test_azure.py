"""The Azure OpenAI adapter: deployment URLs, api-version and the ``api-key`` header."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import orjson
import pytest

from relaygate.config import compile_config
from relaygate.config.model import Target
from relaygate.errors import GatewayError
from relaygate.exchange import Operation
from relaygate.providers.azure import DEFAULT_API_VERSION, AzureOpenAI
from relaygate.providers.base import UpstreamRequest
from tests.fakes import gateway_request, target

RAW = b'{"messages": [{"role": "user", "content": "hi"}],  "model": "gpt-4o"}'


def azure_target(**options: Any) -> Target:
    """An azure-openai target; ``None`` options are left out."""
    custom_host = options.pop("custom_host", None)
    api_key = options.pop("api_key", "az-key")
    base = {"resource_name": "acme", "deployment_id": "gpt4o-prod", "api_version": "2024-06-01"}
    merged = {k: v for k, v in {**base, **options}.items() if v is not None}
    return target(
        "config",
        "azure-openai",
        api_key=api_key,
        custom_host=custom_host,
        provider_options=MappingProxyType(merged),
    )


def build(
    tgt: Target,
    *,
    operation: Operation = Operation.CHAT,
    stream: bool = False,
    extra: dict[str, str] | None = None,
) -> UpstreamRequest:
    """The upstream request the Azure adapter builds for ``tgt``."""
    request = gateway_request(orjson.loads(RAW), raw_body=RAW, operation=operation, stream=stream)
    return AzureOpenAI().build_request(request, tgt, extra or {})


@pytest.mark.parametrize(
    ("operation", "path"),
    [
        (Operation.CHAT, "chat/completions"),
        (Operation.TEXT_COMPLETION, "completions"),
        (Operation.EMBEDDINGS, "embeddings"),
    ],
)
def test_the_url_names_resource_deployment_operation_and_api_version(
    operation: Operation, path: str
) -> None:
    wire = build(azure_target(), operation=operation)
    assert wire.url == (
        f"https://acme.openai.azure.com/openai/deployments/gpt4o-prod/{path}?api-version=2024-06-01"
    )


def test_a_missing_api_version_uses_the_default_one() -> None:
    wire = build(azure_target(api_version=None))
    assert wire.url.endswith(f"?api-version={DEFAULT_API_VERSION}")


def test_the_key_goes_in_the_api_key_header_without_a_prefix() -> None:
    wire = build(azure_target(api_key="az-secret"))
    assert wire.headers["api-key"] == "az-secret"
    assert "authorization" not in wire.headers


def test_custom_host_replaces_everything_before_the_deployments_path() -> None:
    wire = build(azure_target(resource_name=None, custom_host="http://127.0.0.1:9/openai"))
    assert wire.url == (
        "http://127.0.0.1:9/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-06-01"
    )


def test_the_client_body_is_forwarded_byte_for_byte() -> None:
    assert build(azure_target()).content == RAW


def test_override_params_are_merged_into_the_body() -> None:
    tgt = azure_target()
    tgt = Target(
        path=tgt.path,
        provider=tgt.provider,
        api_key=tgt.api_key,
        provider_options=tgt.provider_options,
        override_params=MappingProxyType({"temperature": 0}),
    )
    assert orjson.loads(build(tgt).content) == {**orjson.loads(RAW), "temperature": 0}


def test_forwarded_headers_and_stream_settings_are_kept() -> None:
    wire = build(azure_target(), stream=True, extra={"x-team": "search"})
    assert wire.headers["x-team"] == "search"
    assert wire.headers["accept"] == "text/event-stream"
    assert wire.stream is True


@pytest.mark.parametrize(
    "options",
    [{"deployment_id": None}, {"resource_name": None}],
    ids=["no-deployment", "no-resource-or-host"],
)
def test_a_target_missing_its_azure_settings_is_refused(options: dict[str, Any]) -> None:
    with pytest.raises(GatewayError) as caught:
        build(azure_target(**options))
    assert (caught.value.status, caught.value.code) == (400, "invalid_config")
    assert "deployment_id" in caught.value.message


def test_a_compiled_config_carries_the_azure_fields_to_the_adapter() -> None:
    config = compile_config(
        {
            "provider": "azure-openai",
            "api_key": "az-from-config",
            "resourceName": "contoso",
            "deploymentId": "chat",
            "apiVersion": "2024-10-21",
        },
        config_id="inline",
    )
    wire = build(config.targets[0])
    assert wire.url == (
        "https://contoso.openai.azure.com/openai/deployments/chat/chat/completions"
        "?api-version=2024-10-21"
    )
    assert wire.headers["api-key"] == "az-from-config"


def test_the_answer_is_parsed_as_an_openai_object() -> None:
    request = gateway_request()
    assert AzureOpenAI().parse_response(request, 200, b'{"id": "a"}') == {"id": "a"}
    with pytest.raises(ValueError):
        AzureOpenAI().parse_response(request, 200, b"not json")
