"""Routing policy: pure decisions over the compiled config, with no I/O and no clocks.

Randomness and time are always passed in, so every decision is reproducible.
"""

from relaygate.strategies.backoff import (
    Backoff,
    RetryDecision,
    backoff_delay,
    decide_retry,
    parse_retry_after,
    retry_status,
)
from relaygate.strategies.budget import attempt_allowed
from relaygate.strategies.conditions import matches, validate_query
from relaygate.strategies.reasons import Reason, classify
from relaygate.strategies.selection import NoRoute, RoutingInput, pick_weighted, plan
from relaygate.strategies.triggers import should_fall_back

__all__ = [
    "Backoff",
    "NoRoute",
    "Reason",
    "RetryDecision",
    "RoutingInput",
    "attempt_allowed",
    "backoff_delay",
    "classify",
    "decide_retry",
    "matches",
    "parse_retry_after",
    "pick_weighted",
    "plan",
    "retry_status",
    "should_fall_back",
    "validate_query",
]
