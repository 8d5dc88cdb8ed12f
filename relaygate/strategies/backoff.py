"""Retry policy: whether to retry an attempt, and how long to wait first.

Pure functions: the caller passes the random draw, the wall-clock time and the remaining
request budget, so every decision is reproducible in tests.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Literal

from relaygate.config.model import RetrySettings
from relaygate.strategies.reasons import Reason
from relaygate.strategies.triggers import policy_status

_DECIMAL = re.compile(r"\s*(?:\d+(?:\.\d*)?|\.\d+)\s*")

RETRY_AFTER_MS_HEADERS: tuple[str, ...] = ("retry-after-ms", "x-ms-retry-after-ms")
"""Millisecond retry hints, read in this order before ``retry-after``."""

FAILURE_STATUS: Mapping[Reason, int] = {
    Reason.TIMEOUT: 408,
    Reason.CONNECT_ERROR: 502,
    Reason.INVALID_RESPONSE: 502,
    Reason.STREAM_ERROR: 502,
    Reason.STREAM_IDLE: 408,
}
"""The status a transport failure is treated as when matched against ``on_status_codes``."""

WhyNot = Literal[
    "attempts_exhausted", "status_not_retryable", "retry_after_too_long", "deadline", "final_error"
]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with proportional jitter, and the cap on upstream retry hints.

    The n-th retry waits ``min(max_s, initial_s * multiplier ** (n - 1))`` scaled by a factor
    in ``[1 - jitter, 1 + jitter]`` and clamped to ``max_s``. An upstream ``retry-after``
    longer than ``max_retry_after_s`` makes the attempt not retried at all.
    """

    initial_s: float = 0.5
    multiplier: float = 2.0
    max_s: float = 10.0
    jitter: float = 0.2
    max_retry_after_s: float = 60.0


def backoff_delay(policy: Backoff, retry_number: int, rand: float) -> float:
    """Seconds to wait before retry ``retry_number`` (1 = the first retry).

    The base is ``min(max_s, initial_s * multiplier ** (retry_number - 1))``; it is scaled by
    ``1 - jitter + 2 * jitter * rand`` (``rand`` in ``[0, 1)``, ``jitter`` clamped to
    ``[0, 1]``) and the result is clamped to ``[0, max_s]``: jitter never pushes a delay above
    ``max_s``, so at the cap it only shortens. ``retry_number`` below 1 counts as 1.
    """
    exponent = max(retry_number, 1) - 1
    try:
        grown = policy.initial_s * policy.multiplier**exponent
    except OverflowError:
        grown = math.inf
    base = min(policy.max_s, grown)
    jitter = min(max(policy.jitter, 0.0), 1.0)
    rand = min(max(rand, 0.0), 1.0)
    delay = base * (1.0 - jitter + 2.0 * jitter * rand)
    return max(0.0, min(policy.max_s, delay))


def _decimal(value: str) -> float | None:
    """A non-negative finite decimal number, or ``None`` if ``value`` is anything else."""
    if not _DECIMAL.fullmatch(value):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _http_date_delta(value: str, now_epoch_s: float) -> float | None:
    """Seconds from ``now_epoch_s`` until the HTTP-date ``value``; ``None`` if unparsable."""
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when.timestamp() - now_epoch_s
    return delta if math.isfinite(delta) else None


def parse_retry_after(headers: Mapping[str, str], now_epoch_s: float) -> float | None:
    """Seconds the upstream asks the gateway to wait before retrying, if it says so usably.

    ``headers`` has lower-cased names. Headers are tried in order: ``retry-after-ms`` and
    ``x-ms-retry-after-ms`` (decimal milliseconds), then ``retry-after`` (decimal seconds or
    an HTTP-date, converted to seconds from ``now_epoch_s``). A header that does not parse,
    or gives a negative (including an HTTP-date in the past), NaN or infinite wait, is
    ignored and the next one tried. ``None`` when none is usable.
    """
    for name in RETRY_AFTER_MS_HEADERS:
        raw = headers.get(name)
        if raw is not None and (ms := _decimal(raw)) is not None:
            return ms / 1000.0
    raw = headers.get("retry-after")
    if raw is None:
        return None
    seconds = _decimal(raw)
    if seconds is not None:
        return seconds
    delta = _http_date_delta(raw, now_epoch_s)
    if delta is not None and delta >= 0:
        return delta
    return None


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """The outcome of :func:`decide_retry`.

    When ``retry`` is true, wait ``delay_s`` seconds (computed by ``source``) then retry.
    When false, ``why_not`` says why; for ``retry_after_too_long`` and ``deadline``,
    ``delay_s``/``source`` still report the wait that was refused, for the route story.
    """

    retry: bool
    delay_s: float = 0.0
    source: Literal["backoff", "retry_after", "none"] = "none"
    why_not: WhyNot | None = None


