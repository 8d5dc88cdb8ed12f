"""The attempt-bound rule: the tighter of the target's timeout and the deadline, and which."""

from __future__ import annotations

import pytest

from relaygate.strategies.attempt_bound import AttemptBound, BoundSource, attempt_bound

T = BoundSource.TARGET_TIMEOUT
D = BoundSource.REQUEST_DEADLINE


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
