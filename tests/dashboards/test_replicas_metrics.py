"""Two replicas, one Prometheus: the dashboards and rules add the replicas up.

With several replicas each ``relaygate serve`` is scraped on its own (Kubernetes pod
discovery, one ``instance`` per pod), so every series exists once per replica. The
recording rules, alerts and dashboard panels must aggregate across instances; a rule that
kept ``instance`` would show one ratio per replica, and a panel would draw one line per pod.

Setup, all on loopback: fault simulators in threads (``primary`` answers 503 to 30 % of
requests, seeded; ``backup`` always succeeds), two ``relaygate serve`` processes with the
same fallback config, and the ``prometheus`` binary scraping both every second and
evaluating ``dashboards/rules/`` every second. Clients split a known workload unevenly over
the two replicas and read, from each answer's ``x-relaygate-route`` header, whether it fell
back. The recorded fallback ratio over the two replicas must equal what the clients saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import pytest

from relaygate.mock import MockSettings, create_mock_app
from tests.dashboards.dashboard_files import (
    alert_rules,
    load_dashboard,
    panel_queries,
    recording_rules,
)
from tests.dashboards.live_prometheus import (
    Prometheus,
    has_finite_value,
    run_prometheus,
    substitute,
)
from tests.servers import RunningServer, running_gateway, serve_in_thread

pytestmark = pytest.mark.promtool

CONFIG = "fallback"
"""The one config both replicas serve."""

FAILURE_RATE = 0.3
"""Share of requests the primary fault simulator answers with 503."""

SHARES = (200, 100)
"""Measured-phase requests sent to replica 0 and replica 1 (uneven on purpose: an average of
the two replicas' ratios is not the ratio over all requests)."""

CONCURRENCY = 8
"""Requests in flight at once, over both replicas."""

PER_INSTANCE = re.compile(r"\bby\s*\([^)]*\binstance\b")
"""A query that shows one line per instance on purpose (``sum by (instance) (...)``)."""


def _server_config(primary: RunningServer, backup: RunningServer) -> dict[str, Any]:
    def target(name: str, upstream: RunningServer, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "provider": "openai",
            "api_key": "test-key",
            "custom_host": f"{upstream.url}/v1",
            **extra,
        }

    return {
        "configs": {
            CONFIG: {
                "strategy": {"mode": "fallback"},
                "targets": [
                    target("primary", primary, retry={"attempts": 0}),
                    target("backup", backup),
                ],
            }
        },
        "telemetry": {"logs": {"level": "warning", "format": "json"}},
    }


@dataclass
class Replica:
    """One replica and what its clients saw."""

    server: RunningServer
    sent: int = 0
    fell_back: int = 0
    measured_sent: int = 0
    measured_fell_back: int = 0
    statuses: set[int] = field(default_factory=set)

    @property
    def instance(self) -> str:
        """The ``instance`` label Prometheus gives this replica's series."""
        return f"127.0.0.1:{self.server.port}"


async def _send(
    http: httpx.AsyncClient, limit: asyncio.Semaphore, replica: Replica, measured: bool
) -> bool:
    """One chat request to ``replica``; returns whether its route shows a fallback."""
    body = {"model": "any", "messages": [{"role": "user", "content": "hi"}]}
    async with limit:
        response = await http.post(
            f"{replica.server.url}/v1/chat/completions",
            json=body,
            headers={"x-portkey-config": CONFIG},
        )
    fell_back = ">" in response.headers.get("x-relaygate-route", "")
    replica.statuses.add(response.status_code)
    replica.sent += 1
    replica.fell_back += fell_back
    if measured:
        replica.measured_sent += 1
        replica.measured_fell_back += fell_back
    return fell_back


async def _warm_up(replicas: list[Replica]) -> None:
    """Create each replica's request and fallback series before the measured phase.

    A counter series appears at its first increment; Prometheus sees no increase for the
    samples before its first scrape of a series, so the measured phase starts only once both
    replicas' series have been scraped.
    """
    limit = asyncio.Semaphore(1)
    async with httpx.AsyncClient(timeout=30) as http:
        for replica in replicas:
            for _ in range(50):
                if await _send(http, limit, replica, measured=False):
                    break
            await _send(http, limit, replica, measured=False)


async def _measured(replicas: list[Replica]) -> None:
    limit = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(timeout=30) as http:
        await asyncio.gather(
            *(
                _send(http, limit, replica, measured=True)
                for replica, share in zip(replicas, SHARES, strict=True)
                for _ in range(share)
            )
        )


@dataclass
class Live:
    """Both replicas after the workload, with their final state scraped."""

    prometheus: Prometheus
    replicas: list[Replica]
    final_seen_at: float
    """Unix time at which Prometheus was seen holding the final counts."""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """Upstreams, two replicas and Prometheus, after the warm-up and the measured workload."""
    tmp = tmp_path_factory.mktemp("replicas")
    with contextlib.ExitStack() as stack:
        primary = stack.enter_context(
            serve_in_thread(
                create_mock_app(MockSettings(name="primary", error_rate=FAILURE_RATE, seed=7))
            )
        )
        backup = stack.enter_context(serve_in_thread(create_mock_app(MockSettings(name="backup"))))
        config = _server_config(primary, backup)
        replicas = [
            Replica(stack.enter_context(running_gateway(tmp / f"replica-{i}", config)))
            for i in range(2)
        ]
        prometheus = stack.enter_context(run_prometheus(tmp, *(r.server for r in replicas)))

        def scraped() -> Callable[[], bool]:
            def check() -> bool:
                by_instance = {
                    series["metric"].get("instance"): float(series["value"][1])
                    for series in prometheus.query(
                        f'sum by (instance) (relaygate_requests_total{{config="{CONFIG}"}})'
                    )
                }
                return all(by_instance.get(r.instance) == r.sent for r in replicas)

            return check

        asyncio.run(_warm_up(replicas))
        prometheus.wait_for("both replicas' warm-up to be scraped", scraped())
        asyncio.run(_measured(replicas))
        prometheus.wait_for("both replicas' final counts to be scraped", scraped())
        yield Live(prometheus, replicas, time.time())


def test_both_replicas_answered_their_share_and_fell_back(live: Live) -> None:
    """The premise: every request succeeded, each replica took its share and fell back."""
    for replica, share in zip(live.replicas, SHARES, strict=True):
        assert replica.statuses == {200}
        assert replica.measured_sent == share
        assert 0 < replica.measured_fell_back < share


def test_counters_summed_over_instances_equal_what_clients_saw(live: Live) -> None:
    """Each replica exports its own counts; summed without ``instance`` they are the clients'."""
    prometheus = live.prometheus
    per_instance = {
        series["metric"]["instance"]: float(series["value"][1])
        for series in prometheus.query(
            f'sum by (instance) (relaygate_fallbacks_total{{config="{CONFIG}"}})'
        )
    }
    assert per_instance == {r.instance: r.fell_back for r in live.replicas}
    total = prometheus.scalar(f'sum by (config) (relaygate_fallbacks_total{{config="{CONFIG}"}})')
    assert total == sum(r.fell_back for r in live.replicas)


def test_recorded_fallback_ratio_over_two_replicas_is_what_clients_saw(live: Live) -> None:
    """``config:relaygate_fallbacks_per_request:ratio_rate5m`` is one series for the config,
    equal to the clients' own fallbacks per request over both replicas.

    The rule takes ``rate()`` per replica series and sums them; ``rate()`` extrapolates each
    series towards the window start by at most one scrape interval. The two replicas are
    scraped at their own offsets within the interval, so the sum weighs each replica's
    increase by a slightly different factor: about a percent on a quiet machine, a few
    percent when scrapes are delayed under load, hence the 8 % tolerance.
    """
    prometheus = live.prometheus
    expr = f'config:relaygate_fallbacks_per_request:ratio_rate5m{{config="{CONFIG}"}}'
    series: list[dict[str, Any]] = []

    def evaluated_after_final_scrape() -> bool:
        series[:] = prometheus.query(f"{expr}[1m]")
        return len(series) == 1 and float(series[0]["values"][-1][0]) > live.final_seen_at

    prometheus.wait_for("the ratio rule after the final scrape", evaluated_after_final_scrape)
    assert "instance" not in series[0]["metric"]
    ratio = float(series[0]["values"][-1][1])
    sent = sum(r.measured_sent for r in live.replicas)
    fell_back = sum(r.measured_fell_back for r in live.replicas)
    observed = fell_back / sent
    assert ratio == pytest.approx(observed, rel=0.08)


def _has_data(live: Live, query: str) -> bool:
    return bool(live.prometheus.query(query))


def test_recording_rules_keep_no_instance_label(live: Live) -> None:
    """Every recorded series is the replicas' sum: no ``instance`` label, one series per
    label set (two replicas would otherwise give two)."""
    names = sorted({rule["record"] for rule in recording_rules()})
    for name in names:
        # A rule over a rate needs two scrapes in its range and one evaluation after them;
        # on a loaded machine that can come after the fixture's final scrape.
        live.prometheus.wait_for(f"{name} to be recorded", partial(_has_data, live, name))
        result = live.prometheus.query(name)
        labelsets = [tuple(sorted(s["metric"].items())) for s in result]
        assert all("instance" not in dict(ls) for ls in labelsets), name
        assert len(labelsets) == len(set(labelsets)), name


def test_dashboard_panels_add_the_replicas_up(live: Live) -> None:
    """Every panel query answers without ``instance`` (one line per config, target, ...),
    except those grouped ``by (instance)`` on purpose, which show both replicas."""
    prometheus = live.prometheus
    instances = {r.instance for r in live.replicas}
    per_instance: dict[str, set[str]] = {}
    leaking: list[str] = []
    for query in panel_queries(load_dashboard()):
        result = prometheus.query(substitute(query.expr))
        if not has_finite_value(result):
            continue  # data is the live integration test's concern
        seen = {s["metric"]["instance"] for s in result if "instance" in s["metric"]}
        if PER_INSTANCE.search(query.expr):
            per_instance[f"{query.panel} [{query.ref}]"] = seen
        elif seen:
            leaking.append(f"{query.panel} [{query.ref}]: {query.expr}")
    assert not leaking, "panel queries split by instance:\n" + "\n".join(leaking)
    assert per_instance, "no panel shows instances: PER_INSTANCE matches nothing"
    assert per_instance == dict.fromkeys(per_instance, instances)


def test_alerts_fire_once_for_both_replicas(live: Live) -> None:
    """The high-fallback alert goes pending once for the config, not once per replica, and no
    alert of relaygate's carries an ``instance`` label."""
    prometheus = live.prometheus
    names = {rule["alert"] for rule in alert_rules()}
    alerts: list[dict[str, Any]] = []

    def fallback_alert_seen() -> bool:
        alerts[:] = [
            a
            for a in prometheus.get("/api/v1/alerts")["alerts"]
            if a["labels"]["alertname"] in names
        ]
        return any(a["labels"]["alertname"] == "RelaygateHighFallbackRatio" for a in alerts)

    prometheus.poll(fallback_alert_seen)
    fallback = [a for a in alerts if a["labels"]["alertname"] == "RelaygateHighFallbackRatio"]
    assert [a["labels"]["config"] for a in fallback] == [CONFIG]
    assert not [a["labels"] for a in alerts if "instance" in a["labels"]]
