"""Decision tables for outcome classification and fallback triggers."""

from __future__ import annotations

import pytest

from relaygate.strategies import Reason, classify, should_fall_back


@pytest.mark.parametrize(
    ("status", "failure", "expected"),
    [
        (200, None, Reason.OK),
        (201, None, Reason.OK),
        (299, None, Reason.OK),
        (429, None, Reason.STATUS_429),
        (400, None, Reason.STATUS_4XX),
        (404, None, Reason.STATUS_4XX),
        (499, None, Reason.STATUS_4XX),
        (500, None, Reason.STATUS_5XX),
        (503, None, Reason.STATUS_5XX),
        (599, None, Reason.STATUS_5XX),
        (101, None, Reason.STATUS_4XX),
        (304, None, Reason.STATUS_4XX),
        (0, None, Reason.STATUS_4XX),
        (408, Reason.TIMEOUT, Reason.TIMEOUT),
        (502, Reason.CONNECT_ERROR, Reason.CONNECT_ERROR),
        (200, Reason.INVALID_RESPONSE, Reason.INVALID_RESPONSE),
        (200, Reason.STREAM_ERROR, Reason.STREAM_ERROR),
        (0, Reason.DEADLINE, Reason.DEADLINE),
    ],
    ids=[
        "200-ok",
        "201-ok",
        "299-ok",
        "429-own-reason",
        "400-4xx",
        "404-4xx",
        "499-4xx",
        "500-5xx",
        "503-5xx",
        "599-5xx",
        "1xx-counts-as-4xx",
        "3xx-counts-as-4xx",
        "no-status-counts-as-4xx",
        "timeout-failure-wins",
        "connect-error-failure-wins",
        "invalid-response-wins-over-2xx",
        "stream-error-wins-over-2xx",
        "deadline-failure-wins",
    ],
)
def test_classify_maps_outcome_to_reason(
    status: int, failure: Reason | None, expected: Reason
) -> None:
    assert classify(status, failure) is expected


def test_reason_values_are_stable_label_strings() -> None:
    assert {r.value for r in Reason} == {
        "ok",
        "status_429",
        "status_4xx",
        "status_5xx",
        "timeout",
        "connect_error",
        "invalid_response",
        "stream_error",
        "stream_idle",
        "deadline",
        "no_route",
        "circuit_open",
        "rate_limited",
    }


@pytest.mark.parametrize(
    ("status", "failure", "expected"),
    [
        (200, None, False),
        (204, None, False),
        (400, None, True),
        (401, None, True),
        (429, None, True),
        (500, None, True),
        (503, None, True),
        (408, Reason.TIMEOUT, True),
        (502, Reason.CONNECT_ERROR, True),
        (200, Reason.INVALID_RESPONSE, True),
        (502, Reason.STREAM_ERROR, True),
    ],
    ids=[
        "200-stays",
        "204-stays",
        "400-moves-on",
        "401-moves-on",
        "429-moves-on",
        "500-moves-on",
        "503-moves-on",
        "timeout-moves-on",
        "connect-error-moves-on",
        "invalid-response-moves-on-despite-2xx",
        "stream-error-moves-on",
    ],
)
def test_fallback_without_codes_moves_on_for_any_failure(
    status: int, failure: Reason | None, expected: bool
) -> None:
    assert should_fall_back(status, failure, None) is expected


CODES = frozenset({429, 502, 503})


@pytest.mark.parametrize(
    ("status", "failure", "expected"),
    [
        (429, None, True),
        (503, None, True),
        (500, None, False),
        (400, None, False),
        (200, None, False),
        (502, Reason.CONNECT_ERROR, True),
        (502, Reason.INVALID_RESPONSE, True),
        (502, Reason.STREAM_ERROR, True),
        (408, Reason.TIMEOUT, False),
    ],
    ids=[
        "listed-429-moves-on",
        "listed-503-moves-on",
        "unlisted-500-stays",
        "unlisted-400-stays",
        "success-stays",
        "connect-error-as-502-moves-on",
        "invalid-response-as-502-moves-on",
        "stream-error-as-502-moves-on",
        "timeout-as-unlisted-408-stays",
    ],
)
def test_fallback_with_codes_matches_status_only(
    status: int, failure: Reason | None, expected: bool
) -> None:
    assert should_fall_back(status, failure, CODES) is expected


def test_fallback_with_timeout_code_listed_moves_on_for_timeouts() -> None:
    assert should_fall_back(408, Reason.TIMEOUT, frozenset({408})) is True


def test_fallback_with_empty_codes_never_moves_on() -> None:
    assert should_fall_back(503, Reason.CONNECT_ERROR, frozenset()) is False
