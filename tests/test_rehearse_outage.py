"""The primary-outage rehearsal: a target dies for a minute of scenario time and recovers.

Real fault simulators on loopback and the real pipeline; only scenario time is compressed
(a request every 4 s of it), so the checks are attempt counts and scenario times, never
wall-clock durations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from relaygate.rehearse.driver import rehearse
from relaygate.rehearse.outage import OutageSummary, outage_summary
from relaygate.rehearse.report import format_report
from relaygate.rehearse.results import Report
from relaygate.rehearse.scenario import BUILTIN_SCENARIOS, ScenarioError, scenario_from_dict
from relaygate.rehearse.target import load_rehearsal_config

CONFIG: dict[str, Any] = {
    "strategy": {"mode": "fallback"},
    "targets": [
        {
            "name": "primary",
            "provider": "openai",
            "api_key": "sk-primary",
            "override_params": {"model": "gpt-4o-mini"},
            "retry": {"attempts": 2},
        },
        {"name": "backup", "provider": "openai", "api_key": "sk-backup"},
    ],
}


def run(tmp: Path, server: dict[str, Any] | None = None) -> Report:
    document = {"configs": {"outage": CONFIG}, "default_config": "outage", **(server or {})}
    path = tmp / "outage.json"
    path.write_text(json.dumps(document))
    return rehearse(load_rehearsal_config(path), BUILTIN_SCENARIOS["primary-outage"])


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    return run(tmp_path_factory.mktemp("outage"))


@pytest.fixture(scope="module")
def summary(report: Report) -> OutageSummary:
    return outage_summary(report)


def test_the_dead_primary_gets_a_handful_of_attempts(summary: OutageSummary) -> None:
    """Five to open the circuit (three on the first request, two on the second), then one
    failed probe per 30 s cooldown: the issue's 45 attempts become 6."""
    assert summary.attempts_while_down == 6


def test_every_request_during_the_outage_is_answered_by_the_backup(
    summary: OutageSummary,
) -> None:
    assert summary.requests_while_down == 15
    assert summary.rescued == 15


def test_traffic_returns_within_one_cooldown_of_the_recovery(summary: OutageSummary) -> None:
    assert summary.back_after_s is not None
    assert 0 <= summary.back_after_s <= 30


def test_the_report_shows_open_probe_and_close(report: Report, summary: OutageSummary) -> None:
    changes = [(frm, to) for _, frm, to in summary.transitions]
    assert changes[0] == ("closed", "open")
    assert ("open", "half_open") in changes
    assert ("half_open", "open") in changes  # a probe during the outage failed
    assert changes[-1] == ("half_open", "closed")
    text = format_report(report)
    assert "Circuit breakers (scenario time)" in text
    assert "half_open -> closed  the probe succeeded: traffic is back" in text
    assert "config.targets[0]:open>config.targets[1]:200" in text
    assert "skipped (circuit open)" in text


def test_without_a_breaker_every_request_spends_its_retries_on_the_dead_primary(
    tmp_path: Path,
) -> None:
    off = outage_summary(run(tmp_path, {"breaker": {"enabled": False}}))
    assert off.attempts_while_down == 15 * 3
    assert off.transitions == ()


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"interval_ms": -1}, "interval_ms: must be >= 0"),
        ({"interval_ms": "4s"}, "interval_ms: must be a number"),
        ({"targets": {0: {"recover_at_ms": "soon"}}}, "targets.0.recover_at_ms: must be a number"),
    ],
)
def test_scenario_time_fields_are_checked(document: dict[str, Any], problem: str) -> None:
    with pytest.raises(ScenarioError, match=problem):
        scenario_from_dict(document)


def test_outage_summary_refuses_a_scenario_without_scenario_time(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(CONFIG))
    report = rehearse(load_rehearsal_config(path), BUILTIN_SCENARIOS["primary-down"])
    with pytest.raises(ValueError, match="not an outage scenario"):
        outage_summary(report)
