"""The server config file (relaygate.config.server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from relaygate.cli import main
from relaygate.config import (
    ConfigError,
    Secret,
    ServerConfig,
    Strategy,
    explain,
    load_server_config,
    parse_server_config,
)
from relaygate.config.compile import compile_server
from relaygate.providers.registry import default_registry

SECRET = "sk-live-DO-NOT-LEAK-1234567890"
ENV = {"OPENAI_API_KEY": SECRET, "RELAYGATE_API_KEY": "rg-key", "MOCK_PORT": "9001"}

FULL_YAML = """
listen: {host: 0.0.0.0, port: 8080}
default_config: prod
configs:
  prod:
    strategy: {mode: fallback}
    targets:
      - provider: openai
        override_params: {model: gpt-4o-mini}
        retry: {attempts: 2}
      - provider: mock
        custom_host: "http://127.0.0.1:${MOCK_PORT}/v1"
providers:
  openai: {api_key: "${OPENAI_API_KEY}"}
  Mock: {custom_host: "http://localhost:${MOCK_PORT}/v1/"}
auth: {api_keys: ["${RELAYGATE_API_KEY}"]}
limits: {max_body_bytes: 1024, max_retry_attempts: 3}
retry: {initial_backoff_ms: 100, max_backoff_ms: 1000, multiplier: 3, jitter: 0}
telemetry:
  service_name: gw
  traces: {exporter: otlp, endpoint: "http://collector:4318", sample_ratio: 0.5, detail: attempts}
  metrics: {models: [gpt-4o-mini]}
  logs: {level: DEBUG, format: json}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str, name: str = "relaygate.yaml", **env: str) -> ServerConfig:
    return load_server_config(write(tmp_path, name, text), env={**ENV, **env})


def load_errors(tmp_path: Path, data: Any, **env: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, json.dumps(data), "relaygate.json", **env)
    return str(info.value).splitlines()


# --- loading -------------------------------------------------------------------------------


def test_yaml_file_loads_with_env_references_expanded(tmp_path: Path) -> None:
    config = load_text(tmp_path, FULL_YAML)
    assert (config.listen.host, config.listen.port) == ("0.0.0.0", 8080)
    assert config.providers["openai"].api_key is not None
    assert config.providers["openai"].api_key.get_secret_value() == SECRET
    assert [k.get_secret_value() for k in config.auth.api_keys] == ["rg-key"]
    assert (config.limits.max_body_bytes, config.limits.max_retry_attempts) == (1024, 3)
    assert config.limits.request_deadline_ms == 300_000
    assert (config.retry.multiplier, config.retry.jitter) == (3.0, 0.0)
    assert config.telemetry.traces.exporter == "otlp"
    assert config.telemetry.traces.detail == "attempts"
    assert config.telemetry.metrics.models == ["gpt-4o-mini"]
    assert (config.telemetry.logs.level, config.telemetry.logs.format) == ("debug", "json")


def test_json_file_loads_like_yaml(tmp_path: Path) -> None:
    data = yaml.safe_load(FULL_YAML)
    from_json = load_text(tmp_path, json.dumps(data), "relaygate.json")
    assert from_json == load_text(tmp_path, FULL_YAML)


@pytest.mark.parametrize(
    ("name", "text"),
    [("relaygate.conf", '{"listen": {"port": 1234}}'), ("relaygate", "listen:\n  port: 1234\n")],
    ids=["json-content", "yaml-content"],
)
def test_file_without_known_extension_is_tried_as_json_then_yaml(
    tmp_path: Path, name: str, text: str
) -> None:
    assert load_text(tmp_path, text, name).listen.port == 1234


def test_empty_file_gives_all_defaults(tmp_path: Path) -> None:
    assert load_text(tmp_path, "") == ServerConfig()


