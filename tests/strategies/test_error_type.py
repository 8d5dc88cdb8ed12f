"""One ``error.type`` vocabulary: an error status is its code, anything else its reason."""

from __future__ import annotations

import pytest

from relaygate.strategies.reasons import error_type


@pytest.mark.parametrize(
    "reason,status,expected",
    [
        ("ok", 200, None),
        ("status_5xx", 503, "503"),
        ("status_5xx", 500, "500"),
        ("status_429", 429, "429"),
        ("status_4xx", 404, "404"),
        ("timeout", None, "timeout"),
        ("deadline", None, "deadline"),
        ("connect_error", None, "connect_error"),
        ("invalid_response", 200, "invalid_response"),
        ("stream_error", 200, "stream_error"),
        ("client_disconnected", None, "client_disconnected"),
        ("client_disconnected", 200, "client_disconnected"),
        ("cancelled", None, "cancelled"),
        ("internal_error", None, "internal_error"),
        ("status_5xx", None, "status_5xx"),
    ],
)
def test_error_type_of_each_outcome(reason: str, status: int | None, expected: str | None) -> None:
    """Success sets none; an error status is its code as a string; anything else its reason."""
    assert error_type(reason, status) == expected
