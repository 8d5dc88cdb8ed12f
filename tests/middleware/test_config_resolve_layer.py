"""Config resolution: which compiled config serves a request, and every refusal it makes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from relaygate.config import Inherited, RoutingConfig, Secret, Target
from relaygate.errors import GatewayError
from relaygate.exporters import semconv as sc
from relaygate.middleware.config_resolve import ConfigResolveLayer, ConfigSources
from relaygate.providers.registry import default_registry
from relaygate.security.egress import EgressPolicy
from relaygate.telemetry import Telemetry
from tests.fakes import ScriptedHandler, answer, gateway_request

PROD = {
    "strategy": {"mode": "fallback"},
    "targets": [
        {"provider": "openai", "api_key": "sk-prod-a"},
        {"provider": "groq", "api_key": "sk-prod-b"},
    ],
}
DEFAULT = {"provider": "openai", "api_key": "sk-default"}
INLINE = {"provider": "mistral-ai", "api_key": "sk-inline"}
GATEWAY_KEY = "gw-secret-key"


LOCAL_EGRESS = EgressPolicy(allow_private=True)
"""These tests point custom hosts at private addresses on purpose."""


def resolver(
    telemetry: Telemetry,
    *,
    default: Any = DEFAULT,
    named: Mapping[str, Any] | None = None,
    inherited: Inherited | None = None,
    max_header_bytes: int = 32768,
    egress: EgressPolicy = LOCAL_EGRESS,
) -> ConfigResolveLayer:
    """A config-resolve layer over the ``prod`` named config and a default config."""
    sources = ConfigSources(
        named={"prod": PROD} if named is None else named,
        default=default,
        inherited=inherited or Inherited(),
        max_header_bytes=max_header_bytes,
        gateway_keys=frozenset({GATEWAY_KEY}),
        egress=egress,
    )
    return ConfigResolveLayer(sources, default_registry(), telemetry)


def only_target(config: RoutingConfig) -> Target:
    """The one target of a single-target config."""
    (target,) = config.targets
    return target


def refusal(layer: ConfigResolveLayer, headers: Mapping[str, str]) -> GatewayError:
    """The error ``layer`` raises for a request with ``headers``."""
    with pytest.raises(GatewayError) as caught:
        layer.resolve(headers)
    return caught.value


INLINE_HEADER = orjson.dumps(INLINE).decode()


@pytest.mark.parametrize(
    ("headers", "expected_id"),
    [
        ({"x-portkey-config": INLINE_HEADER, "x-portkey-provider": "groq"}, "inline"),
        ({"x-portkey-config": "prod", "x-portkey-provider": "groq"}, "prod"),
        ({"x-portkey-config": "  prod  "}, "prod"),
        ({"x-portkey-provider": "groq"}, "provider"),
        ({}, "default"),
    ],
    ids=["inline-beats-provider", "id-beats-provider", "id-trimmed", "provider", "default"],
)
def test_config_source_precedence(
    telemetry: Telemetry, headers: dict[str, str], expected_id: str
) -> None:
    assert resolver(telemetry).resolve(headers).id == expected_id


@pytest.mark.parametrize(
    ("headers", "supplied"),
    [
        ({"x-portkey-config": INLINE_HEADER}, True),
        ({"x-portkey-provider": "groq", "authorization": "Bearer sk-groq-live"}, True),
        ({"x-portkey-config": "prod"}, False),
        ({}, False),
    ],
    ids=["inline", "provider", "named", "default"],
)
def test_configs_a_caller_wrote_are_marked_caller_supplied(
    telemetry: Telemetry, headers: dict[str, str], supplied: bool
) -> None:
    layer = resolver(telemetry)
    assert layer.resolve(headers).caller_supplied is supplied
    # A cached compile keeps its provenance.
    assert layer.resolve(headers).caller_supplied is supplied
    assert not any(config.caller_supplied for config in layer.known_configs())


def test_an_inline_config_is_compiled_from_the_header(telemetry: Telemetry) -> None:
    target = only_target(resolver(telemetry).resolve({"x-portkey-config": INLINE_HEADER}))
    assert target.provider == "mistral-ai"
    assert target.api_key == Secret("sk-inline")


def test_a_config_id_selects_the_named_config(telemetry: Telemetry) -> None:
    config = resolver(telemetry).resolve({"x-portkey-config": "prod"})
    assert [t.provider for t in config.targets] == ["openai", "groq"]


def test_a_provider_header_takes_the_provider_key_from_bearer(telemetry: Telemetry) -> None:
    headers = {"x-portkey-provider": " Groq ", "authorization": "Bearer sk-groq-live"}
    target = only_target(resolver(telemetry).resolve(headers))
    assert target.provider == "groq"
    assert target.api_key == Secret("sk-groq-live")


def test_the_portkey_placeholder_key_is_never_a_provider_key(telemetry: Telemetry) -> None:
    headers = {"x-portkey-provider": "openai", "authorization": "Bearer OPENAI_API_KEY"}
    assert only_target(resolver(telemetry).resolve(headers)).api_key is None


def test_the_placeholder_key_leaves_the_server_default_key_in_place(
    telemetry: Telemetry,
) -> None:
    inherited = Inherited(api_keys={"openai": Secret("sk-server")})
    headers = {"x-portkey-provider": "openai", "authorization": "Bearer OPENAI_API_KEY"}
    target = only_target(resolver(telemetry, inherited=inherited).resolve(headers))
    assert target.api_key == Secret("sk-server")


def test_a_gateway_key_is_never_a_provider_key(telemetry: Telemetry) -> None:
    headers = {"x-portkey-provider": "openai", "authorization": f"Bearer {GATEWAY_KEY}"}
    assert only_target(resolver(telemetry).resolve(headers)).api_key is None


def test_a_custom_host_header_sets_the_base_url_of_targets(telemetry: Telemetry) -> None:
    own_keys = orjson.dumps(PROD).decode()
    headers = {"x-portkey-config": own_keys, "x-portkey-custom-host": "http://127.0.0.1:9/v1/"}
    config = resolver(telemetry).resolve(headers)
    assert {t.custom_host for t in config.targets} == {"http://127.0.0.1:9/v1"}


def test_a_configs_own_custom_host_beats_the_header(telemetry: Telemetry) -> None:
    inline = {"provider": "openai", "custom_host": "http://10.0.0.1/v1"}
    headers = {
        "x-portkey-config": orjson.dumps(inline).decode(),
        "x-portkey-custom-host": "http://127.0.0.1:9/v1",
    }
    assert only_target(resolver(telemetry).resolve(headers)).custom_host == "http://10.0.0.1/v1"


def test_a_request_timeout_header_sets_the_target_timeout(telemetry: Telemetry) -> None:
    headers = {"x-portkey-request-timeout": "2500"}
    assert only_target(resolver(telemetry).resolve(headers)).request_timeout_ms == 2500


def test_a_forward_headers_header_lists_lower_cased_names(telemetry: Telemetry) -> None:
    headers = {"x-portkey-forward-headers": "X-Team, x-Trace ,"}
    target = only_target(resolver(telemetry).resolve(headers))
    assert target.forward_headers == ("x-team", "x-trace")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-portkey-custom-host", "ftp://example/v1"),
        ("x-portkey-custom-host", "localhost:9000"),
        ("x-portkey-request-timeout", "soon"),
        ("x-portkey-request-timeout", "0"),
        ("x-portkey-request-timeout", "-5"),
    ],
)
def test_an_invalid_default_header_is_refused_with_400(
    telemetry: Telemetry, name: str, value: str
) -> None:
    error = refusal(resolver(telemetry), {name: value})
    assert (error.status, error.code, error.param) == (400, "invalid_header", name)


def test_an_unknown_provider_in_an_inline_config_is_refused(telemetry: Telemetry) -> None:
    header = orjson.dumps({"provider": "nonesuch"}).decode()
    error = refusal(resolver(telemetry), {"x-portkey-config": header})
    assert (error.status, error.code) == (400, "unknown_provider")
    assert "unknown provider 'nonesuch'" in error.message
    assert "openai" in error.message


def test_an_unknown_provider_header_is_refused(telemetry: Telemetry) -> None:
    error = refusal(resolver(telemetry), {"x-portkey-provider": "nonesuch"})
    assert (error.status, error.code) == (400, "unknown_provider")


def test_an_invalid_inline_config_lists_its_problems(telemetry: Telemetry) -> None:
    header = orjson.dumps({"strategy": {"mode": "fallback"}}).decode()
    error = refusal(resolver(telemetry), {"x-portkey-config": header})
    assert (error.status, error.code, error.param) == (400, "invalid_config", "x-portkey-config")
    assert "targets: required when 'strategy' is set" in error.message


def test_an_invalid_inline_config_never_echoes_its_key(telemetry: Telemetry) -> None:
    header = orjson.dumps(
        {"provider": "openai", "api_key": "sk-do-not-echo", "retry": {"attempts": 99}}
    ).decode()
    error = refusal(resolver(telemetry), {"x-portkey-config": header})
    assert "retry.attempts" in error.message
    assert "sk-do-not-echo" not in error.message


def test_inline_config_that_is_not_json_is_refused(telemetry: Telemetry) -> None:
    error = refusal(resolver(telemetry), {"x-portkey-config": "{provider: openai}"})
    assert (error.status, error.code) == (400, "invalid_config")
    assert "not valid JSON" in error.message


def test_an_oversized_config_header_is_refused_with_431(telemetry: Telemetry) -> None:
    header = orjson.dumps({**INLINE, "override_params": {"user": "x" * 200}}).decode()
    error = refusal(resolver(telemetry, max_header_bytes=100), {"x-portkey-config": header})
    assert (error.status, error.code) == (431, "config_too_large")
    assert "the limit is 100" in error.message


def test_an_unknown_config_id_is_refused_listing_known_ids(telemetry: Telemetry) -> None:
    error = refusal(resolver(telemetry), {"x-portkey-config": "staging"})
    assert (error.status, error.code) == (400, "unknown_config")
    # The inline default config is known by its id, "default", as /ready lists it.
    assert "known ids: default, prod" in error.message


def test_the_inline_default_is_reachable_by_the_id_ready_lists(telemetry: Telemetry) -> None:
    layer = resolver(telemetry)
    assert layer.config_ids() == ["default", "prod"]
    by_id = layer.resolve({"x-portkey-config": "default"})
    assert by_id is layer.resolve({})


def test_without_any_config_source_the_request_is_refused(telemetry: Telemetry) -> None:
    error = refusal(resolver(telemetry, default=None), {})
    assert (error.status, error.code) == (400, "missing_config")


def test_a_virtual_key_header_is_refused_as_unsupported(telemetry: Telemetry) -> None:
    error = refusal(resolver(telemetry), {"x-portkey-virtual-key": "vk-1"})
    assert (error.status, error.code) == (400, "unsupported_header")


def test_the_same_inline_header_reuses_the_compiled_config(telemetry: Telemetry) -> None:
    layer = resolver(telemetry)
    first = layer.resolve({"x-portkey-config": INLINE_HEADER})
    assert layer.resolve({"x-portkey-config": INLINE_HEADER}) is first


def test_the_same_provider_call_reuses_the_compiled_config(telemetry: Telemetry) -> None:
    layer = resolver(telemetry)
    headers = {"x-portkey-provider": "groq", "authorization": "Bearer sk-1"}
    assert layer.resolve(headers) is layer.resolve(dict(headers))


def test_a_named_config_is_compiled_once(telemetry: Telemetry) -> None:
    layer = resolver(telemetry)
    assert layer.resolve({"x-portkey-config": "prod"}) is layer.resolve(
        {"x-portkey-config": "prod"}
    )


def test_different_header_defaults_compile_different_configs(telemetry: Telemetry) -> None:
    layer = resolver(telemetry)
    slow = layer.resolve({"x-portkey-config": "prod", "x-portkey-request-timeout": "9000"})
    fast = layer.resolve({"x-portkey-config": "prod", "x-portkey-request-timeout": "100"})
    assert slow is not fast
    assert {t.request_timeout_ms for t in fast.targets} == {100}


def test_known_configs_are_the_named_and_default_ones(telemetry: Telemetry) -> None:
    assert sorted(c.id for c in resolver(telemetry).known_configs()) == ["default", "prod"]


async def test_the_layer_binds_the_config_to_the_request_and_its_context(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    layer = resolver(telemetry)
    inner = ScriptedHandler(answer(200))
    request = gateway_request(headers={"x-portkey-config": "prod"})
    await layer(inner)(request)
    (seen,) = inner.requests
    assert seen.config is not None
    assert seen.config.id == "prod"
    assert request.ctx.config is seen.config
    (span,) = [s for s in spans.get_finished_spans() if s.name == sc.SPAN_CONFIG]
    assert span.attributes is not None
    assert span.attributes[sc.CONFIG_ID] == "prod"


async def test_the_layer_does_not_call_inwards_when_it_refuses(telemetry: Telemetry) -> None:
    inner = ScriptedHandler()
    request = gateway_request(headers={"x-portkey-config": "staging"})
    with pytest.raises(GatewayError):
        await resolver(telemetry)(inner)(request)
    assert inner.requests == []