def test_defaults_match_the_documented_values() -> None:
    config = ServerConfig()
    assert (config.listen.host, config.listen.port) == ("127.0.0.1", 8787)
    assert config.limits.max_body_bytes == 10 * 1024 * 1024
    assert config.limits.max_config_header_bytes == 32 * 1024
    assert (config.limits.request_deadline_ms, config.limits.max_retry_attempts) == (300_000, 5)
    assert (config.retry.initial_backoff_ms, config.retry.max_backoff_ms) == (500, 10_000)
    assert (config.retry.multiplier, config.retry.jitter) == (2.0, 0.2)
    assert config.retry.max_retry_after_ms == 60_000
    assert config.telemetry.service_name == "relaygate"
    assert config.telemetry.traces.exporter == "none"
    assert config.auth.api_keys == []
    assert config.compiled_default() is None
    assert config.compiled_configs() == {}


def test_env_values_are_coerced_to_numbers(tmp_path: Path) -> None:
    config = load_text(tmp_path, "listen: {port: '${PORT}'}", PORT="9999")
    assert config.listen.port == 9999


# --- compiled configs ----------------------------------------------------------------------


def test_named_configs_compile_with_their_id_and_provider_defaults(tmp_path: Path) -> None:
    compiled = load_text(tmp_path, FULL_YAML).compiled_configs()
    prod = compiled["prod"]
    assert prod.id == "prod"
    openai, mock = prod.targets
    assert openai.api_key == Secret(SECRET)
    assert openai.retry.attempts == 2
    assert mock.custom_host == "http://127.0.0.1:9001/v1"


def test_provider_default_host_applies_when_target_sets_none(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        "configs: {c: {provider: mock}}\nproviders: {mock: {custom_host: 'http://h:1/v1/'}}",
    )
    assert config.compiled_configs()["c"].targets[0].custom_host == "http://h:1/v1"


def test_inherited_exposes_provider_defaults(tmp_path: Path) -> None:
    inherited = load_text(tmp_path, FULL_YAML).inherited()
    assert dict(inherited.api_keys) == {"openai": Secret(SECRET)}
    assert dict(inherited.custom_hosts) == {"mock": "http://localhost:9001/v1"}


def test_empty_provider_api_key_means_no_default_key(tmp_path: Path) -> None:
    config = load_text(tmp_path, "providers: {openai: {api_key: '${UNSET:-}'}}")
    assert dict(config.inherited().api_keys) == {}


@pytest.mark.parametrize(
    ("default", "expected_id", "expected_provider"),
    [
        pytest.param("prod", "prod", "openai", id="by-id"),
        pytest.param({"provider": "groq"}, "default", "groq", id="inline"),
    ],
)
def test_default_config_compiles_by_id_or_inline(
    tmp_path: Path, default: Any, expected_id: str, expected_provider: str
) -> None:
    data = {"default_config": default, "configs": {"prod": {"provider": "openai"}}}
    compiled = load_text(tmp_path, json.dumps(data), "c.json").compiled_default()
    assert compiled is not None
    assert (compiled.id, compiled.targets[0].provider) == (expected_id, expected_provider)


def test_default_config_naming_an_unknown_id_fails_at_load(tmp_path: Path) -> None:
    data = {"default_config": "nope", "configs": {"prod": {"provider": "a"}}}
    assert load_errors(tmp_path, data) == ["default_config: no config named 'nope' (configs: prod)"]


def test_default_config_id_without_any_configs_fails_at_load(tmp_path: Path) -> None:
    assert load_errors(tmp_path, {"default_config": "prod"}) == [
        "default_config: no config named 'prod' (configs: none defined)"
    ]


def test_compiled_configs_report_ignored_fields_with_their_path(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        "configs: {c: {provider: a, cache: {mode: semantic}},"
        " d: {provider: a, cache: {mode: simple}}}",
    )
    warnings: list[str] = []
    compiled = config.compiled_configs(warnings=warnings)
    assert warnings == [
        "configs.c.cache: ignored (relaygate caches in simple mode only: {mode: simple, max_age})"
    ]
    assert compiled["d"].cache is not None and compiled["c"].cache is None


def test_strategy_root_of_named_config_keeps_its_mode(tmp_path: Path) -> None:
    root = load_text(tmp_path, FULL_YAML).compiled_configs()["prod"].root
    assert isinstance(root, Strategy) and root.mode == "fallback"


