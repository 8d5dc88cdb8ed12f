"""The status board (relaygate.status.board): what record() turns into snapshot() data."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from relaygate.config.model import RoutingConfig, Strategy, Target
from relaygate.exchange import AttemptRecord, RequestContext
from relaygate.status import StatusBoard, health

A = Target(path="config.targets[0]", provider="openai", name="primary")
B = Target(path="config.targets[1]", provider="anthropic", name="backup")
C = Target(path="config.targets[2]", provider="together-ai")
TARGETS = {"A": A, "B": B, "C": C}

REASON_STATUS = {
    "ok": 200,
    "status_5xx": 503,
    "status_429": 429,
    "status_4xx": 400,
    "timeout": 504,
    "connect_error": 502,
}


class Clock:
    """A settable clock standing in for ``time.monotonic`` (and ``time.time``)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def config(config_id: str = "prod", *targets: Target) -> RoutingConfig:
    chosen = targets or (A, B, C)
    return RoutingConfig(
        id=config_id, root=Strategy(path="config", mode="fallback", children=chosen)
    )


PROD = config()


def attempt(target: Target, reason: str = "ok", duration_s: float = 0.01, n: int = 0) -> Any:
    return AttemptRecord(
        target=target, attempt=n, status=REASON_STATUS[reason], reason=reason, duration_s=duration_s
    )


def request(
    *attempts: AttemptRecord, routing: RoutingConfig | None = PROD, request_id: str = "req-1"
) -> RequestContext:
    return RequestContext(
        request_id=request_id,
        trace_id=request_id,
        metadata={},
        attempts=list(attempts),
        config=routing,
    )


def story(spec: str) -> list[AttemptRecord]:
    """``"A:status_5xx B:ok"`` -> attempts on A then B with those reasons."""
    out = []
    for item in spec.split():
        name, reason = item.split(":")
        out.append(attempt(TARGETS[name], reason))
    return out


def final_status(attempts: Sequence[AttemptRecord]) -> int:
    return attempts[-1].status if attempts else 503


def record(board: StatusBoard, spec: str, request_id: str = "req-1") -> None:
    attempts = story(spec)
    board.record(request(*attempts, request_id=request_id), final_status(attempts))


def config_view(snapshot: dict[str, Any], config_id: str = "prod") -> dict[str, Any]:
    matches = [c for c in snapshot["configs"] if c["id"] == config_id]
    assert len(matches) == 1, snapshot["configs"]
    view: dict[str, Any] = matches[0]
    return view


def target_view(snapshot: dict[str, Any], path: str, config_id: str = "prod") -> dict[str, Any]:
    targets = config_view(snapshot, config_id)["targets"]
    matches = [t for t in targets if t["path"] == path]
    assert len(matches) == 1, targets
    view: dict[str, Any] = matches[0]
    return view


def pairs(snapshot: dict[str, Any], config_id: str = "prod") -> dict[tuple[str, str], Any]:
    return {
        (p["from_label"], p["to_label"]): (p["count"], p["last_reason"])
        for p in config_view(snapshot, config_id)["fallbacks"]
    }


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def board(clock: Clock) -> StatusBoard:
    return StatusBoard(window_s=60, clock=clock, wall=lambda: 1_700_000_000.0)


# -- health ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("succeeded", "failed", "expected"),
    [
        (0, 0, "idle"),
        (1, 0, "healthy"),
        (95, 5, "healthy"),
        (94, 6, "degraded"),
        (1, 1, "degraded"),
        (49, 51, "failing"),
        (0, 1, "failing"),
    ],
)
def test_health_is_derived_from_the_success_ratio_in_the_window(
    succeeded: int, failed: int, expected: str
) -> None:
    assert health(succeeded, failed) == expected


# -- per-target success ratio ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("specs", "attempts", "succeeded", "ratio", "state"),
    [
        ([], 0, 0, None, "idle"),
        (["A:ok"], 1, 1, 1.0, "healthy"),
        (["A:ok", "A:ok", "A:ok", "A:status_5xx"], 4, 3, 0.75, "degraded"),
        (["A:status_5xx B:ok"], 1, 0, 0.0, "failing"),
        (["A:timeout A:timeout A:ok"], 3, 1, 0.3333, "failing"),
        (["A:status_429 A:ok", "A:ok"], 3, 2, 0.6667, "degraded"),
    ],
)
def test_target_success_ratio_counts_every_attempt_on_it(
    board: StatusBoard,
    specs: list[str],
    attempts: int,
    succeeded: int,
    ratio: float | None,
    state: str,
) -> None:
    for spec in specs:
        record(board, spec)
    view = target_view(board.snapshot([PROD]), A.path)
    assert (view["attempts"], view["succeeded"], view["success_ratio"], view["health"]) == (
        attempts,
        succeeded,
        ratio,
        state,
    )


