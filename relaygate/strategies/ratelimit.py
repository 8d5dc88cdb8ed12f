"""Rate limits and spend budgets as data, and the pure decisions over their counters.

A :class:`RateLimits` caps requests per minute, tokens per minute and spend per calendar
period (UTC day or month) of one subject: a gateway key, or an upstream endpoint
(provider and model). The counters live in a state backend (:mod:`relaygate.state`) under
the keys :func:`counter_keys` names; this module only says what they mean.

**Algorithm.** Per minute limits use the sliding-window approximation over two fixed
one-minute windows (as Cloudflare's and nginx's limiters do): the count over the last 60 s
is estimated as ``previous * (1 - elapsed/60) + current``, where ``current`` is the counter
of the minute in progress and ``previous`` that of the minute before. The counters are
incremented atomically (Redis ``INCRBY``), so every replica sees every other's requests.

**Tolerance.** Within one window the request count is exact across replicas: with Redis,
``N`` requests a minute admit ``N`` in total, however many replicas share it. Across a
window boundary the estimate assumes the previous minute's requests were spread evenly, so
over an arbitrary 60 s span the number admitted can differ from ``N`` by the unevenness of
the previous minute (at most ``previous * elapsed/60`` requests; none when traffic is
steady). Tokens and spend are known only when an answer ends (a stream's at its last
usage event), so requests admitted while under the limit can together exceed it by the
tokens they go on to use. A refused request does not count.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

__all__ = [
    "WINDOW_S",
    "CounterKeys",
    "Counters",
    "Price",
    "RateLimits",
    "Refusal",
    "counter_keys",
    "judge",
    "seconds_until_below",
    "spend_micro_usd",
    "window_position",
]

WINDOW_S = 60
"""The length of one counting window, seconds."""

Period = Literal["day", "month"]


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The limits of one subject; ``None`` means no limit of that kind."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    budget_usd: float | None = None
    budget_period: Period = "day"

    @property
    def counts_usage(self) -> bool:
        """Whether finished answers must add their tokens or spend to the counters."""
        return self.tokens_per_minute is not None or self.budget_usd is not None


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million input and output tokens of one model."""

    input_per_mtok: float
    output_per_mtok: float


def spend_micro_usd(price: Price | None, usage: tuple[int, int] | None) -> int:
    """What ``usage`` (input, output tokens) cost at ``price``, in millionths of a dollar
    (rounded up); 0 without a price or usage."""
    if price is None or usage is None:
        return 0
    return math.ceil(usage[0] * price.input_per_mtok + usage[1] * price.output_per_mtok)


def window_position(now_epoch_s: float) -> tuple[int, float]:
    """The index of the minute window ``now`` falls in and the fraction of it elapsed."""
    index = int(now_epoch_s // WINDOW_S)
    return index, (now_epoch_s - index * WINDOW_S) / WINDOW_S


def period_position(period: Period, now_epoch_s: float) -> tuple[str, int]:
    """The id of the budget period ``now`` falls in (``d2026-12-01``, ``m2026-12``) and the
    whole seconds left in it (at least 1)."""
    now = datetime.fromtimestamp(now_epoch_s, UTC)
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start.timestamp() + 86_400
        ident = f"d{start:%Y-%m-%d}"
    else:
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        end = start.replace(year=year, month=month).timestamp()
        ident = f"m{start:%Y-%m}"
    return ident, max(1, math.ceil(end - now_epoch_s))


@dataclass(frozen=True, slots=True)
class CounterKeys:
    """The state keys of one subject's counters at one moment."""

    requests: str
    requests_previous: str
    tokens: str
    tokens_previous: str
    spend: str
    spend_ttl_s: int
    fraction: float
    """How much of the current minute window has elapsed, 0 to 1."""
    period_left_s: int


def counter_keys(subject: str, limits: RateLimits, now_epoch_s: float) -> CounterKeys:
    """The keys of ``subject``'s counters now. ``subject`` (``key:<name>``,
    ``target:<provider>/<model>``) is hashed, so a key's length is fixed whatever a model
    name is."""
    digest = hashlib.blake2b(subject.encode(), digest_size=12).hexdigest()
    index, fraction = window_position(now_epoch_s)
    period, left = ("", 1)
    if limits.budget_usd is not None:
        period, left = period_position(limits.budget_period, now_epoch_s)
    base = f"rl:{digest}:"
    return CounterKeys(
        requests=f"{base}r:{index}",
        requests_previous=f"{base}r:{index - 1}",
        tokens=f"{base}t:{index}",
        tokens_previous=f"{base}t:{index - 1}",
        spend=f"{base}s:{period}",
        spend_ttl_s=left + 3600,
        fraction=fraction,
        period_left_s=left,
    )


@dataclass(frozen=True, slots=True)
class Counters:
    """The counters as read for one decision; ``requests`` includes the request judged."""

    requests: int = 0
    requests_previous: int = 0
    tokens: int = 0
    tokens_previous: int = 0
    spend_micro_usd: int = 0


@dataclass(frozen=True, slots=True)
class Refusal:
    """A limit that refuses the request: which (``requests``, ``tokens``, ``spend``) and
    the whole seconds after which a request would be admitted again (``retry-after``)."""

    limit: Literal["requests", "tokens", "spend"]
    retry_after_s: int


def seconds_until_below(previous: int, current: int, allowed: float, fraction: float) -> float:
    """Seconds until ``previous * (1 - elapsed) + current`` is at most ``allowed``, the
    counters staying as they are (the window moving on: ``current`` becomes the previous
    window's count at the next boundary)."""
    if current <= allowed:
        if previous <= 0:
            return 0.0
        needed = 1 - (allowed - current) / previous
        return max(0.0, (needed - fraction) * WINDOW_S)
    needed = 1 - allowed / current
    return (1 - fraction) * WINDOW_S + max(0.0, needed) * WINDOW_S


def _whole(seconds: float) -> int:
    return max(1, math.ceil(seconds))


def judge(
    limits: RateLimits, counters: Counters, fraction: float, period_left_s: int
) -> Refusal | None:
    """Whether a request is refused by ``limits`` given ``counters`` (read in the window
    ``fraction`` of the way through): ``None`` admits it.

    Requests: refused when the sliding estimate, this request included, exceeds
    ``requests_per_minute``. Tokens: refused when the estimate of tokens already used has
    reached ``tokens_per_minute``. Spend: refused when the period's spend has reached
    ``budget_usd`` (``retry-after``: the end of the period).
    """
    rpm = limits.requests_per_minute
    if rpm is not None:
        estimate = counters.requests_previous * (1 - fraction) + counters.requests
        if estimate > rpm:
            wait = seconds_until_below(
                counters.requests_previous, counters.requests - 1, rpm - 1, fraction
            )
            return Refusal("requests", _whole(wait))
    tpm = limits.tokens_per_minute
    if tpm is not None:
        estimate = counters.tokens_previous * (1 - fraction) + counters.tokens
        if estimate >= tpm:
            wait = seconds_until_below(counters.tokens_previous, counters.tokens, tpm - 1, fraction)
            return Refusal("tokens", _whole(wait))
    budget = limits.budget_usd
    if budget is not None and counters.spend_micro_usd >= budget * 1_000_000:
        return Refusal("spend", period_left_s)
    return None
