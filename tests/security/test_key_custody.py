"""Key custody: the operator's provider keys go only where the operator said, whatever a
caller sends; a caller's own key may go to a caller's host (within the egress policy)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from relaygate.config import ConfigError, parse_server_config
from relaygate.errors import GatewayError
from relaygate.gateway import Gateway, GatewayDeps
from relaygate.security.keys import UNSCOPED, KeyScope
from relaygate.telemetry import Telemetry

OPERATOR_KEY = "sk-operator-key"
CALLER_KEY = "sk-callers-own"
CALLER_HOST = "http://127.0.0.1:18101/v1"
OPERATOR_HOST = "http://127.0.0.1:9301/v1"


def gateway(telemetry: Telemetry, **sections: Any) -> Gateway:
    """A gateway whose operator holds an openai and an azure key, private egress allowed
    (so only key custody decides)."""
    server = {
        "default_config": "prod",
        "configs": {
            "prod": {"provider": "openai", "override_params": {"model": "gpt-4o-mini"}},
            "pinned": {"provider": "openai", "custom_host": OPERATOR_HOST},
        },
        "providers": {
            "openai": {"api_key": OPERATOR_KEY},
            "azure-openai": {"api_key": OPERATOR_KEY},
        },
        "security": {"egress": {"allow_private": True}},
        **sections,
    }
    return Gateway(parse_server_config(server), GatewayDeps(telemetry=telemetry))


def resolve(gw: Gateway, headers: dict[str, str], scope: KeyScope = UNSCOPED) -> Any:
    return gw.configs.resolve(headers, scope)


def refusal(gw: Gateway, headers: dict[str, str]) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        resolve(gw, headers)
    return caught.value


LEAKS = {
    "inline config naming a host, no key": {
        "x-portkey-config": json.dumps({"provider": "openai", "custom_host": CALLER_HOST})
    },
    "named config + custom-host header": {
        "x-portkey-config": "prod",
        "x-portkey-custom-host": CALLER_HOST,
    },
    "no config header + custom-host header": {"x-portkey-custom-host": CALLER_HOST},
    "provider header + custom-host header": {
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": CALLER_HOST,
    },
    "inline config + custom-host header": {
        "x-portkey-config": json.dumps({"provider": "openai"}),
        "x-portkey-custom-host": CALLER_HOST,
    },
    "inline fallback with one leaking target": {
        "x-portkey-config": json.dumps(
            {
                "strategy": {"mode": "fallback"},
                "targets": [
                    {"provider": "openai", "api_key": CALLER_KEY, "custom_host": CALLER_HOST},
                    {"provider": "openai", "custom_host": CALLER_HOST},
                ],
            }
        )
    },
    "azure resource chosen by the caller": {
        "x-portkey-config": json.dumps(
            {"provider": "azure-openai", "resource_name": "attacker", "deployment_id": "d"}
        )
    },
}


@pytest.mark.parametrize("headers", LEAKS.values(), ids=LEAKS.keys())
def test_an_operator_key_bound_for_a_callers_host_is_refused(
    telemetry: Telemetry, headers: dict[str, str]
) -> None:
    gw = gateway(telemetry)
    err = refusal(gw, headers)
    assert err.status == 403
    assert err.code == "key_custody"
    assert "operator's" in err.message and "own api_key" in err.message
    assert OPERATOR_KEY not in err.message


def test_the_rule_holds_even_with_every_destination_allowed(telemetry: Telemetry) -> None:
    gw = gateway(telemetry, security={"egress": {"allow_private": True, "allow_hosts": []}})
    assert refusal(gw, {"x-portkey-custom-host": CALLER_HOST}).code == "key_custody"


ALLOWED = {
    "caller's own key to the caller's host": {
        "x-portkey-config": json.dumps(
            {"provider": "openai", "api_key": CALLER_KEY, "custom_host": CALLER_HOST}
        )
    },
    "config-less call with the caller's bearer key": {
        "x-portkey-provider": "openai",
        "authorization": f"Bearer {CALLER_KEY}",
        "x-portkey-custom-host": CALLER_HOST,
    },
    "inline config using the operator's key at the provider's own URL": {
        "x-portkey-config": json.dumps({"provider": "openai"})
    },
    "named config with the operator's own custom_host": {"x-portkey-config": "pinned"},
}


@pytest.mark.parametrize("headers", ALLOWED.values(), ids=ALLOWED.keys())
def test_what_custody_allows(telemetry: Telemetry, headers: dict[str, str]) -> None:
    config = resolve(gateway(telemetry), headers)
    assert config.targets


def test_a_callers_key_never_inherits_the_right_to_the_operators_key(
    telemetry: Telemetry,
) -> None:
    """A caller's key on one target does not make its sibling's operator key movable."""
    headers = LEAKS["inline fallback with one leaking target"]
    err = refusal(gateway(telemetry), headers)
    assert "config.targets[1]" in err.message


def test_the_custom_host_header_no_longer_overrides_the_operators_provider_host(
    telemetry: Telemetry,
) -> None:
    gw = gateway(
        telemetry, providers={"openai": {"api_key": OPERATOR_KEY, "custom_host": OPERATOR_HOST}}
    )
    assert refusal(gw, {"x-portkey-custom-host": CALLER_HOST}).code == "key_custody"
    (target,) = resolve(gw, {"x-portkey-provider": "openai"}).targets
    assert target.custom_host == OPERATOR_HOST


@pytest.mark.parametrize(
    "url",
    [
        "http://user:sk-secret@127.0.0.1/v1",
        "http://sk-secret@127.0.0.1/v1",
        "http://127.0.0.1/v1/admin/delete?x=",
        "http://127.0.0.1/v1#frag",
        "http://127.0.0.1/v1 extra",
        "ftp://127.0.0.1/v1",
    ],
)
def test_the_custom_host_header_is_validated_like_the_config_field(
    telemetry: Telemetry, url: str
) -> None:
    inline = json.dumps({"provider": "openai", "api_key": CALLER_KEY})
    err = refusal(gateway(telemetry), {"x-portkey-config": inline, "x-portkey-custom-host": url})
    assert err.status == 400 and err.param == "x-portkey-custom-host"
    assert "sk-secret" not in err.message
    config = json.dumps({"provider": "openai", "api_key": CALLER_KEY, "custom_host": url})
    err = refusal(gateway(telemetry), {"x-portkey-config": config})
    assert err.status == 400 and "sk-secret" not in err.message


def test_url_credentials_in_the_server_config_are_refused_at_load() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_server_config(
            {"providers": {"openai": {"custom_host": "https://u:sk-secret@api.example.com/v1"}}}
        )
    text = str(caught.value.errors)
    assert "credentials" in text and "sk-secret" not in text


def test_a_caller_host_resolving_to_a_private_address_is_refused_by_default(
    telemetry: Telemetry,
) -> None:
    gw = gateway(telemetry, security={})
    config = json.dumps({"provider": "openai", "api_key": CALLER_KEY, "custom_host": CALLER_HOST})
    err = refusal(gw, {"x-portkey-config": config})
    assert err.status == 403 and err.code == "egress_denied"
    assert "security.egress.allow_private: true" in err.message