def retry_status(status: int, failure: Reason | None) -> int | None:
    """The status matched against ``on_status_codes`` for this outcome.

    A transport failure replaces ``status`` by its synthetic status (timeout → 408, connect
    error / invalid response / stream error → 502), and a vendor status is replaced by its
    standard equivalent (:data:`~relaygate.strategies.triggers.STATUS_ALIASES`: 529 →
    503). ``None`` for outcomes that are never retried on the same target whatever the
    codes: the request deadline has passed, there was no route, or a stream stalled
    (``stream_idle``: a target that went silent midway is left for the next target, which
    fallback moves to like after a timeout, as 408).
    """
    if failure is Reason.DEADLINE or failure is Reason.NO_ROUTE or failure is Reason.STREAM_IDLE:
        return None
    if failure is None:
        return policy_status(status)
    return FAILURE_STATUS.get(failure, status)


def decide_retry(
    *,
    status: int,
    failure: Reason | None,
    settings: RetrySettings,
    retries_done: int,
    policy: Backoff,
    rand: float,
    headers: Mapping[str, str],
    now_epoch_s: float,
    remaining_s: float | None,
    final: str | None = None,
) -> RetryDecision:
    """Whether to retry the same target after an attempt, and after how long.

    Checks in order:

    1. The outcome must be retryable: its status (see :func:`retry_status`: timeouts count
       as 408, connect errors, invalid responses and stream errors as 502) is in
       ``settings.on_status_codes``, else ``why_not="status_not_retryable"``. A
       ``DEADLINE`` failure is never retried (``"deadline"``).
    2. ``retries_done < settings.attempts``, else ``"attempts_exhausted"``.
    3. The delay is :func:`backoff_delay` for retry ``retries_done + 1``; when
       ``settings.use_retry_after_header`` and the answer carries a usable retry hint (any
       retryable status, not only 429), the hint replaces it. A hint above
       ``policy.max_retry_after_s`` → ``"retry_after_too_long"``.
    4. With a request budget (``remaining_s`` not ``None``), a delay ``>= remaining_s``
       → ``"deadline"``.

    An answer the finality policy found final (``final``: its error code, see
    :func:`~relaygate.strategies.finality.final_code`) is never retried (``"final_error"``),
    whatever the codes say.
    """
    if failure is Reason.DEADLINE:
        return RetryDecision(retry=False, why_not="deadline")
    if final is not None:
        return RetryDecision(retry=False, why_not="final_error")
    effective = retry_status(status, failure)
    if effective is None or effective not in settings.on_status_codes:
        return RetryDecision(retry=False, why_not="status_not_retryable")
    if retries_done >= settings.attempts:
        return RetryDecision(retry=False, why_not="attempts_exhausted")

    delay = backoff_delay(policy, retries_done + 1, rand)
    source: Literal["backoff", "retry_after"] = "backoff"
    if settings.use_retry_after_header:
        hinted = parse_retry_after(headers, now_epoch_s)
        if hinted is not None:
            delay, source = hinted, "retry_after"
            if hinted > policy.max_retry_after_s:
                return RetryDecision(
                    retry=False, delay_s=delay, source=source, why_not="retry_after_too_long"
                )
    if remaining_s is not None and delay >= remaining_s:
        return RetryDecision(retry=False, delay_s=delay, source=source, why_not="deadline")
    return RetryDecision(retry=True, delay_s=delay, source=source)
