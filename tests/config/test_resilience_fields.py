"""Config fields for final errors (`on_error_codes`) and health-aware balancing (`balance`)."""

from __future__ import annotations

from typing import Any

import pytest

from relaygate.config import ConfigError, compile_config
from relaygate.config.model import Strategy, Target


def compiled(raw: dict[str, Any]) -> Any:
    return compile_config(raw, config_id="t").root


def test_on_error_codes_are_lower_cased_and_inherited_by_nested_strategies_and_targets() -> None:
    root = compiled(
        {
            "strategy": {"mode": "fallback", "onErrorCodes": ["Content_Filter"]},
            "targets": [
                {"provider": "openai"},
                {"strategy": {"mode": "single"}, "targets": [{"provider": "groq"}]},
                {
                    "strategy": {"mode": "single", "on_error_codes": ["*"]},
                    "targets": [{"provider": "groq"}],
                },
            ],
        }
    )
    assert isinstance(root, Strategy)
    assert root.on_error_codes == {"content_filter"}
    first, nested, own = root.children
    assert isinstance(first, Target) and first.on_error_codes == {"content_filter"}
    assert isinstance(nested, Strategy) and nested.on_error_codes == {"content_filter"}
    assert nested.children[0].on_error_codes == {"content_filter"}  # type: ignore[union-attr]
    assert isinstance(own, Strategy) and own.on_error_codes == {"*"}


def test_without_on_error_codes_nothing_overrides_finality() -> None:
    root = compiled({"strategy": {"mode": "fallback"}, "targets": [{"provider": "openai"}]})
    assert root.on_error_codes == frozenset()
    assert root.children[0].on_error_codes == frozenset()


@pytest.mark.parametrize("balance", ["weighted", "least_in_flight", "p2c_ewma"])
def test_loadbalance_takes_a_balance_rule(balance: str) -> None:
    root = compiled(
        {
            "strategy": {"mode": "loadbalance", "balance": balance},
            "targets": [{"provider": "openai"}],
        }
    )
    assert root.balance == balance


def test_balance_defaults_to_weighted() -> None:
    root = compiled({"strategy": {"mode": "loadbalance"}, "targets": [{"provider": "openai"}]})
    assert root.balance == "weighted"


@pytest.mark.parametrize(
    ("strategy", "where"),
    [
        ({"mode": "loadbalance", "balance": "round_robin"}, "strategy.balance"),
        ({"mode": "fallback", "balance": "least_in_flight"}, "strategy.balance"),
        ({"mode": "fallback", "on_error_codes": [""]}, "strategy.on_error_codes[0]"),
        ({"mode": "fallback", "on_error_codes": "content_filter"}, "strategy.on_error_codes"),
    ],
    ids=["unknown-rule", "balance-outside-loadbalance", "empty-code", "not-a-list"],
)
def test_invalid_fields_are_refused_with_their_path(strategy: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        compiled({"strategy": strategy, "targets": [{"provider": "openai"}]})
    assert any(path.startswith(where) for path, _ in caught.value.errors), caught.value.errors
