"""The attempt-bound rule: the tighter of the target's timeout and the deadline, and which."""

from __future__ import annotations

import pytest

from relaygate.strategies.attempt_bound import (
    AttemptBound,
    BoundSource,
    attempt_bound,
    idle_due,
    stream_idle_s,
)

T = BoundSource.TARGET_TIMEOUT
D = BoundSource.REQUEST_DEADLINE
F = BoundSource.FIRST_TOKEN


@pytest.mark.parametrize(
    ("timeout_ms", "deadline", "now", "expected"),
    [
        (None, None, 0.0, None),  # nothing bounds the attempt
        (0, None, 0.0, None),  # a zero timeout means unset
        (2000, None, 0.0, AttemptBound(2.0, T)),  # the target's timeout alone
        (None, 10.0, 4.0, AttemptBound(6.0, D)),  # the deadline alone: what is left of it
        (2000, 10.0, 4.0, AttemptBound(2.0, T)),  # the target's timeout is tighter
        (9000, 10.0, 4.0, AttemptBound(6.0, D)),  # the deadline is tighter
        (6000, 10.0, 4.0, AttemptBound(6.0, T)),  # a tie is the target's
        (2000, 10.0, 12.0, AttemptBound(0.0, D)),  # a passed deadline leaves no time
        (None, 10.0, 10.0, AttemptBound(0.0, D)),  # exactly at the deadline: no time
    ],
)
def test_the_attempt_bound_decision_table(
    timeout_ms: int | None, deadline: float | None, now: float, expected: AttemptBound | None
) -> None:
    assert attempt_bound(timeout_ms, deadline, now) == expected


@pytest.mark.parametrize(
    ("timeout_ms", "first_token_ms", "deadline", "now", "expected"),
    [
        (None, 500, None, 0.0, AttemptBound(0.5, F)),  # the first-token timeout alone
        (0, 500, None, 0.0, AttemptBound(0.5, F)),  # beside an unset request timeout
        (2000, 500, None, 0.0, AttemptBound(0.5, F)),  # tighter than the request timeout
        (500, 2000, None, 0.0, AttemptBound(0.5, T)),  # the request timeout is tighter
        (500, 500, None, 0.0, AttemptBound(0.5, T)),  # a tie is the request timeout's
        (None, 0, None, 0.0, None),  # a zero first-token timeout means unset
        (None, 500, 10.0, 9.8, AttemptBound(0.2, D)),  # the deadline is tighter
        (None, 500, 10.0, 9.5, AttemptBound(0.5, F)),  # a tie with the deadline: first token
        (2000, 500, 10.0, 12.0, AttemptBound(0.0, D)),  # a passed deadline leaves no time
    ],
)
def test_the_first_token_timeout_joins_the_attempt_bound(
    timeout_ms: int | None,
    first_token_ms: int | None,
    deadline: float | None,
    now: float,
    expected: AttemptBound | None,
) -> None:
    bound = attempt_bound(timeout_ms, deadline, now, first_token_ms)
    if expected is None:
        assert bound is None
    else:
        assert bound is not None
        assert (bound.source, bound.seconds) == (expected.source, pytest.approx(expected.seconds))


@pytest.mark.parametrize(
    ("idle_ms", "timeout_ms", "expected"),
    [
        (None, None, None),  # nothing bounds the gaps
        (1500, None, 1.5),  # the stream idle timeout
        (1500, 9000, 1.5),  # it wins over the request timeout
        (None, 9000, 9.0),  # without it, the request timeout bounds the gaps
        (0, 9000, 9.0),  # zero means unset
    ],
)
def test_the_stream_idle_bound_decision_table(
    idle_ms: int | None, timeout_ms: int | None, expected: float | None
) -> None:
    assert stream_idle_s(idle_ms, timeout_ms) == expected


@pytest.mark.parametrize(
    ("since", "now", "expected"),
    [
        (None, 7.0, 9.0),  # nobody waits on the upstream: look again one bound from now
        (5.0, 6.0, 7.0),  # waiting 1 s of 2: look again when the wait reaches 2 s
        (5.0, 7.0, None),  # waited exactly the bound: stalled
        (5.0, 9.0, None),  # waited longer: stalled
        (6.5, 7.0, 8.5),  # a newer wait (a chunk came since): its own due time
    ],
)
def test_the_stream_watchdog_decision_table(
    since: float | None, now: float, expected: float | None
) -> None:
    assert idle_due(since, 2.0, now) == expected
