"""Hashed, scoped gateway keys, the operations-endpoint key, header forwarding rules, and
`relaygate keys create`."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from relaygate.app import create_app
from relaygate.config import ConfigError, parse_server_config
from relaygate.gateway import GatewayDeps
from relaygate.security.keys import hash_key, new_key
from relaygate.telemetry import Telemetry
from tests.fakes import RecordingTransport
from tests.test_gateway_edge import BODY, CHAT, call, error_of

HOST = "http://upstream.invalid/v1"
PLAIN = "gw-plain-key"
TEAM = new_key()
NARROW = new_key()
ADMIN = "admin-key-1"


def server(**extra: Any) -> dict[str, Any]:
    return {
        "configs": {
            "prod": {"provider": "openai", "api_key": "sk-a", "custom_host": HOST},
            "cheap": {
                "provider": "groq",
                "api_key": "sk-b",
                "custom_host": HOST,
                "override_params": {"model": "llama"},
            },
        },
        "default_config": "prod",
        "auth": {
            "api_keys": [PLAIN],
            "keys": [
                {"name": "team", "hash": hash_key(TEAM)},
                {
                    "name": "narrow",
                    "hash": hash_key(NARROW),
                    "configs": ["cheap"],
                    "inline_configs": False,
                    "custom_hosts": False,
                    "providers": ["groq"],
                    "models": ["llama"],
                },
            ],
            "admin_keys": [ADMIN],
        },
        **extra,
    }


def app(telemetry: Telemetry, transport: RecordingTransport, **extra: Any) -> Starlette:
    return create_app(
        parse_server_config(server(**extra)),
        GatewayDeps(upstream=transport.client(), telemetry=telemetry),
    )


async def chat(application: Starlette, key: str, **headers: str) -> httpx.Response:
    return await call(application, json=BODY, headers={"authorization": f"Bearer {key}", **headers})


async def test_plain_and_hashed_keys_authenticate_and_others_do_not(telemetry: Telemetry) -> None:
    upstream = RecordingTransport()
    application = app(telemetry, upstream)
    assert (await chat(application, PLAIN)).status_code == 200
    assert (await chat(application, TEAM)).status_code == 200
    refused = await chat(application, hash_key(TEAM))  # the stored hash is not a key
    assert refused.status_code == 401
    assert error_of(refused)["type"] == "authentication_error"
    assert len(upstream.requests) == 2


REFUSALS = {
    "another named config": ({"x-portkey-config": "prod"}, "scope_config"),
    "the default config": ({}, "scope_config"),
    "an inline config": (
        {"x-portkey-config": json.dumps({"provider": "groq", "api_key": "sk-own"})},
        "scope_inline_config",
    ),
    "a config-less call": ({"x-portkey-provider": "groq"}, "scope_inline_config"),
}


@pytest.mark.parametrize("case", REFUSALS.values(), ids=REFUSALS.keys())
async def test_a_key_outside_its_scope_gets_403_naming_what_was_refused(
    telemetry: Telemetry, case: tuple[dict[str, str], str]
) -> None:
    headers, code = case
    upstream = RecordingTransport()
    answer = await chat(app(telemetry, upstream), NARROW, **headers)
    assert answer.status_code == 403
    error = error_of(answer)
    assert error["type"] == "permission_error" and error["code"] == code
    assert "'narrow' may not" in error["message"]
    assert upstream.requests == []


async def test_a_scoped_key_within_its_scope_is_served(telemetry: Telemetry) -> None:
    upstream = RecordingTransport()
    answer = await chat(app(telemetry, upstream), NARROW, **{"x-portkey-config": "cheap"})
    assert answer.status_code == 200
    assert len(upstream.requests) == 1


async def test_provider_model_and_custom_host_scopes(telemetry: Telemetry) -> None:
    extra = {
        "configs": {
            "prod": {"provider": "openai", "api_key": "sk-a", "custom_host": HOST},
            "cheap": {"provider": "groq", "api_key": "sk-b", "custom_host": HOST},
        }
    }
    upstream = RecordingTransport()
    application = app(telemetry, upstream, **extra)
    # "cheap" pins no model: the request's model must be within the key's models.
    answer = await chat(application, NARROW, **{"x-portkey-config": "cheap"})
    assert answer.status_code == 403 and error_of(answer)["code"] == "scope_model"
    assert upstream.requests == []


def test_a_key_scoped_to_an_unknown_config_is_refused_at_load() -> None:
    data = server()
    data["auth"]["keys"][1]["configs"] = ["nope"]
    with pytest.raises(ConfigError) as caught:
        parse_server_config(data)
    assert any(path == "auth.keys[1].configs" for path, _ in caught.value.errors)


async def test_auth_is_checked_before_the_body_is_read(telemetry: Telemetry) -> None:
    """A request without a key is refused even though its body never arrives."""
    application = app(telemetry, RecordingTransport())
    sent: list[dict[str, Any]] = []
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        raise AssertionError("the body was read before authentication")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": CHAT,
        "root_path": "",
        "headers": [(b"content-length", b"1000000"), (b"content-type", b"application/json")],
        "query_string": b"",
    }
    await application(scope, receive, send)
    assert sent[0]["status"] == 401
    assert reads == 0


@pytest.mark.parametrize("path", ["/metrics", "/status", "/status.json"])
async def test_operations_endpoints_need_the_admin_key(telemetry: Telemetry, path: str) -> None:
    application = app(telemetry, RecordingTransport())
    refused = await call(application, "GET", path)
    assert refused.status_code == 401
    assert error_of(refused)["code"] == "invalid_api_key"
    assert "auth.admin_keys" in error_of(refused)["message"]
    gateway_key = await call(application, "GET", path, headers={"authorization": f"Bearer {PLAIN}"})
    assert gateway_key.status_code == 401
    ok = await call(application, "GET", path, headers={"authorization": f"Bearer {ADMIN}"})
    assert ok.status_code == 200


async def test_admin_keys_may_be_stored_as_hashes(telemetry: Telemetry) -> None:
    data = server()
    data["auth"]["admin_keys"] = [hash_key("hashed-admin")]
    application = create_app(
        parse_server_config(data),
        GatewayDeps(upstream=RecordingTransport().client(), telemetry=telemetry),
    )
    headers = {"authorization": "Bearer hashed-admin"}
    assert (await call(application, "GET", "/metrics", headers=headers)).status_code == 200


async def test_the_model_list_needs_a_gateway_key_when_auth_is_on(telemetry: Telemetry) -> None:
    application = app(telemetry, RecordingTransport())
    assert (await call(application, "GET", "/v1/models")).status_code == 401
    for headers in ({"authorization": f"Bearer {TEAM}"}, {"x-portkey-api-key": PLAIN}):
        assert (await call(application, "GET", "/v1/models", headers=headers)).status_code == 200


@pytest.mark.parametrize("path", ["/health", "/ready"])
async def test_probes_stay_open(telemetry: Telemetry, path: str) -> None:
    assert (await call(app(telemetry, RecordingTransport()), "GET", path)).status_code == 200


@pytest.mark.parametrize(
    "name", ["content-length", "transfer-encoding", "host", "connection", "x-portkey-config"]
)
async def test_framing_and_relaygate_headers_are_never_forwarded(
    telemetry: Telemetry, name: str
) -> None:
    upstream = RecordingTransport()
    application = app(telemetry, upstream)
    inline = {"provider": "openai", "api_key": "sk-own", "forward_headers": [name]}
    answer = await chat(application, PLAIN, **{"x-portkey-config": json.dumps(inline)})
    assert answer.status_code == 400
    assert "never forwarded" in error_of(answer)["message"]
    header = await chat(
        application,
        PLAIN,
        **{"x-portkey-config": "prod", "x-portkey-forward-headers": f"x-user, {name}"},
    )
    assert header.status_code == 400
    assert upstream.requests == []
    with pytest.raises(ConfigError):
        parse_server_config({"configs": {"x": {**inline, "custom_host": HOST}}})


async def test_a_callers_config_forwards_credentials_only_when_the_operator_allows(
    telemetry: Telemetry,
) -> None:
    inline = {
        "provider": "openai",
        "api_key": "sk-own",
        "custom_host": "https://api.example.com/v1",
        "forward_headers": ["cookie"],
    }
    headers = {"x-portkey-config": json.dumps(inline), "cookie": "session=abc"}
    upstream = RecordingTransport()
    refused = await chat(app(telemetry, upstream), PLAIN, **headers)
    assert refused.status_code == 403
    assert "security.forward_sensitive_headers" in error_of(refused)["message"]
    assert upstream.requests == []
    allowed = app(telemetry, upstream, security={"forward_sensitive_headers": ["cookie"]})
    assert (await chat(allowed, PLAIN, **headers)).status_code == 200
    assert upstream.requests[-1].headers["cookie"] == "session=abc"


async def test_the_operators_own_config_may_forward_credentials(telemetry: Telemetry) -> None:
    extra = {
        "configs": {
            "prod": {
                "provider": "openai",
                "api_key": "sk-a",
                "custom_host": HOST,
                "forward_headers": ["x-api-key"],
            },
            "cheap": {"provider": "groq", "api_key": "sk-b", "custom_host": HOST},
        }
    }
    upstream = RecordingTransport()
    answer = await chat(app(telemetry, upstream, **extra), PLAIN, **{"x-api-key": "user-token"})
    assert answer.status_code == 200
    assert upstream.requests[-1].headers["x-api-key"] == "user-token"


def test_keys_create_prints_a_key_once_and_an_entry_holding_only_its_hash() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "relaygate.cli",
            "keys",
            "create",
            "--name",
            "ci",
            "--configs",
            "prod",
            "--no-inline-configs",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = [line for line in out.splitlines() if not line.startswith("#")]
    key, entry_line = lines[0], lines[1]
    entry = json.loads(entry_line.strip().removeprefix("- "))
    assert key.startswith("rg-") and key not in entry_line
    assert entry == {
        "name": "ci",
        "hash": hash_key(key),
        "configs": ["prod"],
        "inline_configs": False,
    }
    config = parse_server_config(
        {"configs": {"prod": {"provider": "openai"}}, "auth": {"keys": [entry]}}
    )
    scope = config.auth.store().lookup(key)
    assert scope is not None and scope.name == "ci" and scope.configs == {"prod"}