# --- load errors ---------------------------------------------------------------------------


def _two_targets(second: dict[str, Any]) -> dict[str, Any]:
    return {"strategy": {"mode": "fallback"}, "targets": [{"provider": "a"}, second]}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            {"configs": {"prod": _two_targets({"provider": "b", "retry": {"attempts": -1}})}},
            ["configs.prod.targets[1].retry.attempts: must be >= 0"],
            id="embedded-config-field",
        ),
        pytest.param(
            {"configs": {"prod": _two_targets({"provider": "b", "promt": 1})}},
            ["configs.prod.targets[1].promt: unknown field"],
            id="embedded-config-unknown-field",
        ),
        pytest.param(
            {"configs": {"prod": {"targets": [{"provider": "a"}]}}},
            ["configs.prod.strategy: required when 'targets' is set"],
            id="embedded-config-cross-field-rule",
        ),
        pytest.param(
            {
                "configs": {
                    "p": {
                        "strategy": {
                            "mode": "conditional",
                            "conditions": [{"query": {}, "then": "x"}],
                        },
                        "targets": [{"provider": "a", "name": "a"}],
                    }
                }
            },
            ["configs.p.strategy.conditions[0].then: no target named 'x' (names: a)"],
            id="embedded-conditional-then",
        ),
        pytest.param(
            {"default_config": {"provider": "a", "request_timeout": -5}},
            ["default_config.request_timeout: must be > 0"],
            id="inline-default-config",
        ),
        pytest.param(
            {"default_config": {"targets": [{"provider": "a"}]}},
            ["default_config.strategy: required when 'targets' is set"],
            id="inline-default-config-cross-field-rule",
        ),
        pytest.param({"default_config": 5}, ["default_config: must be an object"], id="default-5"),
        pytest.param({"configs": {"c": "x"}}, ["configs.c: must be an object"], id="config-str"),
        pytest.param({"listen": {"hots": "x"}}, ["listen.hots: unknown field"], id="unknown-key"),
        pytest.param({"listen": {"port": 70000}}, ["listen.port: must be <= 65535"], id="port"),
        pytest.param(
            {"retry": {"jitter": 1.5}}, ["retry.jitter: must be <= 1"], id="jitter-over-one"
        ),
        pytest.param(
            {"retry": {"initial_backoff_ms": 5000, "max_backoff_ms": 10}},
            ["retry: max_backoff_ms must be >= initial_backoff_ms"],
            id="backoff-bounds",
        ),
        pytest.param(
            {"telemetry": {"traces": {"exporter": "jaeger"}}},
            ["telemetry.traces.exporter: must be one of 'none', 'otlp' or 'console'"],
            id="trace-exporter",
        ),
        pytest.param(
            {"auth": {"api_keys": ["${UNSET:-}"]}},
            ["auth.api_keys: keys must not be empty"],
            id="empty-gateway-key",
        ),
        pytest.param(
            {"providers": {"openai": {"api_key": "${OPENAI_KEY_TYPO}"}}},
            ["providers.openai.api_key: environment variable OPENAI_KEY_TYPO is not set"],
            id="missing-env-var",
        ),
        pytest.param(
            {"listen": {"port": "${PORT}"}},
            ["listen.port: environment variable PORT is not set"],
            id="missing-env-var-not-reported-twice",
        ),
        pytest.param([1, 2], ["(root): must be a mapping of settings"], id="root-not-mapping"),
    ],
)
def test_load_error_reports_path_in_the_file(
    tmp_path: Path, data: Any, expected: list[str]
) -> None:
    assert load_errors(tmp_path, data) == expected