def test_target_shows_its_last_attempt_status_and_reason(board: StatusBoard) -> None:
    record(board, "A:ok")
    record(board, "A:status_429 B:ok")
    last = target_view(board.snapshot([PROD]), A.path)["last"]
    assert (last["status"], last["reason"]) == (429, "status_429")


# -- fallbacks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        (["A:ok"], {}),
        (["A:status_5xx A:status_5xx A:ok"], {}),
        (["A:status_5xx B:ok"], {("primary", "backup"): (1, "status_5xx")}),
        (["A:status_5xx A:timeout B:ok"], {("primary", "backup"): (1, "timeout")}),
        (
            ["A:timeout B:status_429 C:ok"],
            {
                ("primary", "backup"): (1, "timeout"),
                ("backup", C.path): (1, "status_429"),
            },
        ),
        (
            ["A:status_5xx B:ok", "A:connect_error B:ok", "A:ok"],
            {("primary", "backup"): (2, "connect_error")},
        ),
        (
            ["A:status_5xx C:ok", "A:status_4xx B:ok"],
            {("primary", C.path): (1, "status_5xx"), ("primary", "backup"): (1, "status_4xx")},
        ),
    ],
)
def test_a_change_of_target_between_attempts_is_a_fallback_for_the_earlier_reason(
    board: StatusBoard, specs: list[str], expected: dict[tuple[str, str], Any]
) -> None:
    for spec in specs:
        record(board, spec)
    assert pairs(board.snapshot([PROD])) == expected


def test_fallback_pairs_are_listed_most_recent_first(board: StatusBoard, clock: Clock) -> None:
    record(board, "A:status_5xx C:ok")
    clock.now += 2
    record(board, "A:status_5xx B:ok")
    listed = [(p["from"], p["to"]) for p in config_view(board.snapshot([PROD]))["fallbacks"]]
    assert listed == [(A.path, B.path), (A.path, C.path)]


def test_last_fallback_names_the_request_its_route_story_and_each_hop(
    board: StatusBoard, clock: Clock
) -> None:
    record(board, "A:status_5xx A:status_5xx B:timeout C:ok", request_id="req-42")
    clock.now += 3
    record(board, "A:ok", request_id="req-43")
    snap = board.snapshot([PROD])
    last = snap["last_fallback"]
    assert last == {
        "config": "prod",
        "request_id": "req-42",
        "route": f"{A.path}:503,503>{B.path}:timeout>{C.path}:200",
        "status": 200,
        "age_s": 3.0,
        "at": "2023-11-14T22:13:20+00:00",
        "hops": [
            {
                "from": A.path,
                "from_label": "primary",
                "to": B.path,
                "to_label": "backup",
                "reason": "status_5xx",
            },
            {
                "from": B.path,
                "from_label": "backup",
                "to": C.path,
                "to_label": C.path,
                "reason": "timeout",
            },
        ],
    }
    assert config_view(snap)["last_fallback"] == last


def test_last_fallback_across_configs_is_the_most_recent_one(
    board: StatusBoard, clock: Clock
) -> None:
    other = config("other", A, B)
    record(board, "A:status_5xx B:ok", request_id="prod-req")
    clock.now += 1
    board.record(request(*story("A:timeout B:ok"), routing=other, request_id="other-req"), 200)
    snap = board.snapshot([PROD, other])
    assert snap["last_fallback"]["request_id"] == "other-req"
    assert config_view(snap, "prod")["last_fallback"]["request_id"] == "prod-req"


