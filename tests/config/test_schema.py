"""Portkey config validation and compilation (relaygate.config.schema)."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from relaygate.config import (
    DEFAULT_RETRY_STATUS_CODES,
    ConfigError,
    ConfigNode,
    Inherited,
    RetrySettings,
    RoutingConfig,
    Secret,
    Strategy,
    Target,
    compile_config,
    load_config_json,
    parse_config,
)
from relaygate.config.schema import DEFAULT_MAX_TARGETS, MAX_CONFIG_DEPTH, MAX_NESTING

SECRET = "sk-live-DO-NOT-LEAK-1234567890"

REFERENCE = {
    "strategy": {"mode": "fallback"},
    "targets": [
        {
            "provider": "openai",
            "api_key": "sk-...",
            "override_params": {"model": "gpt-3.5-turbo-instruct"},
        },
        {
            "provider": "together-ai",
            "api_key": "...",
            "override_params": {"model": "codellama/CodeLlama-34b-Python-hf"},
        },
    ],
}


def compile_(raw: Any, **kw: Any) -> RoutingConfig:
    return compile_config(raw, config_id="test", **kw)


def only_target(raw: Any, **kw: Any) -> Target:
    targets = compile_(raw, **kw).targets
    assert len(targets) == 1
    return targets[0]


def error_lines(raw: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        compile_(raw)
    return str(info.value).splitlines()


def fallback(*targets: Any, **node: Any) -> dict[str, Any]:
    return {"strategy": {"mode": "fallback"}, "targets": list(targets), **node}


# --- compilation ---------------------------------------------------------------------------


def test_reference_config_compiles_to_two_targets_in_order() -> None:
    config = compile_(REFERENCE)
    assert isinstance(config.root, Strategy)
    assert config.root.mode == "fallback"
    assert config.root.path == "config"
    assert [(t.path, t.provider, t.model) for t in config.targets] == [
        ("config.targets[0]", "openai", "gpt-3.5-turbo-instruct"),
        ("config.targets[1]", "together-ai", "codellama/CodeLlama-34b-Python-hf"),
    ]
    assert config.targets[0].api_key == Secret("sk-...")
    assert config.id == "test"


def test_single_target_root_compiles_to_a_target_at_config() -> None:
    target = only_target({"provider": "openai", "api_key": "sk-x"})
    assert (target.path, target.provider, target.api_key) == ("config", "openai", Secret("sk-x"))


def test_nested_target_paths_follow_the_portkey_option_index() -> None:
    config = compile_(
        fallback({"provider": "openai"}, fallback({"provider": "anthropic"}, {"provider": "groq"}))
    )
    assert [t.path for t in config.targets] == [
        "config.targets[0]",
        "config.targets[1].targets[0]",
        "config.targets[1].targets[1]",
    ]


def test_target_without_retry_anywhere_gets_zero_attempts() -> None:
    assert only_target({"provider": "openai"}).retry == RetrySettings()


def test_provider_name_is_stripped_and_lower_cased() -> None:
    assert only_target({"provider": "  OpenAI "}).provider == "openai"


def test_mode_single_keeps_all_children_in_order() -> None:
    config = compile_(
        {"strategy": {"mode": "single"}, "targets": [{"provider": "a"}, {"provider": "b"}]}
    )
    assert isinstance(config.root, Strategy)
    assert [c.path for c in config.root.children] == ["config.targets[0]", "config.targets[1]"]


def test_conditional_strategy_compiles_conditions_and_default() -> None:
    config = compile_(
        {
            "strategy": {
                "mode": "conditional",
                "conditions": [{"query": {"metadata.tier": {"$eq": "pro"}}, "then": "big"}],
                "default": "small",
            },
            "targets": [
                {"name": "big", "provider": "openai"},
                {"name": "small", "provider": "groq"},
            ],
        }
    )
    root = config.root
    assert isinstance(root, Strategy)
    assert [(c.then, dict(c.query)) for c in root.conditions] == [
        ("big", {"metadata.tier": {"$eq": "pro"}})
    ]
    assert root.default == "small"
    assert [t.label for t in config.targets] == ["big", "small"]


def test_fallback_on_status_codes_compile_to_a_frozenset() -> None:
    config = compile_(
        fallback({"provider": "a"}, strategy={"mode": "fallback", "on_status_codes": [429, 503]})
    )
    assert isinstance(config.root, Strategy)
    assert config.root.on_status_codes == frozenset({429, 503})


def test_fallback_without_on_status_codes_falls_back_on_any_failure() -> None:
    root = compile_(fallback({"provider": "a"})).root
    assert isinstance(root, Strategy)
    assert root.on_status_codes is None


def test_loadbalance_weights_are_kept_on_targets_and_strategy_children() -> None:
    config = compile_(
        {
            "strategy": {"mode": "loadbalance"},
            "targets": [
                {"provider": "a", "weight": 0.7},
                {"strategy": {"mode": "fallback"}, "weight": 0.3, "targets": [{"provider": "b"}]},
            ],
        }
    )
    root = config.root
    assert isinstance(root, Strategy)
    assert [c.weight for c in root.children] == [0.7, 0.3]


def test_azure_fields_go_into_provider_options() -> None:
    target = only_target(
        {
            "provider": "azure-openai",
            "resourceName": "res",
            "deployment_id": "dep",
            "apiVersion": "2024-06-01",
            "azure_model_name": "gpt-4o",
        }
    )
    assert dict(target.provider_options) == {
        "resource_name": "res",
        "deployment_id": "dep",
        "api_version": "2024-06-01",
        "azure_model_name": "gpt-4o",
    }


def test_compiled_override_params_do_not_alias_the_input() -> None:
    raw = {"provider": "a", "override_params": {"stop": ["x"]}}
    target = only_target(raw)
    raw["override_params"]["stop"].append("y")  # type: ignore[index]
    assert target.override_params["stop"] == ["x"]


def test_compile_accepts_an_already_parsed_node() -> None:
    node = parse_config(REFERENCE)
    assert isinstance(node, ConfigNode)
    assert [t.path for t in compile_(node).targets] == ["config.targets[0]", "config.targets[1]"]


def test_secret_is_masked_in_the_compiled_target_repr() -> None:
    target = only_target({"provider": "openai", "api_key": SECRET})
    assert SECRET not in repr(target)
    assert target.api_key is not None and target.api_key.reveal() == SECRET


# --- inheritance ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parent", "child", "attribute", "expected"),
    [
        pytest.param(
            {"override_params": {"model": "a", "temperature": 0.1}},
            {"override_params": {"model": "b"}},
            "override_params",
            {"model": "b", "temperature": 0.1},
            id="override_params-merge-child-key-wins",
        ),
        pytest.param(
            {"override_params": {"model": "a"}},
            {},
            "override_params",
            {"model": "a"},
            id="override_params-flow-down",
        ),
        pytest.param(
            {"retry": {"attempts": 3, "on_status_codes": [429]}},
            {},
            "retry",
            RetrySettings(attempts=3, on_status_codes=frozenset({429})),
            id="retry-flows-down",
        ),
        pytest.param(
            {"retry": {"attempts": 3, "on_status_codes": [429]}},
            {"retry": {"attempts": 1}},
            "retry",
            RetrySettings(attempts=1, on_status_codes=DEFAULT_RETRY_STATUS_CODES),
            id="child-retry-replaces-parent-wholesale",
        ),
        pytest.param(
            {"request_timeout": 1000}, {}, "request_timeout_ms", 1000, id="timeout-flows-down"
        ),
        pytest.param(
            {"request_timeout": 1000},
            {"request_timeout": 250},
            "request_timeout_ms",
            250,
            id="child-timeout-wins",
        ),
        pytest.param(
            {"first_token_timeout": 800},
            {},
            "first_token_timeout_ms",
            800,
            id="first-token-timeout-flows-down",
        ),
        pytest.param(
            {"first_token_timeout": 800},
            {"first_token_timeout": 300},
            "first_token_timeout_ms",
            300,
            id="child-first-token-timeout-wins",
        ),
        pytest.param(
            {"stream_idle_timeout": 900},
            {},
            "stream_idle_timeout_ms",
            900,
            id="stream-idle-timeout-flows-down",
        ),
        pytest.param(
            {"stream_idle_timeout": 900},
            {"stream_idle_timeout": 400},
            "stream_idle_timeout_ms",
            400,
            id="child-stream-idle-timeout-wins",
        ),
        pytest.param(
            {"custom_host": "http://127.0.0.1:9001/v1/"},
            {},
            "custom_host",
            "http://127.0.0.1:9001/v1",
            id="custom-host-flows-down-without-trailing-slash",
        ),
        pytest.param(
            {"custom_host": "http://parent/v1"},
            {"custom_host": "https://child/v1"},
            "custom_host",
            "https://child/v1",
            id="child-custom-host-wins",
        ),
        pytest.param(
            {"forward_headers": ["X-Trace-Id"]},
            {},
            "forward_headers",
            ("x-trace-id",),
            id="forward-headers-flow-down-lower-cased",
        ),
        pytest.param(
            {"forward_headers": ["x-a"]},
            {"forward_headers": ["x-b"]},
            "forward_headers",
            ("x-b",),
            id="child-forward-headers-replace-parent",
        ),
    ],
)
def test_inheritable_field_flows_from_parent_to_child(
    parent: dict[str, Any], child: dict[str, Any], attribute: str, expected: Any
) -> None:
    target = only_target(fallback({"provider": "openai", **child}, **parent))
    value = getattr(target, attribute)
    assert (dict(value) if attribute == "override_params" else value) == expected


def test_inheritance_passes_through_two_strategy_levels() -> None:
    config = compile_(
        fallback(
            fallback({"provider": "a", "override_params": {"c": 3}}, override_params={"b": 2}),
            override_params={"a": 1},
        )
    )
    assert dict(config.targets[0].override_params) == {"a": 1, "b": 2, "c": 3}


@pytest.mark.parametrize(
    ("inherited", "node", "attribute", "expected"),
    [
        pytest.param(
            Inherited(override_params={"model": "z", "user": "u"}),
            {"override_params": {"model": "a"}},
            "override_params",
            {"model": "a", "user": "u"},
            id="config-override-params-beat-inherited",
        ),
        pytest.param(
            Inherited(retry=RetrySettings(attempts=2)),
            {},
            "retry",
            RetrySettings(attempts=2),
            id="inherited-retry-used-when-config-has-none",
        ),
        pytest.param(
            Inherited(request_timeout_ms=5000),
            {"request_timeout": 100},
            "request_timeout_ms",
            100,
            id="config-timeout-beats-inherited",
        ),
        pytest.param(
            Inherited(first_token_timeout_ms=5000, stream_idle_timeout_ms=7000),
            {},
            "first_token_timeout_ms",
            5000,
            id="server-default-first-token-timeout-used-when-config-has-none",
        ),
        pytest.param(
            Inherited(first_token_timeout_ms=5000),
            {"first_token_timeout": 100},
            "first_token_timeout_ms",
            100,
            id="config-first-token-timeout-beats-server-default",
        ),
        pytest.param(
            Inherited(stream_idle_timeout_ms=7000),
            {},
            "stream_idle_timeout_ms",
            7000,
            id="server-default-stream-idle-timeout-used-when-config-has-none",
        ),
        pytest.param(
            Inherited(stream_idle_timeout_ms=7000),
            {"stream_idle_timeout": 100},
            "stream_idle_timeout_ms",
            100,
            id="config-stream-idle-timeout-beats-server-default",
        ),
        pytest.param(
            Inherited(api_keys={"openai": Secret("sk-default")}),
            {},
            "api_key",
            Secret("sk-default"),
            id="provider-default-key-used-without-api-key",
        ),
        pytest.param(
            Inherited(api_keys={"openai": Secret("sk-default")}),
            {"api_key": "sk-own"},
            "api_key",
            Secret("sk-own"),
            id="own-api-key-beats-provider-default",
        ),
        pytest.param(
            Inherited(api_keys={"anthropic": Secret("sk-other")}),
            {},
            "api_key",
            None,
            id="other-providers-default-key-not-used",
        ),
        pytest.param(
            Inherited(custom_hosts={"openai": "http://mock/v1"}),
            {},
            "custom_host",
            "http://mock/v1",
            id="provider-default-host-used-without-custom-host",
        ),
        pytest.param(
            Inherited(custom_host="http://header/v1", custom_hosts={"openai": "http://mock/v1"}),
            {},
            "custom_host",
            "http://header/v1",
            id="inherited-custom-host-beats-provider-default-host",
        ),
        pytest.param(
            Inherited(forward_headers=("X-User",)),
            {},
            "forward_headers",
            ("x-user",),
            id="inherited-forward-headers-lower-cased",
        ),
    ],
)
def test_inherited_defaults_have_lowest_precedence(
    inherited: Inherited, node: dict[str, Any], attribute: str, expected: Any
) -> None:
    target = only_target({"provider": "openai", **node}, inherited=inherited)
    value = getattr(target, attribute)
    assert (dict(value) if attribute == "override_params" else value) == expected


# --- camelCase aliases ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("node", "attribute", "expected"),
    [
        ({"overrideParams": {"model": "m"}}, "override_params", {"model": "m"}),
        ({"apiKey": "k"}, "api_key", Secret("k")),
        ({"customHost": "http://h/v1"}, "custom_host", "http://h/v1"),
        ({"requestTimeout": 5}, "request_timeout_ms", 5),
        ({"firstTokenTimeout": 6}, "first_token_timeout_ms", 6),
        ({"streamIdleTimeout": 7}, "stream_idle_timeout_ms", 7),
        ({"forwardHeaders": ["X-A"]}, "forward_headers", ("x-a",)),
        (
            {"retry": {"attempts": 1, "onStatusCodes": [500]}},
            "retry",
            RetrySettings(1, frozenset({500})),
        ),
        (
            {"retry": {"attempts": 1, "useRetryAfterHeader": True}},
            "retry",
            RetrySettings(1, DEFAULT_RETRY_STATUS_CODES, True),
        ),
        ({"resourceName": "r"}, "provider_options", {"resource_name": "r"}),
        ({"deploymentId": "d"}, "provider_options", {"deployment_id": "d"}),
        ({"apiVersion": "v"}, "provider_options", {"api_version": "v"}),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else None,
)
def test_camel_case_alias_is_accepted(node: dict[str, Any], attribute: str, expected: Any) -> None:
    value = getattr(only_target({"provider": "azure-openai", **node}), attribute)
    assert (dict(value) if isinstance(expected, dict) else value) == expected


def test_camel_case_on_status_codes_is_accepted_on_strategy() -> None:
    root = compile_(
        fallback({"provider": "a"}, strategy={"mode": "fallback", "onStatusCodes": [502]})
    ).root
    assert isinstance(root, Strategy)
    assert root.on_status_codes == frozenset({502})


# --- errors --------------------------------------------------------------------------------


def _deep(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"provider": "a"}
    for _ in range(levels):
        node = fallback(node)
    return node


LEAF_ERRORS: list[tuple[str, dict[str, Any], str]] = [
    ("too-many-attempts", {"retry": {"attempts": 11}}, "retry.attempts: must be <= 10"),
    (
        "attempts-not-integer",
        {"retry": {"attempts": "three"}},
        "retry.attempts: must be an integer",
    ),
    ("attempts-boolean", {"retry": {"attempts": True}}, "retry.attempts: must be an integer"),
    ("attempts-missing", {"retry": {}}, "retry.attempts: required"),
    (
        "retry-status-code-out-of-range",
        {"retry": {"attempts": 1, "on_status_codes": [600]}},
        "retry.on_status_codes[0]: must be <= 599",
    ),
    ("zero-timeout", {"request_timeout": 0}, "request_timeout: must be > 0"),
    ("zero-first-token", {"first_token_timeout": 0}, "first_token_timeout: must be > 0"),
    (
        "text-stream-idle",
        {"stream_idle_timeout": "soon"},
        "stream_idle_timeout: must be an integer",
    ),
    (
        "custom-host-not-http",
        {"custom_host": "ftp://host/v1"},
        "custom_host: must be an http(s) URL",
    ),
    (
        "custom-host-without-scheme",
        {"custom_host": "localhost:9001"},
        "custom_host: must be an http(s) URL",
    ),
    (
        "custom-host-with-query",
        {"custom_host": "http://h/v1?x=1"},
        "custom_host: must not have a query string or fragment",
    ),
    ("negative-weight", {"weight": -1}, "weight: must be >= 0"),
    (
        "override-params-not-object",
        {"override_params": "gpt-4"},
        "override_params: must be an object",
    ),
    ("forward-headers-not-list", {"forward_headers": "x-a"}, "forward_headers: must be a list"),
    ("empty-name", {"name": ""}, "name: must not be empty"),
]
"""``(id, fields, error line)``: a leaf ``{"provider": "a", **fields}`` refused with that line."""

UNSUPPORTED_FIELDS: dict[str, Any] = {
    "virtual_key": "vk",
    "before_request_hooks": [],
    "after_request_hooks": [],
    "input_guardrails": [],
    "output_guardrails": [],
    "guardrails": {},
}
"""Portkey fields relaygate refuses (no vault, hooks or guardrails), with a value each."""

TREE_ERRORS: list[tuple[str, Any, str]] = [
    (
        "negative-attempts",
        fallback({"provider": "a"}, {"provider": "b", "retry": {"attempts": -1}}),
        "targets[1].retry.attempts: must be >= 0",
    ),
    (
        "strategy-status-code-out-of-range",
        fallback({"provider": "a"}, strategy={"mode": "fallback", "on_status_codes": [99]}),
        "strategy.on_status_codes[0]: must be >= 100",
    ),
    (
        "unknown-mode",
        {"strategy": {"mode": "roundrobin"}, "targets": [{"provider": "a"}]},
        "strategy.mode: must be one of 'single', 'fallback', 'loadbalance' or 'conditional'",
    ),
    ("mode-missing", {"strategy": {}, "targets": [{"provider": "a"}]}, "strategy.mode: required"),
    (
        "empty-targets",
        {"strategy": {"mode": "fallback"}, "targets": []},
        "targets: must not be empty",
    ),
    (
        "strategy-without-targets",
        {"strategy": {"mode": "fallback"}},
        "targets: required when 'strategy' is set",
    ),
    (
        "targets-without-strategy",
        {"targets": [{"provider": "a"}]},
        "strategy: required when 'targets' is set",
    ),
    ("empty-node", {}, "provider: required (a node needs 'provider' or 'strategy' + 'targets')"),
    (
        "leaf-without-provider",
        fallback({"api_key": "k"}),
        "targets[0].provider: required (a node needs 'provider' or 'strategy' + 'targets')",
    ),
    ("blank-provider", {"provider": " "}, "provider: must not be empty"),
    ("provider-not-string", {"provider": 5}, "provider: must be a string"),
    (
        "unknown-field",
        fallback({"provider": "a", "promt": "hi"}),
        "targets[0].promt: unknown field",
    ),
    (
        "loadbalance-all-weights-zero",
        {
            "strategy": {"mode": "loadbalance"},
            "targets": [{"provider": "a", "weight": 0}, {"provider": "b", "weight": 0}],
        },
        "targets: loadbalance needs a target with weight > 0",
    ),
    (
        "conditions-without-conditional",
        fallback(
            {"provider": "a", "name": "x"},
            strategy={"mode": "fallback", "conditions": [{"query": {}, "then": "x"}]},
        ),
        "strategy.conditions: only valid with mode 'conditional'",
    ),
    (
        "default-without-conditional",
        fallback({"provider": "a", "name": "x"}, strategy={"mode": "fallback", "default": "x"}),
        "strategy.default: only valid with mode 'conditional'",
    ),
    (
        "conditional-without-conditions",
        {"strategy": {"mode": "conditional"}, "targets": [{"provider": "a"}]},
        "strategy.conditions: required when mode is 'conditional'",
    ),
    (
        "conditional-with-empty-conditions",
        {"strategy": {"mode": "conditional", "conditions": []}, "targets": [{"provider": "a"}]},
        "strategy.conditions: must not be empty",
    ),
    (
        "then-names-unknown-target",
        {
            "strategy": {"mode": "conditional", "conditions": [{"query": {}, "then": "x"}]},
            "targets": [{"provider": "a", "name": "a"}, {"provider": "b", "name": "b"}],
        },
        "strategy.conditions[0].then: no target named 'x' (names: a, b)",
    ),
    (
        "default-names-unknown-target",
        {
            "strategy": {
                "mode": "conditional",
                "conditions": [{"query": {}, "then": "a"}],
                "default": "zz",
            },
            "targets": [{"provider": "a", "name": "a"}],
        },
        "strategy.default: no target named 'zz' (names: a)",
    ),
    (
        "then-without-any-named-target",
        {
            "strategy": {"mode": "conditional", "conditions": [{"query": {}, "then": "a"}]},
            "targets": [{"provider": "a"}],
        },
        "strategy.conditions[0].then: no target named 'a' (no target has a name)",
    ),
    (
        "condition-without-query",
        {
            "strategy": {"mode": "conditional", "conditions": [{"then": "a"}]},
            "targets": [{"provider": "a", "name": "a"}],
        },
        "strategy.conditions[0].query: required",
    ),
    (
        "duplicate-sibling-names",
        fallback({"provider": "a", "name": "x"}, {"provider": "b", "name": "x"}),
        "targets[1].name: duplicate name 'x' (also targets[0])",
    ),
    (
        "provider-on-strategy-node",
        fallback({"provider": "a"}, provider="openai"),
        "provider: only valid on a target, not on a strategy node",
    ),
    (
        "nested-path",
        fallback({"provider": "a"}, fallback({"provider": "b", "retry": {"attempts": -1}})),
        "targets[1].targets[0].retry.attempts: must be >= 0",
    ),
    ("target-not-object", fallback("openai"), "targets[0]: must be an object"),
    ("root-not-object", ["openai"], "(root): must be an object"),
    (
        "nesting-too-deep",
        _deep(MAX_NESTING + 1),
        ".".join(["targets[0]"] * MAX_NESTING)
        + f".targets: targets nest more than {MAX_NESTING} levels deep",
    ),
]
"""``(id, config, error line)``: whole configs refused with exactly that line."""


@pytest.mark.parametrize(
    ("fields", "expected"), [pytest.param(f, e, id=i) for i, f, e in LEAF_ERRORS]
)
def test_an_invalid_leaf_field_reports_its_path_and_message(
    fields: dict[str, Any], expected: str
) -> None:
    assert error_lines({"provider": "a", **fields}) == [expected]


@pytest.mark.parametrize(("field", "value"), UNSUPPORTED_FIELDS.items())
def test_an_unsupported_portkey_field_is_refused(field: str, value: Any) -> None:
    assert error_lines({"provider": "a", field: value}) == [f"{field}: not supported by relaygate"]


@pytest.mark.parametrize(("raw", "expected"), [pytest.param(r, e, id=i) for i, r, e in TREE_ERRORS])
def test_invalid_config_reports_exact_path_and_message(raw: Any, expected: str) -> None:
    assert error_lines(raw) == [expected]


def test_nesting_up_to_the_limit_is_accepted() -> None:
    assert len(compile_(_deep(MAX_NESTING)).targets) == 1


def test_all_errors_are_collected_not_just_the_first() -> None:
    raw = {
        "strategy": {"mode": "conditional", "conditions": [{"query": {}, "then": "nope"}]},
        "targets": [
            {"provider": "openai", "name": "a", "retry": {"attempts": -1}},
            {"provider": "groq", "name": "b", "promt": "x", "request_timeout": "soon"},
            {"targets": [{"provider": "c"}]},
        ],
    }
    assert error_lines(raw) == [
        "strategy.conditions[0].then: no target named 'nope' (names: a, b)",
        "targets[0].retry.attempts: must be >= 0",
        "targets[1].promt: unknown field",
        "targets[1].request_timeout: must be an integer",
        "targets[2].strategy: required when 'targets' is set",
    ]


def test_config_error_exposes_path_message_pairs() -> None:
    with pytest.raises(ConfigError) as info:
        compile_(fallback({"provider": "a", "retry": {"attempts": -1}}))
    assert info.value.errors == [("targets[0].retry.attempts", "must be >= 0")]
    assert isinstance(info.value, ValueError)


def test_config_error_survives_pickling() -> None:
    error = ConfigError([("a", "b"), ("c", "d")])
    restored = pickle.loads(pickle.dumps(error))
    assert restored.errors == error.errors
    assert str(restored) == "a: b\nc: d"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param({"provider": "a", "api_key": SECRET, "retry": {"attempts": -1}}, id="sibling"),
        pytest.param({"provider": "a", "api_key": [SECRET]}, id="api-key-wrong-type"),
        pytest.param({"provider": "a", "apikey": SECRET}, id="misspelled-api-key"),
        pytest.param({"provider": "a", "virtual_key": SECRET}, id="virtual-key"),
        pytest.param({"provider": "a", "custom_host": SECRET}, id="in-custom-host"),
        pytest.param({"provider": "a", "request_timeout": SECRET}, id="in-timeout"),
        pytest.param({"provider": "a", "weight": SECRET}, id="in-weight"),
        pytest.param({"provider": "a", "retry": SECRET}, id="in-retry"),
        pytest.param({"provider": "a", "forward_headers": SECRET}, id="in-forward-headers"),
        pytest.param({"provider": "a", "override_params": SECRET}, id="in-override-params"),
        pytest.param({"strategy": {"mode": SECRET}, "targets": [{"provider": "a"}]}, id="in-mode"),
        pytest.param(
            fallback({"provider": "a", "api_key": SECRET}, provider="openai", api_key=SECRET),
            id="api-key-on-strategy-node",
        ),
    ],
)
def test_error_message_never_contains_the_api_key(raw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        compile_(raw)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value.errors)


# --- warnings ------------------------------------------------------------------------------


def test_cache_and_metadata_are_ignored_with_a_warning() -> None:
    warnings: list[str] = []
    config = compile_(
        fallback({"provider": "a", "cache": {"mode": "simple"}}, metadata={"team": "x"}),
        warnings=warnings,
    )
    assert len(config.targets) == 1
    assert warnings == [
        "metadata: ignored (relaygate does not use config metadata)",
        "targets[0].cache: ignored (a config's cache is read at its root only)",
    ]


@pytest.mark.parametrize(
    ("cache", "max_age_s", "warning"),
    [
        ({"mode": "simple"}, 7 * 24 * 3600, None),
        ({"mode": "simple", "max_age": 60}, 60, None),
        ({"mode": "simple", "maxAge": 5}, 5, None),
        ({"mode": "simple", "max_age": 0}, None, "max_age must be a positive"),
        ({"mode": "simple", "max_age": "60"}, None, "max_age must be a positive"),
        ({"mode": "semantic"}, None, "simple mode only"),
        ("yes", None, "simple mode only"),
    ],
)
def test_a_root_cache_in_simple_mode_caches_for_max_age(
    cache: Any, max_age_s: int | None, warning: str | None
) -> None:
    warnings: list[str] = []
    config = compile_({"provider": "a", "cache": cache}, warnings=warnings)
    assert (config.cache.max_age_s if config.cache else None) == max_age_s
    if warning is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warning in warnings[0]


# --- JSON text -----------------------------------------------------------------------------


def test_load_config_json_compiles_text() -> None:
    config = load_config_json('{"provider": "openai", "api_key": "k"}', config_id="inline")
    assert (config.id, config.targets[0].provider) == ("inline", "openai")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"provider": ', "(root): invalid JSON: Expecting value at line 1 column 14"),
        (b"\xff\xfe\xfa", "(root): invalid JSON: not valid UTF-8"),
        ('{"provider": "a", "weight": NaN}', "(root): invalid JSON: NaN is not valid JSON"),
        ("[1]", "(root): must be an object"),
    ],
    ids=["truncated", "bad-bytes", "nan", "not-object"],
)
def test_load_config_json_rejects_bad_text(text: str | bytes, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_json(text)
    assert str(info.value) == expected


def test_invalid_json_error_does_not_echo_the_text() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_json('{"provider": "openai", "api_key": "' + SECRET + '" oops}')
    assert SECRET not in str(info.value)


# --- hostile-input bounds ------------------------------------------------------------------


def conditional(query: Any) -> dict[str, Any]:
    """A conditional config routing on ``query`` to one of two named targets."""
    return {
        "strategy": {
            "mode": "conditional",
            "conditions": [
                {"query": {"params.model": "gpt-4o"}, "then": "a"},
                {"query": query, "then": "b"},
            ],
            "default": "a",
        },
        "targets": [
            {"name": "a", "provider": "openai", "api_key": "k"},
            {"name": "b", "provider": "openai", "api_key": "k"},
        ],
    }


@pytest.mark.parametrize(
    ("query", "path", "fragment"),
    [
        (
            {"params.model": {"$regex": r"(gpt)\1"}},
            "strategy.conditions[1].query.params.model.$regex",
            "linear-time regex engine (RE2) does not support",
        ),
        (
            {"params.model": {"$regex": "a("}},
            "strategy.conditions[1].query.params.model.$regex",
            "not a valid regular expression",
        ),
        (
            {"metadata.plan": {"$like": "x"}},
            "strategy.conditions[1].query.metadata.plan.$like",
            "unknown operator",
        ),
        ({"headers.x": "y"}, "strategy.conditions[1].query.headers.x", "must start with"),
        (
            {"$or": [{"metadata.a": 1}, {"params.model": {"$in": "x"}}]},
            "strategy.conditions[1].query.$or[1].params.model.$in",
            "takes a list",
        ),
    ],
    ids=["backreference", "bad-regex", "unknown-operator", "bad-prefix", "inside-or"],
)
def test_a_malformed_condition_query_is_a_config_error_at_its_path(
    query: Any, path: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        compile_config(conditional(query), config_id="c")
    [(where, message)] = info.value.errors
    assert where == path
    assert fragment in message


def test_condition_queries_nested_below_the_root_are_checked_too() -> None:
    raw = {
        "strategy": {"mode": "fallback"},
        "targets": [conditional({"params.model": {"$regex": "(?=x)"}})],
    }
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert [p for p, _ in info.value.errors] == [
        "targets[0].strategy.conditions[1].query.params.model.$regex"
    ]


def test_a_config_nesting_past_the_depth_bound_is_refused_naming_the_field() -> None:
    deep: Any = 1
    for _ in range(5_000):
        deep = {"a": deep}
    raw = {"provider": "openai", "override_params": {"x": deep}}
    with pytest.raises(ConfigError) as info:
        compile_config(raw, config_id="c")
    [(where, message)] = info.value.errors
    assert where == "override_params.x.a.a"
    assert f"nests more than {MAX_CONFIG_DEPTH} levels deep" in message


def test_a_config_at_the_depth_bound_compiles() -> None:
    deep: Any = 1
    for _ in range(MAX_CONFIG_DEPTH - 2):
        deep = {"a": deep}
    raw = {"provider": "openai", "override_params": {"x": deep}}
    compiled = compile_config(raw, config_id="c")
    assert isinstance(compiled.root, Target)


def fan_out(count: int) -> dict[str, Any]:
    """A fallback config over ``count`` targets."""
    return {
        "strategy": {"mode": "fallback"},
        "targets": [{"provider": "openai", "api_key": "k"} for _ in range(count)],
    }


def test_more_targets_than_the_default_bound_are_refused() -> None:
    with pytest.raises(ConfigError) as info:
        compile_config(fan_out(DEFAULT_MAX_TARGETS + 1), config_id="c")
    [(where, message)] = info.value.errors
    assert where == "targets"
    assert f"more than {DEFAULT_MAX_TARGETS} targets" in message
    assert "limits.max_targets_per_config" in message


def test_targets_are_counted_over_the_whole_tree() -> None:
    raw = {"strategy": {"mode": "fallback"}, "targets": [fan_out(3), fan_out(3)]}
    compile_config(raw, config_id="c", max_targets=8)
    with pytest.raises(ConfigError, match="more than 7 targets"):
        compile_config(raw, config_id="c", max_targets=7)


def test_the_target_bound_is_a_parameter() -> None:
    compiled = compile_config(fan_out(60), config_id="c", max_targets=60)
    assert len(compiled.targets) == 60
