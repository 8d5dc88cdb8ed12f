"""Rate-limit decisions as tables: the sliding estimate, retry-after, keys and spend."""

from __future__ import annotations

import pytest

from relaygate.strategies.ratelimit import (
    Counters,
    Price,
    RateLimits,
    counter_keys,
    judge,
    period_position,
    seconds_until_below,
    spend_micro_usd,
    window_position,
)

RPM5 = RateLimits(requests_per_minute=5)


@pytest.mark.parametrize(
    ("counters", "fraction", "refused"),
    [
        # Within one window the count is exact: the fifth is admitted, the sixth is not.
        (Counters(requests=5), 0.5, False),
        (Counters(requests=6), 0.5, True),
        # The previous minute weighs by the part of it still inside the last 60 s.
        (Counters(requests=1, requests_previous=10), 0.6, False),  # 10*0.4 + 1 = 5
        (Counters(requests=2, requests_previous=10), 0.6, True),  # 10*0.4 + 2 = 6
        (Counters(requests=1, requests_previous=100), 0.0, True),
        (Counters(requests=1, requests_previous=100), 0.999, False),
    ],
)
def test_requests_per_minute_use_the_sliding_estimate(
    counters: Counters, fraction: float, refused: bool
) -> None:
    refusal = judge(RPM5, counters, fraction, 100)
    assert (refusal is not None) == refused
    if refusal is not None:
        assert refusal.limit == "requests"
        assert refusal.retry_after_s >= 1


def test_a_full_window_says_to_come_back_once_enough_of_it_has_slid_out() -> None:
    # 6 requests counted (5 earlier + this one) 30 s into the minute: the 5 earlier ones
    # must slide out far enough for one more: at the next minute 5*(1-g) + 1 <= 5, g >= 0.2.
    refusal = judge(RPM5, Counters(requests=6), 0.5, 100)
    assert refusal is not None
    assert refusal.retry_after_s == 30 + 12


@pytest.mark.parametrize(
    ("previous", "current", "allowed", "fraction", "seconds"),
    [
        (0, 3, 5, 0.5, 0.0),  # already below
        (10, 0, 5, 0.0, 30.0),  # half of the previous minute must slide out
        (10, 0, 5, 0.5, 0.0),
        (0, 10, 5, 0.0, 90.0),  # this minute, then half of it as the previous one
    ],
)
def test_seconds_until_below(
    previous: int, current: int, allowed: float, fraction: float, seconds: float
) -> None:
    assert seconds_until_below(previous, current, allowed, fraction) == pytest.approx(seconds)


def test_tokens_refuse_once_the_minute_has_used_its_tokens() -> None:
    limits = RateLimits(tokens_per_minute=1000)
    assert judge(limits, Counters(tokens=999), 0.1, 100) is None
    refusal = judge(limits, Counters(tokens=1000), 0.1, 100)
    assert refusal is not None and refusal.limit == "tokens"


def test_a_spent_budget_refuses_until_the_period_ends() -> None:
    limits = RateLimits(budget_usd=2.0)
    assert judge(limits, Counters(spend_micro_usd=1_999_999), 0.0, 3600) is None
    refusal = judge(limits, Counters(spend_micro_usd=2_000_000), 0.0, 3600)
    assert refusal is not None
    assert (refusal.limit, refusal.retry_after_s) == ("spend", 3600)


def test_no_limits_admit_anything() -> None:
    assert judge(RateLimits(), Counters(requests=10**9, tokens=10**9), 0.3, 1) is None


def test_spend_is_priced_per_million_tokens_and_rounded_up() -> None:
    price = Price(input_per_mtok=2.5, output_per_mtok=10.0)
    # 1000 in, 500 out: 0.0025 + 0.005 USD = 7500 micro-USD.
    assert spend_micro_usd(price, (1000, 500)) == 7500
    assert spend_micro_usd(price, (1, 0)) == 3
    assert spend_micro_usd(None, (1000, 500)) == 0
    assert spend_micro_usd(price, None) == 0


def test_windows_and_periods() -> None:
    assert window_position(120.0) == (2, 0.0)
    assert window_position(150.0) == (2, 0.5)
    # 2026-12-01T23:00:00Z: one hour left of the day, 31 days and one hour of the month.
    now = 1_796_166_000.0
    assert period_position("day", now) == ("d2026-12-01", 3600)
    assert period_position("month", now) == ("m2026-12", 30 * 86_400 + 3600)


def test_counter_keys_hash_the_subject_and_name_both_windows() -> None:
    keys = counter_keys("target:openai/" + "m" * 5000, RateLimits(requests_per_minute=1), 150.0)
    assert keys.requests.endswith(":r:2") and keys.requests_previous.endswith(":r:1")
    assert len(keys.requests) < 64
    other = counter_keys("key:alice", RateLimits(requests_per_minute=1), 150.0)
    assert other.requests != keys.requests
