"""``strategy.recover_streams``: on by default for fallback strategies, inherited down."""

from __future__ import annotations

from typing import Any

import pytest

from relaygate.config.errors import ConfigError
from relaygate.config.model import Strategy, Target
from relaygate.config.tree import compile_config


def leaf(**fields: Any) -> dict[str, Any]:
    return {"provider": "openai", "api_key": "sk", **fields}


def node(mode: str, *children: dict[str, Any], **strategy: Any) -> dict[str, Any]:
    return {"strategy": {"mode": mode, **strategy}, "targets": list(children)}


def compiled(raw: dict[str, Any]) -> Strategy | Target:
    return compile_config(raw, config_id="t").root


@pytest.mark.parametrize(
    ("raw", "strategy_on", "target_on"),
    [
        (node("fallback", leaf(), leaf()), True, True),
        (node("fallback", leaf(), leaf(), recover_streams=False), False, False),
        (node("single", leaf()), False, False),
        (node("single", leaf(), recover_streams=True), True, True),
        (node("loadbalance", leaf(), leaf()), False, False),
        (node("fallback", leaf(), leaf(), recoverStreams=False), False, False),
    ],
    ids=["fallback", "fallback-off", "single", "single-on", "loadbalance", "camelCase"],
)
def test_the_default_follows_the_mode_and_a_set_value_wins(
    raw: dict[str, Any], strategy_on: bool, target_on: bool
) -> None:
    root = compiled(raw)
    assert isinstance(root, Strategy)
    assert root.recover_streams is strategy_on
    first = root.children[0]
    assert isinstance(first, Target) and first.recover_streams is target_on


def test_a_value_set_above_flows_into_nested_strategies_and_their_targets() -> None:
    root = compiled(node("single", node("fallback", leaf(), leaf()), recover_streams=False))
    assert isinstance(root, Strategy)
    inner = root.children[0]
    assert isinstance(inner, Strategy) and inner.recover_streams is False
    assert all(isinstance(t, Target) and not t.recover_streams for t in inner.children)


def test_a_target_alone_does_not_recover() -> None:
    root = compiled(leaf())
    assert isinstance(root, Target) and root.recover_streams is False


def test_a_non_boolean_is_refused_with_its_path() -> None:
    with pytest.raises(ConfigError, match=r"strategy\.recover_streams"):
        compiled(node("fallback", leaf(), recover_streams="yes please"))
