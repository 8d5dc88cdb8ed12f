"""Decision table of the per-request attempt budget."""

from __future__ import annotations

import pytest

from relaygate.strategies import attempt_allowed


@pytest.mark.parametrize(
    ("started", "limit", "allowed"),
    [
        (0, 1, True),
        (1, 1, False),
        (19, 20, True),
        (20, 20, False),
        (25, 20, False),
        (1_000, None, True),
    ],
)
def test_an_attempt_starts_only_while_the_budget_lasts(
    started: int, limit: int | None, allowed: bool
) -> None:
    assert attempt_allowed(started, limit) is allowed