def test_load_reports_every_problem_of_the_file_at_once(tmp_path: Path) -> None:
    data = {
        "listen": {"port": -1},
        "configs": {
            "a": {"provider": "x", "retry": {"attempts": 99}},
            "b": _two_targets({"provider": "y", "virtual_key": "vk"}),
        },
        "providers": {"openai": {"api_key": "${NOPE}"}},
    }
    assert load_errors(tmp_path, data) == [
        "configs.a.retry.attempts: must be <= 10",
        "configs.b.targets[1].virtual_key: not supported by relaygate",
        "listen.port: must be >= 0",
        "providers.openai.api_key: environment variable NOPE is not set",
    ]


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "c.yaml",
            "listen: [1\n",
            "(root): invalid YAML: expected ',' or ']', but got '<stream end>' at line 2 column 1",
        ),
        ("c.json", '{"listen": ', "(root): invalid JSON: Expecting value at line 1 column 12"),
    ],
    ids=["yaml", "json"],
)
def test_unparsable_file_is_a_root_error(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text, name)
    assert str(info.value) == expected


def test_missing_file_is_a_root_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_server_config(tmp_path / "absent.yaml", env={})
    assert info.value.errors[0][0] == "(root)"
    assert "cannot read" in info.value.errors[0][1]


# --- secrets -------------------------------------------------------------------------------


def test_server_config_repr_masks_secrets(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        FULL_YAML.replace(
            "configs:\n", "configs:\n  other: {provider: openai, api_key: '${OPENAI_API_KEY}'}\n"
        ),
    )
    assert SECRET not in repr(config)
    assert SECRET not in str(config)
    assert "rg-key" not in repr(config)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"providers": {"openai": {"api_key": ["${OPENAI_API_KEY}"]}}}, id="provider"),
        pytest.param({"providers": {"openai": {"apikey": "${OPENAI_API_KEY}"}}}, id="misspelled"),
        pytest.param({"listen": {"port": "${OPENAI_API_KEY}"}}, id="in-port"),
        pytest.param(
            {"configs": {"c": {"provider": "a", "api_key": "${OPENAI_API_KEY}", "weight": -1}}},
            id="config-sibling",
        ),
        pytest.param(
            {"configs": {"c": {"provider": "a", "custom_host": "${OPENAI_API_KEY}"}}},
            id="config-custom-host",
        ),
        pytest.param({"auth": {"api_keys": "${OPENAI_API_KEY}"}}, id="auth-keys-not-list"),
    ],
)
def test_load_errors_never_contain_secret_values(tmp_path: Path, data: Any) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, json.dumps(data), "c.json")
    assert SECRET not in str(info.value)
    assert SECRET not in explain(info.value)


# --- explain -------------------------------------------------------------------------------


def test_explain_lists_each_problem_with_hints() -> None:
    error = ConfigError(
        [
            ("configs.prod.targets[0].virtual_key", "not supported by relaygate"),
            ("configs.prod.targets[0].provder", "unknown field"),
            ("listen.port", "must be >= 0"),
            ("providers.openai.api_key", "environment variable OPENAI_API_KEY is not set"),
        ]
    )
    assert explain(error).splitlines() == [
        "4 problems found:",
        "  configs.prod.targets[0].virtual_key: not supported by relaygate",
        "      hint: set the provider credential as `api_key` on the target (for example "
        '"${OPENAI_API_KEY}" in a server config) or under `providers.<name>.api_key`',
        "  configs.prod.targets[0].provder: unknown field",
        "      hint: did you mean 'provider'?",
        "  listen.port: must be >= 0",
        "  providers.openai.api_key: environment variable OPENAI_API_KEY is not set",
        "      hint: export OPENAI_API_KEY, or give a fallback with ${OPENAI_API_KEY:-default}",
    ]


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [("overide_params", "override_params"), ("onStatusCode", "onStatusCodes"), ("prot", "port")],
)
def test_explain_suggests_the_closest_known_field(key: str, suggestion: str) -> None:
    text = explain(ConfigError([(f"x.{key}", "unknown field")]))
    assert f"did you mean '{suggestion}'?" in text


# --- hostile-input bounds in the server config ---------------------------------------------


def _conditional_with(regex: str) -> dict[str, Any]:
    return {
        "strategy": {
            "mode": "conditional",
            "conditions": [{"query": {"params.model": {"$regex": regex}}, "then": "a"}],
        },
        "targets": [{"name": "a", "provider": "openai", "api_key": "k"}],
    }


