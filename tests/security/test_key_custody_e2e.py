"""Through a real `relaygate serve`: no header combination sends the operator's key to a
host a caller names, and a caller's own key reaches it only when the egress policy allows."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.helpers_e2e import QUIET_LOGS, error_of
from tests.security.listener import Listener, listening
from tests.servers import RunningServer, running_gateway

OPERATOR_KEY = "sk-CANARY-operator-5e1d"
GATEWAY_KEY = "gw-e2e-key"
CALLER_KEY = "sk-caller-own-key"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    with listening() as found:
        yield found


def _server(listener: Listener, allow_private: bool) -> dict[str, object]:
    return {
        "default_config": "prod",
        "configs": {"prod": {"provider": "openai", "override_params": {"model": "gpt-4o-mini"}}},
        "providers": {"openai": {"api_key": OPERATOR_KEY}, "groq": {"api_key": OPERATOR_KEY}},
        "auth": {"api_keys": [GATEWAY_KEY]},
        "security": {"egress": {"allow_private": allow_private}},
        "telemetry": QUIET_LOGS,
    }


@pytest.fixture(scope="module", params=[True, False], ids=["private-allowed", "default-egress"])
def gateway(
    request: pytest.FixtureRequest, listener: Listener, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    config = _server(listener, allow_private=request.param)
    with running_gateway(tmp_path_factory.mktemp("custody"), config) as server:
        server.allow_private = request.param  # type: ignore[attr-defined]
        yield server


def attacks(host: str) -> dict[str, dict[str, str]]:
    return {
        "inline config": {
            "x-portkey-config": json.dumps({"provider": "openai", "custom_host": host})
        },
        "named config + header": {"x-portkey-config": "prod", "x-portkey-custom-host": host},
        "no config + header": {"x-portkey-custom-host": host},
        "provider + header": {"x-portkey-provider": "groq", "x-portkey-custom-host": host},
    }


@pytest.mark.parametrize(
    "name", ["inline config", "named config + header", "no config + header", "provider + header"]
)
def test_no_header_combination_sends_the_operators_key_to_a_callers_host(
    gateway: RunningServer, listener: Listener, name: str
) -> None:
    headers = {"authorization": f"Bearer {GATEWAY_KEY}", **attacks(listener.base_url)[name]}
    before = len(listener.received)
    answer = httpx.post(
        f"{gateway.url}/v1/chat/completions", json=BODY, headers=headers, timeout=10
    )
    assert answer.status_code == 403
    error = error_of(answer.json())
    assert error["type"] == "permission_error"
    assert error["code"] in ("key_custody", "egress_denied")
    assert OPERATOR_KEY not in answer.text
    assert len(listener.received) == before, "the caller's host was contacted"
    assert OPERATOR_KEY.encode() not in listener.everything()


def test_a_callers_own_key_reaches_its_host_only_when_egress_allows(
    gateway: RunningServer, listener: Listener
) -> None:
    config = {"provider": "openai", "api_key": CALLER_KEY, "custom_host": listener.base_url}
    headers = {"authorization": f"Bearer {GATEWAY_KEY}", "x-portkey-config": json.dumps(config)}
    before = len(listener.received)
    answer = httpx.post(
        f"{gateway.url}/v1/chat/completions", json=BODY, headers=headers, timeout=10
    )
    if gateway.allow_private:  # type: ignore[attr-defined]
        assert answer.status_code == 200, answer.text
        assert len(listener.received) == before + 1
        assert f"Bearer {CALLER_KEY}".encode() in listener.received[-1]
    else:
        assert answer.status_code == 403
        assert error_of(answer.json())["code"] == "egress_denied"
        assert "security.egress.allow_private: true" in answer.text
        assert len(listener.received) == before
    assert OPERATOR_KEY.encode() not in listener.everything()


def test_without_gateway_auth_the_rule_is_the_same(
    listener: Listener, tmp_path_factory: pytest.TempPathFactory
) -> None:
    config = _server(listener, allow_private=True)
    config["auth"] = {}
    with running_gateway(tmp_path_factory.mktemp("noauth"), config) as server:
        for headers in attacks(listener.base_url).values():
            answer = httpx.post(
                f"{server.url}/v1/chat/completions", json=BODY, headers=headers, timeout=10
            )
            assert answer.status_code == 403, answer.text
    assert OPERATOR_KEY.encode() not in listener.everything()
