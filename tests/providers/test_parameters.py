"""Unsupported OpenAI chat parameters, one table per translated provider, one mechanism:
dropped with a warning naming them (once per request, never their values), or refused with
a 400 naming them under strict OpenAI compliance (the target's setting, else Portkey's
header). Every row of every provider's table is exercised through its adapter."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from relaygate.config.model import Secret, Target
from relaygate.errors import GatewayError
from relaygate.exchange import AttemptRecord, Operation
from relaygate.providers.anthropic import PARAMETERS as ANTHROPIC
from relaygate.providers.bedrock import Bedrock
from relaygate.providers.bedrock.converse import PARAMETERS as BEDROCK
from relaygate.providers.bedrock.signing import CredentialChain
from relaygate.providers.cohere.chat import PARAMETERS as COHERE
from relaygate.providers.google.chat import PARAMETERS as GOOGLE
from relaygate.providers.handler import ProviderHandler
from relaygate.providers.parameters import STRICT_HEADER, ParameterTable
from relaygate.providers.registry import ProviderRegistry, default_registry
from tests.fakes import RecordingTransport, gateway_request, target

TABLES = {"anthropic": ANTHROPIC, "google": GOOGLE, "cohere": COHERE, "bedrock": BEDROCK}

CANARY = "canary-value-7f3a"
"""Put in every sample value that can hold a string: it must never reach a log or error."""

SAMPLES: dict[str, Any] = {
    "logit_bias": {"50256": -100},
    "top_logprobs": 2,
    "service_tier": CANARY,
    "store": True,
    "metadata": {"tag": CANARY},
    "prediction": {"type": "content", "content": CANARY},
    "modalities": ["text"],
    "audio": {"voice": CANARY, "format": "mp3"},
    "web_search_options": {"search_context_size": "low"},
    "functions": [{"name": CANARY, "parameters": {"type": "object"}}],
    "function_call": "auto",
    "frequency_penalty": 0.5,
    "presence_penalty": 0.5,
    "logprobs": True,
    "seed": 7,
    "response_format": {"type": "json_object"},
    "reasoning_effort": "low",
    "user": CANARY,
    "top_k": 5,
    "parallel_tool_calls": False,
}
"""A value for each OpenAI parameter some provider does not honour."""

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}

ROWS = [(p, name) for p, table in TABLES.items() for name in sorted(table.unsupported)]


def _target(provider: str, strict: bool | None = None) -> Target:
    options: dict[str, Any] = {}
    if provider == "bedrock":
        options = {"aws_access_key_id": Secret("AKID"), "aws_secret_access_key": Secret("s")}
    if strict is not None:
        options["strict_open_ai_compliance"] = strict
    return target(
        "config", provider, api_key="k", custom_host="http://up.test/v1",
        provider_options=MappingProxyType(options),
    )  # fmt: skip


def _registry() -> ProviderRegistry:
    registry = default_registry()
    registry.register(Bedrock(CredentialChain(lambda: (None, None))))
    return registry


def _wire(provider: str, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    tgt = _target(provider, kw.pop("strict", None))
    request = gateway_request(body, target=tgt, **kw)
    sent = _registry().get(provider).build_request(request, tgt, {}).content
    parsed: dict[str, Any] = orjson.loads(sent)
    return parsed


def test_every_sample_covers_a_documented_parameter_and_tables_are_consistent() -> None:
    for provider, table in TABLES.items():
        assert table.provider == provider
        assert table.unsupported.isdisjoint(table.handled), provider
        assert table.unsupported <= SAMPLES.keys(), provider


@pytest.mark.parametrize(("provider", "name"), ROWS)
def test_an_unsupported_parameter_is_dropped_with_a_warning_naming_it(
    provider: str, name: str
) -> None:
    with capture_logs() as logs:
        sent = _wire(provider, {**CHAT, name: SAMPLES[name]})
    assert name not in sent
    assert CANARY not in orjson.dumps(sent).decode()
    (warning,) = [e for e in logs if e["event"] == "provider_parameters_dropped"]
    assert warning["log_level"] == "warning"
    assert (warning["provider"], warning["parameters"]) == (provider, name)
    assert CANARY not in str(warning)


@pytest.mark.parametrize(("provider", "name"), ROWS)
def test_an_unsupported_parameter_is_refused_under_strict_compliance(
    provider: str, name: str
) -> None:
    with pytest.raises(GatewayError) as refused:
        _wire(provider, {**CHAT, name: SAMPLES[name]}, strict=True)
    error = refused.value
    assert (error.status, error.code, error.param) == (400, "unsupported_parameter", name)
    assert provider in str(error) and name in str(error) and CANARY not in str(error)


@pytest.mark.parametrize("provider", sorted(TABLES))
@pytest.mark.parametrize(
    ("setting", "header", "strict"),
    [(True, None, True), (None, "true", True), (False, "true", False), (None, None, False)],
)
def test_strict_is_the_target_setting_else_the_portkey_header(
    provider: str, setting: bool | None, header: str | None, strict: bool
) -> None:
    body = {**CHAT, "logit_bias": {"1": 1}}
    headers = {STRICT_HEADER: header} if header is not None else None
    if strict:
        with pytest.raises(GatewayError):
            _wire(provider, body, strict=setting, headers=headers)
    else:
        assert "logit_bias" not in _wire(provider, body, strict=setting, headers=headers)


@pytest.mark.parametrize("provider", sorted(TABLES))
def test_an_unknown_field_is_dropped_or_refused_the_same_way(provider: str) -> None:
    body = {**CHAT, "not_an_openai_field": 1}
    assert "not_an_openai_field" not in _wire(provider, body)
    with pytest.raises(GatewayError) as refused:
        _wire(provider, body, strict=True)
    assert refused.value.param == "not_an_openai_field"


@pytest.mark.parametrize("provider", sorted(TABLES))
def test_what_every_provider_honours_is_never_refused(provider: str) -> None:
    body = {
        **CHAT,
        "max_tokens": 5,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["x"],
        "stream_options": {"include_usage": True},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "tool_choice": "auto",
    }
    with capture_logs() as logs:
        _wire(provider, body, strict=True)
    assert not [e for e in logs if e["event"] == "provider_parameters_dropped"]


def test_the_warning_is_logged_once_per_request_and_provider() -> None:
    tgt = _target("google")
    request = gateway_request({**CHAT, "seed": 1, "user": "u"}, target=tgt)
    adapter = _registry().get("google")
    with capture_logs() as logs:
        adapter.build_request(request, tgt, {})
        request.ctx.attempts.append(AttemptRecord(tgt, 0, 503, "status_5xx", 0.1))
        adapter.build_request(request, tgt, {})  # the retry
    warnings = [e for e in logs if e["event"] == "provider_parameters_dropped"]
    assert [w["parameters"] for w in warnings] == ["user"]


def test_screen_names_every_dropped_field_sorted_and_refuses_the_first() -> None:
    table = ParameterTable("p", frozenset({"model"}), frozenset({"seed"}))
    body = {"model": "m", "seed": 1, "audio": {}, "store": None}
    assert table.screen(body, strict=False) == ["audio", "seed"]
    with pytest.raises(GatewayError) as refused:
        table.screen(body, strict=True)
    assert refused.value.param == "audio"


@pytest.mark.parametrize("provider", sorted(TABLES))
async def test_a_strict_refusal_is_an_openai_error_and_nothing_is_sent(provider: str) -> None:
    transport = RecordingTransport()
    handler = ProviderHandler(_registry(), transport.client())
    tgt = _target(provider, strict=True)
    response = await handler(gateway_request({**CHAT, "logit_bias": {"1": 1}}, target=tgt))
    assert response.status == 400 and response.body is not None
    error = orjson.loads(response.body)["error"]
    assert (error["code"], error["param"], error["type"]) == (
        "unsupported_parameter", "logit_bias", "invalid_request_error",
    )  # fmt: skip
    assert transport.requests == []


def test_embeddings_are_not_screened() -> None:
    tgt = _target("cohere", strict=True)
    body = {"model": "embed", "input": "hi", "user": "u"}
    request = gateway_request(body, target=tgt, operation=Operation.EMBEDDINGS)
    assert _registry().get("cohere").build_request(request, tgt, {}).url.endswith("/embed")
