"""Decision tables for the loadbalance choice: weighted, least in flight, p2c over peak-EWMA."""

from __future__ import annotations

import pytest

from relaygate.config.model import Balance
from relaygate.strategies import Reason
from relaygate.strategies.balance import (
    FAILURE_PENALTY_S,
    Load,
    choose,
    combined,
    cost,
    latency_sample,
)

IDLE = Load()
BUSY = Load(in_flight=3)
FAST = Load(latency_s=0.1)
SLOW = Load(latency_s=2.0)


@pytest.mark.parametrize(
    ("rule", "weights", "loads", "first", "second", "expected"),
    [
        # weighted: the loads are not looked at
        ("weighted", [1, 1], [BUSY, IDLE], 0.0, 0.0, 0),
        ("weighted", [1, 1], [IDLE, BUSY], 0.75, 0.0, 1),
        ("weighted", [1, 3], [IDLE, IDLE], 0.3, 0.0, 1),
        # least_in_flight: fewest in flight per unit of weight
        ("least_in_flight", [1, 1], [BUSY, IDLE], 0.0, 0.0, 1),
        ("least_in_flight", [1, 1], [IDLE, BUSY], 0.99, 0.0, 0),
        ("least_in_flight", [1, 1, 1], [Load(2), Load(1), Load(3)], 0.0, 0.0, 1),
        ("least_in_flight", [1, 4], [Load(1), Load(3)], 0.0, 0.0, 1),
        ("least_in_flight", [1, 1], [Load(2), Load(2)], 0.75, 0.0, 1),
        ("least_in_flight", [1, 3], [IDLE, IDLE], 0.3, 0.0, 1),
        ("least_in_flight", [0, 1], [IDLE, BUSY], 0.0, 0.0, 1),
        # p2c_ewma: two drawn by weight, the lower latency * (in_flight + 1) wins
        ("p2c_ewma", [1, 1], [SLOW, FAST], 0.0, 0.0, 1),
        ("p2c_ewma", [1, 1], [FAST, SLOW], 0.75, 0.0, 0),
        ("p2c_ewma", [1, 1], [Load(4, 0.1), Load(0, 0.3)], 0.0, 0.0, 1),
        ("p2c_ewma", [1, 1], [FAST, FAST], 0.75, 0.0, 1),
        ("p2c_ewma", [1, 1], [SLOW, IDLE], 0.0, 0.0, 1),
        ("p2c_ewma", [1, 1, 1], [SLOW, FAST, Load(latency_s=0.05)], 0.0, 0.0, 1),
        ("p2c_ewma", [1, 1, 1], [SLOW, FAST, Load(latency_s=0.05)], 0.0, 0.99, 2),
        ("p2c_ewma", [1, 0], [SLOW, FAST], 0.0, 0.0, 0),
        ("p2c_ewma", [5], [SLOW], 0.5, 0.5, 0),
    ],
    ids=[
        "weighted-first-draw",
        "weighted-second-draw",
        "weighted-by-weight",
        "lif-picks-the-idle-one",
        "lif-picks-the-idle-one-whatever-the-draw",
        "lif-fewest-of-three",
        "lif-per-unit-of-weight",
        "lif-tie-broken-by-draw",
        "lif-all-idle-is-weighted",
        "lif-zero-weight-never",
        "p2c-faster-wins",
        "p2c-faster-wins-drawn-first",
        "p2c-load-multiplies-latency",
        "p2c-tie-keeps-first-drawn",
        "p2c-unmeasured-costs-nothing",
        "p2c-only-the-two-drawn-compete",
        "p2c-other-pair",
        "p2c-zero-weight-never",
        "p2c-single-child",
    ],
)
def test_choose_decision_table(
    rule: Balance,
    weights: list[float],
    loads: list[Load],
    first: float,
    second: float,
    expected: int,
) -> None:
    assert choose(rule, weights, loads, first, second) == expected


@pytest.mark.parametrize("rule", ["weighted", "least_in_flight", "p2c_ewma"])
def test_no_positive_weight_is_refused(rule: Balance) -> None:
    with pytest.raises(ValueError):
        choose(rule, [0, 0], [IDLE, IDLE], 0.5, 0.5)


def test_cost_is_latency_times_load_plus_one() -> None:
    assert cost(Load(in_flight=2, latency_s=0.5)) == 1.5
    assert cost(IDLE) == 0.0


def test_a_strategy_childs_load_sums_in_flight_and_averages_known_latency() -> None:
    assert combined([Load(1, 0.2), Load(2, 0.0), Load(0, 0.4)]) == Load(3, pytest.approx(0.3))
    assert combined([]) == IDLE


@pytest.mark.parametrize(
    ("reason", "elapsed", "expected"),
    [
        (Reason.OK, 0.25, 0.25),
        (Reason.STATUS_5XX, 0.01, FAILURE_PENALTY_S),
        (Reason.STATUS_429, 0.01, FAILURE_PENALTY_S),
        (Reason.TIMEOUT, 30.0, 30.0),
        (Reason.CONNECT_ERROR, 0.001, FAILURE_PENALTY_S),
        (Reason.STREAM_ERROR, 0.2, FAILURE_PENALTY_S),
        (Reason.STATUS_4XX, 0.05, None),
        (Reason.DEADLINE, 1.0, None),
    ],
)
def test_latency_sample_table(reason: Reason, elapsed: float, expected: float | None) -> None:
    assert latency_sample(reason, elapsed) == expected