# -- config level ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("specs", "requests", "ratio", "fell_back", "state"),
    [
        ([], 0, None, 0, "idle"),
        (["A:ok", "A:ok"], 2, 1.0, 0, "healthy"),
        (["A:status_5xx B:ok", "A:ok"], 2, 1.0, 1, "degraded"),
        (["A:ok", "A:status_5xx B:status_5xx C:status_5xx"], 2, 0.5, 1, "degraded"),
        (["A:status_5xx B:status_5xx C:status_4xx"], 1, 0.0, 1, "failing"),
    ],
)
def test_config_health_follows_final_statuses_and_a_fallback_makes_it_degraded(
    board: StatusBoard,
    specs: list[str],
    requests: int,
    ratio: float | None,
    fell_back: int,
    state: str,
) -> None:
    for spec in specs:
        record(board, spec)
    view = config_view(board.snapshot([PROD]))
    assert (
        view["requests"],
        view["success_ratio"],
        view["fallback_requests"],
        view["health"],
    ) == (requests, ratio, fell_back, state)


@pytest.mark.parametrize(
    ("outcome", "succeeded"),
    [("ok", True), ("stream_error", False), ("client_disconnected", False)],
)
def test_a_request_succeeds_by_its_outcome_not_its_status_line(
    board: StatusBoard, outcome: str, succeeded: bool
) -> None:
    """A stream that broke, or was abandoned, after its 200 is not a success on the board."""
    ctx = request(*story("A:ok"))
    ctx.outcome = outcome
    board.record(ctx, 200)
    view = config_view(board.snapshot([PROD]))
    assert view["success_ratio"] == (1.0 if succeeded else 0.0)


def test_known_configs_list_every_target_in_config_order_before_any_traffic(
    board: StatusBoard,
) -> None:
    other = config("other", C)
    snap = board.snapshot([PROD, other])
    assert [(c["id"], c["known"], c["health"]) for c in snap["configs"]] == [
        ("prod", True, "idle"),
        ("other", True, "idle"),
    ]
    prod = config_view(snap)
    assert [(t["label"], t["provider"], t["health"], t["attempts"]) for t in prod["targets"]] == [
        ("primary", "openai", "idle", 0),
        ("backup", "anthropic", "idle", 0),
        (C.path, "together-ai", "idle", 0),
    ]
    assert snap["last_fallback"] is None


def test_configs_seen_only_in_traffic_follow_the_known_ones(board: StatusBoard) -> None:
    inline = config("inline", B)
    board.record(request(attempt(B), routing=inline), 200)
    snap = board.snapshot([PROD])
    assert [(c["id"], c["known"]) for c in snap["configs"]] == [("prod", True), ("inline", False)]
    assert [t["label"] for t in config_view(snap, "inline")["targets"]] == ["backup"]


def test_a_target_shows_the_latest_name_its_path_was_given(board: StatusBoard) -> None:
    renamed = Target(path=A.path, provider="openai", name="renamed")
    inline = config("inline", renamed)
    board.record(request(attempt(A), routing=inline), 200)
    board.record(request(attempt(renamed), routing=inline), 200)
    view = target_view(board.snapshot(), A.path, "inline")
    assert (view["label"], view["attempts"]) == ("renamed", 2)


def test_a_request_refused_before_routing_is_counted_as_unrouted_only(
    board: StatusBoard,
) -> None:
    board.record(request(routing=None), 401)
    snap = board.snapshot()
    assert (snap["unrouted"], snap["configs"]) == (1, [])


# -- latency --------------------------------------------------------------------------------


def test_latency_percentiles_are_nearest_rank_over_the_attempts_in_the_window(
    board: StatusBoard,
) -> None:
    for ms in range(100, 0, -1):
        board.record(request(attempt(A, duration_s=ms / 1000)), 200)
    view = target_view(board.snapshot([PROD]), A.path)
    assert (view["p50_ms"], view["p95_ms"]) == (50.0, 95.0)


def test_latency_includes_failed_attempts(board: StatusBoard) -> None:
    board.record(request(attempt(A, "timeout", duration_s=2.0), attempt(B)), 200)
    view = target_view(board.snapshot([PROD]), A.path)
    assert (view["p50_ms"], view["p95_ms"]) == (2000.0, 2000.0)


def test_an_idle_target_has_no_latency_or_ratio(board: StatusBoard) -> None:
    view = target_view(board.snapshot([PROD]), A.path)
    assert (view["p50_ms"], view["p95_ms"], view["success_ratio"], view["last"]) == (
        None,
        None,
        None,
        None,
    )


