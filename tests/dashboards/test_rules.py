"""The Prometheus rules are valid, unit-tested alert by alert, and documented.

The tests that run ``promtool`` carry the ``promtool`` marker. It must be installed
(``scripts/ensure-prometheus.sh``): a missing binary fails these tests instead of skipping
them, so a machine without it cannot pass silently.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.dashboards.dashboard_files import (
    ALERT_RULES,
    DASHBOARDS,
    ROOT,
    RULE_FILES,
    RULE_TESTS,
    alert_rules,
    load_yaml,
    readme_anchors,
    require_binary,
)

ALERT_NAMES = sorted({rule["alert"] for rule in alert_rules()})


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.promtool
def test_promtool_accepts_the_recording_and_alerting_rules() -> None:
    """``promtool check rules`` passes on both rule files (syntax, PromQL, templates)."""
    result = _promtool("check", "rules", *(str(p) for p in RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.promtool
def test_promtool_accepts_the_compose_prometheus_config_and_its_rule_files() -> None:
    """``dashboards/prometheus.yml`` (used by compose) is valid and its rule files resolve."""
    result = _promtool("check", "config", str(DASHBOARDS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rule files found" in result.stdout + result.stderr


def test_there_are_rule_unit_tests() -> None:
    """The promtool unit-test folder is not empty (a glob finding nothing would test nothing)."""
    assert len(RULE_TESTS) >= len(ALERT_NAMES)


@pytest.mark.promtool
@pytest.mark.parametrize("path", RULE_TESTS, ids=[p.name for p in RULE_TESTS])
def test_promtool_rule_unit_tests_pass(path: Path) -> None:
    """Every alert fires on its synthetic series and stays quiet on the others."""
    result = _promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("alert", ALERT_NAMES)
def test_every_alert_has_a_unit_test_where_it_fires(alert: str) -> None:
    """Each alert is expected to fire somewhere; promtool then checks all others stay quiet.

    promtool compares the complete set of firing alerts at each evaluation, so an expectation
    that lists only the alerting config also asserts that the healthy ones do not fire.
    """
    firing = [
        case
        for path in RULE_TESTS
        for group in load_yaml(path)["tests"]
        for case in group.get("alert_rule_test", [])
        if case["alertname"] == alert and case.get("exp_alerts")
    ]
    assert firing, f"no promtool test expects {alert} to fire"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: f"{r['alert']}-{r['labels']}")
def test_every_alert_has_summary_description_severity_and_a_runbook(rule: dict[str, Any]) -> None:
    """An alert tells the on-call person what happened and where the runbook is."""
    annotations = rule["annotations"]
    assert annotations["summary"].strip() and annotations["description"].strip()
    assert rule["labels"]["severity"] in ("page", "ticket", "warning")
    runbook = annotations["runbook_url"]
    assert runbook.startswith("dashboards/README.md#"), runbook


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: f"{r['alert']}-{r['labels']}")
def test_every_runbook_link_points_at_a_section_of_the_readme(rule: dict[str, Any]) -> None:
    """The runbook anchor resolves to a heading of ``dashboards/README.md``."""
    anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
    assert anchor in readme_anchors(), f"README.md has no section #{anchor}"
    assert anchor == rule["alert"].lower()


def test_every_alert_is_in_the_readme_alert_table() -> None:
    """The README's alert table lists every alert by name."""
    text = (DASHBOARDS / "README.md").read_text(encoding="utf-8")
    table = [line for line in text.splitlines() if line.startswith("|")]
    for alert in ALERT_NAMES:
        assert any(f"`{alert}`" in line for line in table), f"{alert} missing from the table"


def test_alert_file_is_the_one_compose_loads() -> None:
    """The compose Prometheus loads exactly the two rule files tested here."""
    config = load_yaml(DASHBOARDS / "prometheus.yml")
    assert sorted(config["rule_files"]) == sorted(f"rules/{p.name}" for p in RULE_FILES)
    assert ALERT_RULES in RULE_FILES
