"""``${VAR}`` expansion in config values (relaygate.config.envref)."""

from __future__ import annotations

from typing import Any

import pytest

from relaygate.config import ConfigError, expand_env

ENV = {"OPENAI_API_KEY": "sk-env", "EMPTY": "", "HOST": "127.0.0.1", "PORT": "9001"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("${OPENAI_API_KEY}", "sk-env", id="set-variable"),
        pytest.param("${MISSING:-fallback}", "fallback", id="default-when-unset"),
        pytest.param("${EMPTY:-fallback}", "fallback", id="default-when-empty"),
        pytest.param("${OPENAI_API_KEY:-fallback}", "sk-env", id="value-beats-default"),
        pytest.param("${MISSING:-}", "", id="empty-default"),
        pytest.param("${EMPTY}", "", id="set-but-empty"),
        pytest.param("http://${HOST}:${PORT}/v1", "http://127.0.0.1:9001/v1", id="several-refs"),
        pytest.param("$${HOST}", "${HOST}", id="escaped-literal"),
        pytest.param("cost: $5", "cost: $5", id="lone-dollar-untouched"),
        pytest.param("no refs", "no refs", id="plain-string"),
        pytest.param(8787, 8787, id="non-string-untouched"),
        pytest.param(None, None, id="none-untouched"),
        pytest.param(
            {"a": ["${HOST}", {"b": "${PORT}"}], "${HOST}": 1},
            {"a": ["127.0.0.1", {"b": "9001"}], "${HOST}": 1},
            id="nested-values-expanded-keys-not",
        ),
    ],
)
def test_expand_env_resolves_references(value: Any, expected: Any) -> None:
    assert expand_env(value, ENV) == expected


def test_missing_variable_error_names_the_path() -> None:
    value = {"targets": [{"api_key": "${OPENAI_API_KEY}"}]}
    with pytest.raises(ConfigError) as info:
        expand_env(value, {}, "configs.prod")
    assert str(info.value) == (
        "configs.prod.targets[0].api_key: environment variable OPENAI_API_KEY is not set"
    )


def test_missing_variable_at_the_top_is_reported_at_root() -> None:
    with pytest.raises(ConfigError) as info:
        expand_env("${NOPE}", {})
    assert info.value.errors == [("(root)", "environment variable NOPE is not set")]


def test_every_missing_variable_is_reported() -> None:
    with pytest.raises(ConfigError) as info:
        expand_env({"a": "${A}", "b": ["${B} ${C}"]}, {})
    assert info.value.errors == [
        ("a", "environment variable A is not set"),
        ("b[0]", "environment variable B is not set"),
        ("b[0]", "environment variable C is not set"),
    ]


@pytest.mark.parametrize("text", ["${", "${not a name}", "${1X}", "${X"])
def test_malformed_reference_is_an_error(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        expand_env({"k": text}, {"X": "x"})
    assert info.value.errors == [
        ("k", "malformed environment reference (write $${ for a literal ${)")
    ]


def test_expansion_does_not_modify_the_input() -> None:
    value = {"a": ["${HOST}"]}
    expand_env(value, ENV)
    assert value == {"a": ["${HOST}"]}
