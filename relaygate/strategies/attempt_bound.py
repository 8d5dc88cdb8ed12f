"""How long one upstream attempt may run, and how long a stream may stay silent.

- :func:`attempt_bound`: the tightest of the target's ``request_timeout``, its
  ``first_token_timeout`` (streams only) and what is left of the request's deadline;
- :func:`stream_idle_s`: the longest gap between chunks of a stream once it is handed on;
- :func:`idle_due`: the watchdog's one decision, whether a silent stream has stalled.

Pure: clock readings are passed in. The timeout layer and the upstream stream apply them.
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

    FIRST_TOKEN = "first_token"
    """The target's ``first_token_timeout`` (streams): no chunk carrying content arrived in
    time, and nothing has reached the client; a cut attempt is a 408 ``timeout``."""


@dataclass(frozen=True, slots=True)
class AttemptBound:
    """An attempt's bound: ``seconds`` from now (never negative), set by ``source``."""

    seconds: float
    source: BoundSource


def attempt_bound(
    request_timeout_ms: int | None,
    deadline: float | None,
    now: float,
    first_token_timeout_ms: int | None = None,
) -> AttemptBound | None:
    """The bound of an attempt starting at ``now`` (loop-clock seconds), or ``None`` if none.

    ``request_timeout_ms`` is the target's timeout and ``first_token_timeout_ms`` its
    first-token timeout, passed only for a streamed request (``None`` or 0: unset);
    ``deadline`` the loop-clock time after which the request may run no longer (``None``: no
    deadline). The tightest applies. The first-token timeout applies only when strictly
    tighter than the request timeout, and the deadline only when strictly tighter than
    both, so ties are reported as the target's ``request_timeout``; a deadline already
    passed is a bound of zero seconds.
    """
    limit = request_timeout_ms / 1000 if request_timeout_ms else None
    source = BoundSource.TARGET_TIMEOUT
    if first_token_timeout_ms and (limit is None or first_token_timeout_ms / 1000 < limit):
        limit, source = first_token_timeout_ms / 1000, BoundSource.FIRST_TOKEN
    if deadline is not None and (limit is None or deadline - now < limit):
        return AttemptBound(max(deadline - now, 0.0), BoundSource.REQUEST_DEADLINE)
    if limit is None:
        return None
    return AttemptBound(limit, source)


def stream_idle_s(
    stream_idle_timeout_ms: int | None, request_timeout_ms: int | None
) -> float | None:
    """The longest gap between chunks (seconds) of a stream once handed on, or ``None``.

    The target's ``stream_idle_timeout`` (its config's or the server default) when set, else
    its ``request_timeout`` (the bound gaps had before ``stream_idle_timeout`` existed), else
    unbounded.
    """
    ms = stream_idle_timeout_ms or request_timeout_ms
    return ms / 1000 if ms else None


def idle_due(waiting_since: float | None, idle_s: float, now: float) -> float | None:
    """The stream watchdog's decision at ``now``: ``None`` when the stream has stalled, else
    when to look again.

    ``waiting_since`` is when the reader started waiting for the current chunk (``None``:
    it is not waiting on the upstream, e.g. the client is slow to take the last chunk, and
    that time is not the upstream's silence). A wait of ``idle_s`` or more has stalled; a
    shorter one is looked at again when it would reach ``idle_s``; with no wait, one
    ``idle_s`` from ``now``.
    """
    if waiting_since is None:
        return now + idle_s
    due = waiting_since + idle_s
    return None if now >= due else due
