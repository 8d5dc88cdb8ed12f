"""The route story: every upstream attempt of a request, grouped by target, in order."""

from __future__ import annotations

import pytest

from relaygate.exchange import AttemptRecord
from relaygate.route_story import attempt_token, cap_story, route_story
from tests.fakes import target

A = target("config.targets[0]")
B = target("config.targets[1]")
C = target("config.targets[2]")


def rec(tgt: object, status: int, reason: str) -> AttemptRecord:
    """An attempt record of one of this module's targets."""
    assert tgt is A or tgt is B or tgt is C
    return AttemptRecord(target=tgt, attempt=1, status=status, reason=reason, duration_s=0.01)


@pytest.mark.parametrize(
    ("status", "reason", "token"),
    [
        (200, "ok", "200"),
        (429, "status_429", "429"),
        (404, "status_4xx", "404"),
        (503, "status_5xx", "503"),
        (408, "timeout", "timeout"),
        (502, "connect_error", "connect_error"),
        (502, "invalid_response", "invalid_response"),
        (502, "stream_error", "stream_error"),
        (504, "deadline", "deadline"),
        (499, "cancelled", "cancelled"),
    ],
)
def test_an_attempt_is_its_status_or_the_reason_the_gateway_answered_for_it(
    status: int, reason: str, token: str
) -> None:
    assert attempt_token(rec(A, status, reason)) == token


def test_no_attempts_tell_an_empty_story() -> None:
    assert route_story([]) == ""


def test_a_single_success_is_one_group() -> None:
    assert route_story([rec(A, 200, "ok")]) == "config.targets[0]:200"


def test_retries_of_one_target_share_a_group() -> None:
    story = route_story([rec(A, 503, "status_5xx"), rec(A, 503, "status_5xx"), rec(A, 200, "ok")])
    assert story == "config.targets[0]:503,503,200"


def test_fallbacks_join_groups_in_the_order_tried() -> None:
    story = route_story(
        [
            rec(A, 503, "status_5xx"),
            rec(A, 503, "status_5xx"),
            rec(B, 408, "timeout"),
            rec(C, 200, "ok"),
        ]
    )
    assert story == "config.targets[0]:503,503>config.targets[1]:timeout>config.targets[2]:200"


def test_a_target_tried_again_later_starts_a_new_group() -> None:
    story = route_story([rec(A, 503, "status_5xx"), rec(B, 503, "status_5xx"), rec(A, 200, "ok")])
    assert story == "config.targets[0]:503>config.targets[1]:503>config.targets[0]:200"


STORY = "config.targets[0]:503,503>config.targets[1]:timeout>config.targets[2]:200"


@pytest.mark.parametrize(
    ("max_bytes", "expected"),
    [
        (len(STORY), STORY),
        (len(STORY) - 1, "config.targets[0]:503,503>config.targets[1]:timeout...(+1 more)"),
        (40, "config.targets[0]:503,503...(+2 more)"),
        (37, "config.targets[0]:503,503...(+2 more)"),
        (36, "config.targets[0]:503...(+3 more)"),
        (20, "...(+4 more)"),
    ],
    ids=["fits", "last-attempt-cut", "cut-in-a-group", "exact-fit", "one-less", "nothing-fits"],
)
def test_a_capped_story_is_cut_at_an_attempt_boundary_and_counts_the_rest(
    max_bytes: int, expected: str
) -> None:
    capped = cap_story(STORY, max_bytes)
    assert capped == expected
    assert len(capped.encode()) <= max_bytes
