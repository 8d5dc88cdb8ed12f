"""Availability in the rules and the dashboard is the policy in code, computed from outcomes.

:mod:`relaygate.strategies.outcome` says which request outcomes are the client's doing (left
out of availability) and that every other outcome but ``ok`` is a failure. The recording
rules the burn alerts read, and the dashboard's failed-share panels, must match on exactly
those outcomes, never on the status line (a stream cut after its 200 has a 2xx status).
"""

from __future__ import annotations

import re

from relaygate.strategies.outcome import CLIENT_OUTCOMES, OK
from tests.dashboards.dashboard_files import (
    load_dashboard,
    load_generator,
    panel_queries,
    recording_rules,
)

COUNTED = f'outcome!~"{"|".join(sorted(CLIENT_OUTCOMES))}"'
FAILED = f'outcome!~"{OK}|{"|".join(sorted(CLIENT_OUTCOMES))}"'


def _error_ratio_rules() -> list[str]:
    return [
        rule["expr"]
        for rule in recording_rules()
        if rule["record"].startswith("config:relaygate_request_errors:")
    ]


def test_every_availability_window_counts_failed_outcomes_over_counted_ones() -> None:
    exprs = _error_ratio_rules()
    assert len(exprs) == 4  # 5m, 30m, 1h, 6h
    for expr in exprs:
        assert "status_class" not in expr, expr
        selectors = re.findall(r"relaygate_requests_total\{([^}]*)\}", expr)
        assert selectors, expr
        assert set(selectors) == {FAILED, COUNTED}, expr


def test_the_dashboard_failed_share_uses_the_same_outcomes() -> None:
    generate = load_generator()
    assert (generate.FAILED, generate.COUNTED) == (FAILED, COUNTED)
    exprs = [
        q.expr for q in panel_queries(load_dashboard()) if "relaygate_requests_total" in q.expr
    ]
    assert any(FAILED in expr and COUNTED in expr for expr in exprs)
    assert not any('status_class="5xx"' in expr for expr in exprs)
