"""How long one upstream attempt may run: the tighter of the target's timeout and the deadline.

Pure: the clock reading is passed in. The timeout layer applies the decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class BoundSource(StrEnum):
    """Which rule bounds the attempt, and so which answer a cut attempt gets."""

    TARGET_TIMEOUT = "request_timeout"
    """The target's own ``request_timeout``: a cut attempt is Portkey's 408 ``timeout``."""

    REQUEST_DEADLINE = "deadline"
    """What is left of the request's overall deadline: a cut attempt is a 504 ``deadline``."""


@dataclass(frozen=True, slots=True)
class AttemptBound:
    """An attempt's bound: ``seconds`` from now (never negative), set by ``source``."""

    seconds: float
    source: BoundSource


def attempt_bound(
    request_timeout_ms: int | None, deadline: float | None, now: float
) -> AttemptBound | None:
    """The bound of an attempt starting at ``now`` (loop-clock seconds), or ``None`` if none.

    ``request_timeout_ms`` is the target's timeout (``None`` or 0: unset); ``deadline`` the
    loop-clock time after which the request may run no longer (``None``: no deadline). The
    deadline applies only when strictly tighter than the target's timeout, so an equal pair
    is reported as the target's; a deadline already passed is a bound of zero seconds.
    """
    limit = request_timeout_ms / 1000 if request_timeout_ms else None
    if deadline is not None and (limit is None or deadline - now < limit):
        return AttemptBound(max(deadline - now, 0.0), BoundSource.REQUEST_DEADLINE)
    if limit is None:
        return None
    return AttemptBound(limit, BoundSource.TARGET_TIMEOUT)
