"""Tail sampling's decision, as a table: every interesting trace is kept, clean successes
are sampled by the trace id at ``keep_ok_ratio``."""

from __future__ import annotations

import pytest

from relaygate.strategies.trace_sampling import (
    REASONS,
    Decision,
    RequestFacts,
    TailPolicy,
    decide,
    ratio_keeps,
)

NONE = TailPolicy(keep_ok_ratio=0.0, latency_threshold_s=2.0)
"""Clean successes are never kept: whatever is kept was kept for a reason."""

LOW_ID = 1  # below any positive ratio's bound
HIGH_ID = (1 << 64) - 1  # above every ratio's bound below 1


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        # A clean, fast success: the ratio decides (0 drops it).
        (RequestFacts("ok", ["ok"], latency_s=0.1), Decision(False, "ratio")),
        # Any outcome other than ok is kept, the client's leaving under its own name.
        (RequestFacts("status_5xx", ["status_5xx"]), Decision(True, "error")),
        (RequestFacts("stream_error", ["stream_error"]), Decision(True, "error")),
        (RequestFacts("refused"), Decision(True, "error")),
        (RequestFacts("status_4xx", ["status_4xx"]), Decision(True, "error")),
        (RequestFacts("client_disconnected", ["ok"]), Decision(True, "client_abort")),
        (RequestFacts("cancelled", ["cancelled"]), Decision(True, "client_abort")),
        # An error wins over everything a success could show.
        (
            RequestFacts("timeout", ["timeout", "timeout"], fallbacks=1),
            Decision(True, "error"),
        ),
        # Successes that needed help: timeouts, stream recovery, fallback, retry, in this order.
        (RequestFacts("ok", ["timeout", "ok"], fallbacks=1), Decision(True, "timeout")),
        (RequestFacts("ok", ["deadline", "ok"]), Decision(True, "timeout")),
        (RequestFacts("ok", ["stream_idle", "ok"], recovered=True), Decision(True, "timeout")),
        (
            RequestFacts("ok", ["stream_error", "ok"], fallbacks=1, recovered=True),
            Decision(True, "stream_recovery"),
        ),
        (RequestFacts("ok", ["status_5xx", "ok"], fallbacks=1), Decision(True, "fallback")),
        (RequestFacts("ok", ["status_429", "ok"]), Decision(True, "retry")),
        # Slow: strictly above the threshold.
        (RequestFacts("ok", ["ok"], latency_s=2.5), Decision(True, "slow")),
        (RequestFacts("ok", ["ok"], latency_s=2.0), Decision(False, "ratio")),
        # A caller's sampled traceparent keeps an otherwise clean trace.
        (RequestFacts("ok", ["ok"], parent_sampled=True), Decision(True, "parent_sampled")),
        (
            RequestFacts("ok", ["status_5xx", "ok"], parent_sampled=True),
            Decision(True, "retry"),
        ),
    ],
)
def test_decision_table(facts: RequestFacts, expected: Decision) -> None:
    assert decide(NONE, facts) == expected
    assert expected.reason in REASONS


def test_without_a_latency_rule_a_slow_success_is_sampled() -> None:
    policy = TailPolicy(keep_ok_ratio=0.0, latency_threshold_s=None)
    assert decide(policy, RequestFacts("ok", ["ok"], latency_s=600.0)) == Decision(False, "ratio")


@pytest.mark.parametrize(
    ("ratio", "trace_id", "kept"),
    [
        (0.0, LOW_ID, False),
        (0.0, 0, False),
        (1.0, HIGH_ID, True),
        (0.5, LOW_ID, True),
        (0.5, HIGH_ID, False),
        (0.5, (1 << 63) - 1, True),
        (0.5, 1 << 63, False),
        # Only the low 64 bits draw, as TraceIdRatioBased does.
        (0.5, (1 << 100) | LOW_ID, True),
    ],
)
def test_the_ratio_draws_on_the_trace_id(ratio: float, trace_id: int, kept: bool) -> None:
    assert ratio_keeps(ratio, trace_id) is kept
    policy = TailPolicy(keep_ok_ratio=ratio)
    assert decide(policy, RequestFacts("ok", ["ok"], trace_id=trace_id)).keep is kept


def test_the_ratio_keeps_about_its_share_of_random_ids() -> None:
    import random

    rng = random.Random(16)
    kept = sum(ratio_keeps(0.1, rng.getrandbits(128)) for _ in range(20_000))
    assert 1_700 < kept < 2_300


def test_a_policy_samples_only_below_ratio_one() -> None:
    assert TailPolicy(keep_ok_ratio=0.99).samples
    assert not TailPolicy(keep_ok_ratio=1.0).samples
    assert decide(TailPolicy(), RequestFacts("ok", ["ok"], trace_id=HIGH_ID)).keep
