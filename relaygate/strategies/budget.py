"""The per-request attempt budget: whether one more upstream attempt may start."""

from __future__ import annotations


def attempt_allowed(started: int, limit: int | None) -> bool:
    """Whether an attempt may start after ``started`` have, under a budget of ``limit``.

    ``limit`` counts every attempt of the request across its config tree, retries included;
    ``None`` means unbounded.
    """
    return limit is None or started < limit