# -- the window -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("later_s", "attempts", "state"),
    [(0, 1, "failing"), (59, 1, "failing"), (59.9, 1, "failing"), (61, 0, "idle")],
)
def test_outcomes_leave_the_window_after_window_seconds(
    clock: Clock, later_s: float, attempts: int, state: str
) -> None:
    clock.now = 1000.0
    board = StatusBoard(window_s=60, clock=clock)
    record(board, "A:status_5xx B:ok")
    clock.now += later_s
    view = target_view(board.snapshot([PROD]), A.path)
    assert (view["attempts"], view["health"]) == (attempts, state)


def test_latency_samples_leave_the_window(board: StatusBoard, clock: Clock) -> None:
    board.record(request(attempt(A, duration_s=5.0)), 200)
    clock.now += 61
    board.record(request(attempt(A, duration_s=0.02)), 200)
    view = target_view(board.snapshot([PROD]), A.path)
    assert (view["attempts"], view["p95_ms"]) == (1, 20.0)


def test_an_expired_fallback_keeps_its_total_and_the_last_fallback_stays_shown(
    board: StatusBoard, clock: Clock
) -> None:
    record(board, "A:status_5xx B:ok", request_id="old")
    clock.now += 120
    snap = board.snapshot([PROD])
    [pair] = config_view(snap)["fallbacks"]
    assert (pair["count"], pair["total"], pair["last_age_s"]) == (0, 1, 120.0)
    assert (snap["last_fallback"]["request_id"], snap["last_fallback"]["age_s"]) == ("old", 120.0)
    assert (config_view(snap)["fallback_requests"], config_view(snap)["health"]) == (0, "idle")


# -- bounded memory -------------------------------------------------------------------------


def test_series_beyond_the_bound_are_ignored_and_counted_as_untracked(clock: Clock) -> None:
    board = StatusBoard(clock=clock, max_series=5)
    many = [Target(path=f"config.targets[{i}]", provider="openai") for i in range(50)]
    routing = config("wide", *many)
    for target in many:
        board.record(request(attempt(target), routing=routing), 200)
    snap = board.snapshot()
    tracked = config_view(snap, "wide")["targets"]
    assert [t["path"] for t in tracked] == [t.path for t in many[:4]]
    assert (board.footprint()["series"], snap["untracked"]) == (5, 46)


def test_fallback_pairs_count_towards_the_series_bound(clock: Clock) -> None:
    board = StatusBoard(clock=clock, max_series=3)
    record(board, "A:status_5xx B:status_5xx C:ok")
    snap = board.snapshot()
    assert (len(config_view(snap)["targets"]), config_view(snap)["fallbacks"]) == (2, [])
    assert snap["untracked"] == 3


def test_stored_buckets_and_samples_stay_bounded_however_long_traffic_runs(
    clock: Clock,
) -> None:
    board = StatusBoard(window_s=10, clock=clock, max_events=16)
    for _ in range(1000):
        record(board, "A:status_5xx B:ok")
        clock.now += 0.5
    footprint = board.footprint()
    series = 1 + 2 + 1  # the config, two targets, one fallback pair
    counters = 2 + 2 + 1  # requests and fallbacks per config, one per target and pair
    assert footprint["series"] == series
    assert footprint["buckets"] <= counters * (10 + 2)
    assert footprint["samples"] == 2 * 16
    assert target_view(board.snapshot(), A.path)["attempts"] in range(20, 23)


# -- shape ----------------------------------------------------------------------------------


def test_snapshot_is_plain_json(board: StatusBoard) -> None:
    record(board, "A:status_5xx B:ok")
    board.record(request(routing=None), 400)
    snap = board.snapshot([PROD])
    assert json.loads(json.dumps(snap)) == snap
    assert (snap["window_s"], snap["generated_at"]) == (60.0, "2023-11-14T22:13:20+00:00")


def test_a_config_listed_twice_is_shown_once(board: StatusBoard) -> None:
    assert [c["id"] for c in board.snapshot([PROD, PROD])["configs"]] == ["prod"]


@pytest.mark.parametrize(
    "kwargs", [{"window_s": 0}, {"window_s": -1}, {"max_events": 0}, {"max_series": 0}]
)
def test_board_refuses_a_bound_that_would_keep_nothing(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        StatusBoard(**kwargs)
