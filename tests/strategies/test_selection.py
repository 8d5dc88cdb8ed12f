"""Decision tables for weighted picks and strategy plans."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest

from relaygate.config.model import Condition, Mode, Node, Strategy, Target
from relaygate.strategies import NoRoute, RoutingInput, pick_weighted, plan

JUST_BELOW_ONE = math.nextafter(1.0, 0.0)
EMPTY_INPUT = RoutingInput(params={}, metadata={})


def target(name: str, weight: float = 1.0) -> Target:
    return Target(path=f"targets[{name}]", provider="openai", name=name, weight=weight)


def strategy(mode: Mode, *children: Node, **kwargs: Any) -> Strategy:
    return Strategy(path="config", mode=mode, children=children, **kwargs)


# --- pick_weighted -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "rand", "expected"),
    [
        ([1.0], 0.0, 0),
        ([1.0], JUST_BELOW_ONE, 0),
        ([1.0, 1.0], 0.0, 0),
        ([1.0, 1.0], 0.49, 0),
        ([1.0, 1.0], 0.5, 1),
        ([1.0, 1.0], JUST_BELOW_ONE, 1),
        ([1.0, 3.0], 0.25, 1),
        ([0.0, 1.0], 0.0, 1),
        ([1.0, 0.0], JUST_BELOW_ONE, 0),
        ([0.0, 2.0, 0.0, 2.0, 0.0], 0.0, 1),
        ([0.0, 2.0, 0.0, 2.0, 0.0], 0.5, 3),
        ([0.0, 2.0, 0.0, 2.0, 0.0], JUST_BELOW_ONE, 3),
        ([-5.0, 1.0], 0.0, 1),
        ([math.nan, 1.0], 0.0, 1),
        ([1.0, 1.0], 1.0, 1),
        ([1.0, 1.0], -0.5, 0),
        ([0.1, 0.2, 0.7], JUST_BELOW_ONE, 2),
        ([1e308, 1e308], 0.49, 0),
        ([1e308, 1e308], 0.5, 1),
        ([1e308, 1e308, 1e308], JUST_BELOW_ONE, 2),
    ],
    ids=[
        "single-at-zero",
        "single-just-below-one",
        "even-at-zero",
        "even-below-half",
        "even-at-half",
        "even-just-below-one",
        "boundary-belongs-to-next",
        "leading-zero-weight-skipped",
        "trailing-zero-weight-skipped",
        "zeros-between-first",
        "zeros-between-second",
        "zeros-between-top-end",
        "negative-weight-never-picked",
        "nan-weight-never-picked",
        "rand-one-clamped-to-last",
        "negative-rand-clamped-to-first",
        "fractional-weights-top-end",
        "huge-weights-below-half",
        "huge-weights-at-half",
        "huge-weights-summing-past-float-range-top-end",
    ],
)
def test_pick_weighted_walks_cumulative_weights(
    weights: list[float], rand: float, expected: int
) -> None:
    assert pick_weighted(weights, rand) == expected


@pytest.mark.parametrize(
    "weights", [[], [0.0], [0.0, 0.0], [-1.0, 0.0]], ids=["empty", "zero", "zeros", "negative"]
)
def test_pick_weighted_without_positive_weight_raises(weights: list[float]) -> None:
    with pytest.raises(ValueError):
        pick_weighted(weights, 0.5)


@pytest.mark.parametrize(
    ("weights", "grid"),
    [
        ([1.0, 1.0], 10),
        ([1.0, 3.0], 8),
        ([2.0, 0.0, 5.0, 3.0], 100),
        ([0.25, 0.75], 4),
        ([7.0, 1.0, 2.0], 1000),
    ],
    ids=["even", "one-to-three", "with-zero", "quarters", "seven-one-two"],
)
def test_pick_weighted_grid_distribution_matches_weights(weights: list[float], grid: int) -> None:
    counts = Counter(pick_weighted(weights, i / grid) for i in range(grid))
    total = sum(weights)
    assert [counts[i] for i in range(len(weights))] == [grid * w / total for w in weights]


# --- plan --------------------------------------------------------------------------------

A, B, C = target("a"), target("b"), target("c")


@pytest.mark.parametrize("rand", [0.0, 0.7], ids=["rand0", "rand-high"])
def test_single_plans_first_child(rand: float) -> None:
    assert plan(strategy("single", A, B), EMPTY_INPUT, rand) == (A,)


def test_fallback_plans_all_children_in_order() -> None:
    assert plan(strategy("fallback", B, A, C), EMPTY_INPUT, 0.9) == (B, A, C)


def test_plan_with_nested_strategy_child_returns_the_strategy() -> None:
    inner = strategy("fallback", B, C)
    assert plan(strategy("fallback", A, inner), EMPTY_INPUT, 0.0) == (A, inner)


@pytest.mark.parametrize(
    ("rand", "expected"),
    [(0.0, "a"), (0.19, "a"), (0.2, "c"), (0.99, "c"), (JUST_BELOW_ONE, "c")],
    ids=["rand0", "end-of-a", "boundary-to-c", "high", "just-below-one"],
)
def test_loadbalance_plans_one_child_by_weight(rand: float, expected: str) -> None:
    node = strategy("loadbalance", target("a", 1), target("b", 0), target("c", 4))
    (chosen,) = plan(node, EMPTY_INPUT, rand)
    assert chosen.name == expected


def test_loadbalance_grid_distribution_matches_weights() -> None:
    node = strategy("loadbalance", target("a", 1), target("b", 0), target("c", 3), target("d", 6))
    grid = 1000
    counts = Counter(plan(node, EMPTY_INPUT, i / grid)[0].name for i in range(grid))
    assert counts == {"a": 100, "c": 300, "d": 600}


def test_loadbalance_with_all_zero_weights_raises_no_route() -> None:
    node = strategy("loadbalance", target("a", 0), target("b", 0))
    with pytest.raises(NoRoute):
        plan(node, EMPTY_INPUT, 0.5)


@pytest.mark.parametrize("mode", ["single", "fallback", "loadbalance", "conditional"])
def test_strategy_without_children_raises_no_route(mode: Mode) -> None:
    with pytest.raises(NoRoute):
        plan(strategy(mode), EMPTY_INPUT, 0.0)


CONDITIONAL = strategy(
    "conditional",
    A,
    B,
    C,
    conditions=(
        Condition(query={"metadata.user_plan": "paid"}, then="b"),
        Condition(query={"params.model": {"$regex": "^gpt"}}, then="c"),
        Condition(query={"metadata.user_plan": {"$in": ["paid", "team"]}}, then="a"),
    ),
    default="a",
)


@pytest.mark.parametrize(
    ("metadata", "params", "expected"),
    [
        ({"user_plan": "paid"}, {"model": "gpt-4o"}, "b"),
        ({"user_plan": "free"}, {"model": "gpt-4o"}, "c"),
        ({"user_plan": "team"}, {"model": "o1"}, "a"),
        ({"user_plan": "free"}, {"model": "o1"}, "a"),
        ({}, {}, "a"),
    ],
    ids=[
        "first-matching-condition-wins",
        "second-condition",
        "third-condition",
        "no-match-uses-default",
        "empty-request-uses-default",
    ],
)
def test_conditional_routes_to_first_matching_condition(
    metadata: dict[str, Any], params: dict[str, Any], expected: str
) -> None:
    (chosen,) = plan(CONDITIONAL, RoutingInput(params=params, metadata=metadata), 0.0)
    assert chosen.name == expected


def test_conditional_routes_to_named_strategy_child() -> None:
    inner = Strategy(path="config.targets[1]", mode="fallback", children=(B, C), name="pool")
    node = strategy(
        "conditional", A, inner, conditions=(Condition({"metadata.x": 1}, "pool"),), default="a"
    )
    assert plan(node, RoutingInput(params={}, metadata={"x": 1}), 0.0) == (inner,)


def test_conditional_without_match_or_default_raises_no_route() -> None:
    node = strategy("conditional", A, B, conditions=(Condition({"metadata.x": 1}, "b"),))
    with pytest.raises(NoRoute):
        plan(node, RoutingInput(params={}, metadata={"x": 2}), 0.0)


@pytest.mark.parametrize(
    ("metadata", "default"),
    [({"x": 1}, "a"), ({"x": 2}, "ghost")],
    ids=["condition-names-missing-child", "default-names-missing-child"],
)
def test_conditional_naming_unknown_child_raises_no_route(
    metadata: dict[str, Any], default: str
) -> None:
    node = strategy(
        "conditional", A, B, conditions=(Condition({"metadata.x": 1}, "ghost"),), default=default
    )
    with pytest.raises(NoRoute, match="ghost"):
        plan(node, RoutingInput(params={}, metadata=metadata), 0.0)


def test_conditional_ignores_rand() -> None:
    node = strategy("conditional", A, B, default="b")
    assert plan(node, EMPTY_INPUT, 0.0) == plan(node, EMPTY_INPUT, JUST_BELOW_ONE) == (B,)