def test_a_bad_condition_query_in_a_named_or_default_config_is_reported_at_load() -> None:
    data = {
        "configs": {"prod": _conditional_with("(?<=x)y")},
        "default_config": _conditional_with("a("),
    }
    with pytest.raises(ConfigError) as info:
        parse_server_config(data)
    assert [p for p, _ in info.value.errors] == [
        "configs.prod.strategy.conditions[0].query.params.model.$regex",
        "default_config.strategy.conditions[0].query.params.model.$regex",
    ]


def test_relaygate_validate_prints_a_bad_condition_query(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = tmp_path / "server.yaml"
    server.write_text(yaml.safe_dump({"configs": {"prod": _conditional_with(r"(a)\1")}}))
    portkey = tmp_path / "config.json"
    portkey.write_text(json.dumps(_conditional_with(r"(a)\1")))
    assert main(["validate", str(server)]) == 1
    assert main(["validate", str(portkey)]) == 1
    out = capsys.readouterr().out
    assert "configs.prod.strategy.conditions[0].query.params.model.$regex: $regex uses" in out
    assert "\n  strategy.conditions[0].query.params.model.$regex: $regex uses" in out


def test_a_server_config_nesting_too_deep_is_refused_before_validation() -> None:
    deep: Any = 1
    for _ in range(900):
        deep = [deep]
    data = {
        "configs": {"prod": {"provider": "openai", "override_params": {"x": deep}}},
        "default_config": {"provider": "openai", "override_params": {"y": deep}},
    }
    with pytest.raises(ConfigError) as info:
        parse_server_config(data)
    assert info.value.errors == [
        ("configs.prod.override_params.x[0][0]", "nests more than 64 levels deep"),
        ("default_config.override_params.y[0][0]", "nests more than 64 levels deep"),
    ]


def _fallback_over(count: int) -> dict[str, Any]:
    return {
        "strategy": {"mode": "fallback"},
        "targets": [{"provider": "openai", "api_key": "k"} for _ in range(count)],
    }


def test_the_target_bound_of_the_server_config_applies_to_its_own_configs() -> None:
    with pytest.raises(ConfigError, match="more than 50 targets"):
        parse_server_config({"configs": {"big": _fallback_over(51)}})
    server = parse_server_config(
        {"configs": {"big": _fallback_over(51)}, "limits": {"max_targets_per_config": 60}}
    )
    assert len(server.compiled_configs()["big"].targets) == 51
    with pytest.raises(ConfigError, match=r"configs\.big\.targets: the config has more than 40"):
        parse_server_config(
            {"configs": {"big": _fallback_over(41)}, "limits": {"max_targets_per_config": 40}}
        )


def test_the_timeouts_section_sets_the_streaming_deadlines_beneath_every_config() -> None:
    config = parse_server_config(
        {
            "timeouts": {"first_token_timeout_ms": 4000, "stream_idle_timeout_ms": 9000},
            "configs": {
                "plain": {"provider": "openai"},
                "own": {"provider": "openai", "first_token_timeout": 250},
            },
        }
    )
    compiled = compile_server(config, frozenset(default_registry().names))
    plain = compiled.configs["plain"].targets[0]
    own = compiled.configs["own"].targets[0]
    assert (plain.first_token_timeout_ms, plain.stream_idle_timeout_ms) == (4000, 9000)
    assert (own.first_token_timeout_ms, own.stream_idle_timeout_ms) == (250, 9000)


def test_the_streaming_deadlines_are_unset_by_default() -> None:
    inherited = parse_server_config({}).inherited()
    assert (inherited.first_token_timeout_ms, inherited.stream_idle_timeout_ms) == (None, None)


def test_a_zero_server_default_deadline_is_refused_with_its_path() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_server_config({"timeouts": {"stream_idle_timeout_ms": 0}})
    assert caught.value.errors == [("timeouts.stream_idle_timeout_ms", "must be > 0")]
