"""A request's outcome and how it counts for availability, as decision tables."""

from __future__ import annotations

from typing import Any

import pytest

from relaygate.strategies.outcome import Account, account, request_outcome

# (status, keyword inputs, outcome)
OUTCOMES: list[tuple[int, dict[str, Any], str]] = [
    (200, {"from_upstream": True, "last_reason": "ok"}, "ok"),
    # A stream that broke after its 200 is not a success, whatever its status line says.
    (
        200,
        {"from_upstream": True, "last_reason": "ok", "stream_failure": "stream_error"},
        "stream_error",
    ),
    # A client that hung up mid-stream, or the drain that cut a stream.
    (
        200,
        {"from_upstream": True, "last_reason": "ok", "cut": "client_disconnected"},
        "client_disconnected",
    ),
    (200, {"from_upstream": True, "cut": "gateway_shutting_down"}, "gateway_shutting_down"),
    (200, {"from_upstream": True, "cut": "cancelled"}, "cancelled"),
    # A stream that had already failed keeps its failure when the client leaves afterwards.
    (
        200,
        {"from_upstream": True, "stream_failure": "stream_error", "cut": "client_disconnected"},
        "stream_error",
    ),
    # Exhausted: the last attempt's reason.
    (503, {"from_upstream": True, "last_reason": "status_5xx"}, "status_5xx"),
    (429, {"from_upstream": True, "last_reason": "status_429"}, "status_429"),
    (400, {"from_upstream": True, "last_reason": "status_4xx"}, "status_4xx"),
    (408, {"from_upstream": True, "last_reason": "timeout", "failure": "timeout"}, "timeout"),
    (502, {"from_upstream": True, "failure": "invalid_response"}, "invalid_response"),
    (502, {"from_upstream": True}, "status_5xx"),
    # Answers the gateway made itself.
    (400, {"from_upstream": False}, "refused"),
    (413, {"from_upstream": False}, "refused"),
    (500, {"from_upstream": False}, "internal_error"),
    (499, {"from_upstream": False, "failure": "client_disconnected"}, "client_disconnected"),
    (503, {"from_upstream": False, "failure": "gateway_shutting_down"}, "gateway_shutting_down"),
]


@pytest.mark.parametrize(("status", "inputs", "expected"), OUTCOMES)
def test_request_outcome(status: int, inputs: dict[str, Any], expected: str) -> None:
    assert request_outcome(status, **inputs) == expected


ACCOUNTS: list[tuple[str, Account]] = [
    ("ok", Account.GOOD),
    ("refused", Account.CLIENT),
    ("status_4xx", Account.CLIENT),
    ("client_disconnected", Account.CLIENT),
    ("cancelled", Account.CLIENT),
    ("stream_error", Account.BAD),
    ("status_5xx", Account.BAD),
    ("status_429", Account.BAD),
    ("timeout", Account.BAD),
    ("deadline", Account.BAD),
    ("connect_error", Account.BAD),
    ("invalid_response", Account.BAD),
    ("gateway_shutting_down", Account.BAD),
    ("internal_error", Account.BAD),
    # An outcome nobody listed can never pass for availability.
    ("some_future_reason", Account.BAD),
]


@pytest.mark.parametrize(("outcome", "expected"), ACCOUNTS)
def test_how_an_outcome_counts_for_availability(outcome: str, expected: Account) -> None:
    assert account(outcome) is expected
