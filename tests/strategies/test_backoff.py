"""Decision tables for backoff delays, retry-after parsing and retry decisions."""

from __future__ import annotations

import math
from email.utils import formatdate

import pytest

from relaygate.config.model import RetrySettings
from relaygate.strategies import (
    Backoff,
    Reason,
    RetryDecision,
    backoff_delay,
    decide_retry,
    parse_retry_after,
)

NOW = 1_700_000_000.0
NO_JITTER = Backoff(initial_s=0.5, multiplier=2.0, max_s=10.0, jitter=0.0)


def http_date(epoch_s: float) -> str:
    return formatdate(epoch_s, usegmt=True)


# --- backoff_delay -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_number", "expected"),
    [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 10.0), (7, 10.0), (50, 10.0)],
    ids=["r1", "r2", "r3", "r4", "r5", "r6-capped", "r7-capped", "r50-capped"],
)
def test_backoff_grows_geometrically_until_max(retry_number: int, expected: float) -> None:
    assert backoff_delay(NO_JITTER, retry_number, 0.5) == pytest.approx(expected)


def test_backoff_huge_retry_number_is_capped_without_overflow() -> None:
    assert backoff_delay(NO_JITTER, 100_000, 0.3) == 10.0


@pytest.mark.parametrize("retry_number", [0, -3], ids=["zero", "negative"])
def test_backoff_retry_number_below_one_counts_as_first(retry_number: int) -> None:
    assert backoff_delay(NO_JITTER, retry_number, 0.5) == 0.5


@pytest.mark.parametrize(
    ("rand", "expected"),
    [(0.0, 0.8), (0.5, 1.0), (0.25, 0.9), (math.nextafter(1.0, 0.0), 1.2)],
    ids=["rand0-lowest", "rand-half-unscaled", "rand-quarter", "rand-just-below-1-highest"],
)
def test_backoff_jitter_scales_within_bounds(rand: float, expected: float) -> None:
    policy = Backoff(initial_s=1.0, multiplier=2.0, max_s=10.0, jitter=0.2)
    assert backoff_delay(policy, 1, rand) == pytest.approx(expected)


@pytest.mark.parametrize("rand", [i / 20 for i in range(20)], ids=lambda r: f"rand={r}")
def test_backoff_jitter_stays_within_fraction_of_base(rand: float) -> None:
    policy = Backoff(initial_s=2.0, multiplier=2.0, max_s=100.0, jitter=0.3)
    assert 1.4 <= backoff_delay(policy, 1, rand) <= 2.6


@pytest.mark.parametrize("rand", [0.0, 0.5, 0.99], ids=["rand0", "rand-half", "rand-high"])
def test_backoff_jitter_never_exceeds_max(rand: float) -> None:
    policy = Backoff(initial_s=1.0, multiplier=2.0, max_s=4.0, jitter=0.5)
    delay = backoff_delay(policy, 10, rand)
    assert 2.0 <= delay <= 4.0


@pytest.mark.parametrize(
    ("jitter", "expected_low"),
    [(-1.0, 1.0), (5.0, 0.0)],
    ids=["negative-jitter-is-none", "jitter-above-one-is-one"],
)
def test_backoff_jitter_fraction_is_clamped(jitter: float, expected_low: float) -> None:
    policy = Backoff(initial_s=1.0, multiplier=2.0, max_s=10.0, jitter=jitter)
    assert backoff_delay(policy, 1, 0.0) == pytest.approx(expected_low)


# --- parse_retry_after -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250.5"}, 0.2505),
        ({"x-ms-retry-after-ms": "2000"}, 2.0),
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "1.25"}, 1.25),
        ({"retry-after": " 3 "}, 3.0),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": http_date(NOW + 30)}, 30.0),
        ({"retry-after-ms": "100", "x-ms-retry-after-ms": "200", "retry-after": "9"}, 0.1),
        ({"x-ms-retry-after-ms": "200", "retry-after": "9"}, 0.2),
        ({"retry-after-ms": "bogus", "retry-after": "4"}, 4.0),
        ({"retry-after-ms": "-5", "x-ms-retry-after-ms": "300"}, 0.3),
        ({"retry-after-ms": "nan", "retry-after": "2"}, 2.0),
        ({"retry-after-ms": "inf", "retry-after": "2"}, 2.0),
    ],
    ids=[
        "ms-integer",
        "ms-decimal",
        "x-ms-variant",
        "seconds-integer",
        "seconds-decimal",
        "seconds-padded",
        "seconds-zero",
        "http-date-future",
        "retry-after-ms-wins",
        "x-ms-before-retry-after",
        "invalid-ms-falls-through",
        "negative-ms-falls-through",
        "nan-ms-falls-through",
        "inf-ms-falls-through",
    ],
)
def test_retry_after_header_is_parsed(headers: dict[str, str], expected: float) -> None:
    assert parse_retry_after(headers, NOW) == pytest.approx(expected)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"retry-after": ""},
        {"retry-after": "soon"},
        {"retry-after": "-3"},
        {"retry-after": "nan"},
        {"retry-after": "inf"},
        {"retry-after": "1e3"},
        {"retry-after": http_date(NOW - 60)},
        {"retry-after": "Mon, 99 Foo 2024 25:61:61 GMT"},
        {"retry-after-ms": "-1", "x-ms-retry-after-ms": "x"},
        {"Retry-After": "5"},
    ],
    ids=[
        "no-headers",
        "empty",
        "word",
        "negative-seconds",
        "nan-seconds",
        "inf-seconds",
        "exponent-notation",
        "http-date-past",
        "http-date-garbage",
        "all-invalid",
        "names-must-be-lowercased",
    ],
)
def test_retry_after_unusable_yields_none(headers: dict[str, str]) -> None:
    assert parse_retry_after(headers, NOW) is None


# --- decide_retry ------------------------------------------------------------------------

RETRY3 = RetrySettings(attempts=3)
RETRY3_HEADER = RetrySettings(attempts=3, use_retry_after_header=True)


def decide(
    *,
    status: int = 503,
    failure: Reason | None = None,
    settings: RetrySettings = RETRY3,
    retries_done: int = 0,
    headers: dict[str, str] | None = None,
    remaining_s: float | None = None,
    policy: Backoff = NO_JITTER,
) -> RetryDecision:
    return decide_retry(
        status=status,
        failure=failure,
        settings=settings,
        retries_done=retries_done,
        policy=policy,
        rand=0.5,
        headers=headers or {},
        now_epoch_s=NOW,
        remaining_s=remaining_s,
    )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"status": 503}, RetryDecision(True, 0.5, "backoff")),
        ({"status": 429, "retries_done": 1}, RetryDecision(True, 1.0, "backoff")),
        ({"status": 500, "retries_done": 2}, RetryDecision(True, 2.0, "backoff")),
        ({"status": 502, "retries_done": 3}, RetryDecision(False, why_not="attempts_exhausted")),
        (
            {"status": 502, "settings": RetrySettings(attempts=0)},
            RetryDecision(False, why_not="attempts_exhausted"),
        ),
        ({"status": 400}, RetryDecision(False, why_not="status_not_retryable")),
        ({"status": 200}, RetryDecision(False, why_not="status_not_retryable")),
        (
            {"status": 400, "retries_done": 3},
            RetryDecision(False, why_not="status_not_retryable"),
        ),
        (
            {
                "status": 418,
                "settings": RetrySettings(attempts=2, on_status_codes=frozenset({418})),
            },
            RetryDecision(True, 0.5, "backoff"),
        ),
        (
            {
                "status": 503,
                "settings": RetrySettings(attempts=2, on_status_codes=frozenset({429})),
            },
            RetryDecision(False, why_not="status_not_retryable"),
        ),
    ],
    ids=[
        "first-retry-on-503",
        "second-retry-doubles",
        "third-retry-doubles-again",
        "attempts-exhausted",
        "retries-disabled",
        "400-not-in-default-codes",
        "success-not-retried",
        "not-retryable-reported-before-exhausted",
        "custom-code-retried",
        "status-outside-custom-codes",
    ],
)
def test_retry_decision_by_status_and_attempts(
    kwargs: dict[str, object], expected: RetryDecision
) -> None:
    assert decide(**kwargs) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("failure", "codes", "retry"),
    [
        (Reason.CONNECT_ERROR, frozenset({502}), True),
        (Reason.CONNECT_ERROR, frozenset({429, 503}), False),
        (Reason.TIMEOUT, frozenset({408}), True),
        (Reason.TIMEOUT, frozenset({429, 500, 502, 503, 504}), False),
        (Reason.INVALID_RESPONSE, frozenset({502}), True),
        (Reason.INVALID_RESPONSE, frozenset({408}), False),
        (Reason.STREAM_ERROR, frozenset({502}), True),
    ],
    ids=[
        "connect-error-retried-as-502",
        "connect-error-not-retried-without-502",
        "timeout-retried-as-408",
        "timeout-not-retried-by-default-codes",
        "invalid-response-retried-as-502",
        "invalid-response-not-retried-without-502",
        "stream-error-retried-as-502",
    ],
)
def test_transport_failure_retried_by_its_synthetic_status(
    failure: Reason, codes: frozenset[int], retry: bool
) -> None:
    settings = RetrySettings(attempts=1, on_status_codes=codes)
    decision = decide(status=0, failure=failure, settings=settings)
    assert decision.retry is retry
    if not retry:
        assert decision.why_not == "status_not_retryable"


def test_deadline_failure_is_never_retried() -> None:
    codes = frozenset({408, 502, 503})
    settings = RetrySettings(attempts=3, on_status_codes=codes)
    decision = decide(status=503, failure=Reason.DEADLINE, settings=settings)
    assert decision == RetryDecision(False, why_not="deadline")


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (429, {"retry-after-ms": "1500"}, RetryDecision(True, 1.5, "retry_after")),
        (503, {"retry-after": "3"}, RetryDecision(True, 3.0, "retry_after")),
        (429, {"retry-after": http_date(NOW + 20)}, RetryDecision(True, 20.0, "retry_after")),
        (429, {"retry-after": "60"}, RetryDecision(True, 60.0, "retry_after")),
        (
            429,
            {"retry-after": "61"},
            RetryDecision(False, 61.0, "retry_after", "retry_after_too_long"),
        ),
        (429, {"retry-after": "later"}, RetryDecision(True, 0.5, "backoff")),
        (429, {}, RetryDecision(True, 0.5, "backoff")),
        (400, {"retry-after": "1"}, RetryDecision(False, why_not="status_not_retryable")),
    ],
    ids=[
        "retry-after-ms-replaces-backoff",
        "retry-after-on-5xx-honoured",
        "http-date-honoured",
        "at-cap-allowed",
        "above-cap-refused",
        "invalid-header-uses-backoff",
        "no-header-uses-backoff",
        "header-does-not-make-status-retryable",
    ],
)
def test_retry_after_header_when_enabled(
    status: int, headers: dict[str, str], expected: RetryDecision
) -> None:
    assert decide(status=status, headers=headers, settings=RETRY3_HEADER) == expected


def test_retry_after_header_ignored_when_disabled() -> None:
    decision = decide(status=429, headers={"retry-after": "3600"}, settings=RETRY3)
    assert decision == RetryDecision(True, 0.5, "backoff")


@pytest.mark.parametrize(
    ("remaining_s", "headers", "expected"),
    [
        (None, {}, RetryDecision(True, 0.5, "backoff")),
        (0.6, {}, RetryDecision(True, 0.5, "backoff")),
        (0.5, {}, RetryDecision(False, 0.5, "backoff", "deadline")),
        (0.1, {}, RetryDecision(False, 0.5, "backoff", "deadline")),
        (0.0, {}, RetryDecision(False, 0.5, "backoff", "deadline")),
        (5.0, {"retry-after": "5"}, RetryDecision(False, 5.0, "retry_after", "deadline")),
        (5.0, {"retry-after": "4"}, RetryDecision(True, 4.0, "retry_after")),
    ],
    ids=[
        "no-budget",
        "budget-above-delay",
        "budget-equal-to-delay",
        "budget-below-delay",
        "budget-spent",
        "retry-after-equal-to-budget",
        "retry-after-within-budget",
    ],
)
def test_retry_refused_when_delay_reaches_deadline(
    remaining_s: float | None, headers: dict[str, str], expected: RetryDecision
) -> None:
    decision = decide(status=503, headers=headers, settings=RETRY3_HEADER, remaining_s=remaining_s)
    assert decision == expected
