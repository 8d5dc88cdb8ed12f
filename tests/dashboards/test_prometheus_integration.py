"""A real Prometheus scrapes a real ``relaygate serve`` and answers every dashboard query.

Part of the normal suite (it runs in ``make test``, about 15 s; marked ``promtool``, so
``-m "not promtool"`` leaves it out). Setup, all on loopback:

* fault simulators in threads: ``primary`` answers 503 to 30 % of requests (seeded), ``backup``
  always succeeds, ``flaky`` alternates 503 and 200, ``hang`` never answers, ``down`` always
  answers 503;
* ``relaygate serve`` as a process with three configs: ``fallback`` (primary without retries,
  then backup: each primary failure is exactly one fallback), ``retrying`` (flaky with
  retries) and ``degraded`` (hang with a short ``request_timeout``, then down: every request
  times out, falls back and is exhausted);
* the ``prometheus`` binary scraping the gateway every second and evaluating the recording
  and alerting rules every second.

A known number of requests goes through the gateway; once Prometheus has scraped the final
counts, every panel query of the dashboard and every recording rule must return data, and
the fallback ratio Prometheus computes must match the injected failure rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from relaygate.mock import MockSettings, create_mock_app, parse_faults
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

FAILURE_RATE = 0.3
"""Share of requests the primary fault simulator answers with 503."""

FALLBACK_REQUESTS = 400
"""Requests sent to the ``fallback`` config."""

STREAM_EVERY = 8
"""Every n-th ``fallback`` request streams (with usage)."""

RETRYING_REQUESTS = 20
"""Requests sent, one at a time, to the ``retrying`` config."""

DEGRADED_REQUESTS = 8
"""Requests sent to the ``degraded`` config (each one is exhausted)."""

CONCURRENCY = 8
"""Requests in flight at once."""

SIGMAS = 4.0
"""Tolerance of the fallback-ratio check, in binomial standard deviations."""

CONFIGS = ("fallback", "retrying", "degraded", "cached", "limited")
"""The gateway's configs, all driven by the workload."""


def _server_config(upstreams: dict[str, RunningServer]) -> dict[str, Any]:
    def target(name: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "provider": "openai",
            "api_key": "test-key",
            "custom_host": f"{upstreams[name].url}/v1",
            **extra,
        }

    return {
        "configs": {
            "fallback": {
                "strategy": {"mode": "fallback"},
                "targets": [
                    target("primary", retry={"attempts": 0}, override_params={"model": "m-a"}),
                    target("backup", override_params={"model": "m-b"}),
                ],
            },
            "retrying": {
                "strategy": {"mode": "single"},
                "targets": [target("flaky", retry={"attempts": 2})],
            },
            "degraded": {
                "strategy": {"mode": "fallback"},
                "targets": [
                    target("hang", request_timeout=300),
                    target("down", retry={"attempts": 0}),
                ],
            },
            # Answers served from the response cache after the first, and a target over its
            # rate limit after its first request: the cache and rate-limit panels.
            "cached": {
                "cache": {"mode": "simple", "max_age": 600},
                **target("backup", override_params={"model": "m-c"}),
            },
            "limited": target("backup", override_params={"model": "m-l"}),
        },
        "rate_limits": {
            "targets": [{"provider": "openai", "model": "m-l", "requests_per_minute": 1}]
        },
        "retry": {"initial_backoff_ms": 10, "max_backoff_ms": 50},
        "telemetry": {"logs": {"level": "warning", "format": "json"}},
    }


@dataclass
class Traffic:
    """What the client saw, per config, over both phases."""

    statuses: dict[str, list[int]] = field(default_factory=dict)
    fell_back: int = 0
    """``fallback`` requests whose route shows a move to the next target (both phases)."""
    measured_fell_back: int = 0
    """The same, for the measured phase only."""

    def sent(self, config: str) -> int:
        """Requests sent to ``config``."""
        return len(self.statuses.get(config, []))


class Client:
    """Sends chat requests through the gateway and notes what came back."""

    def __init__(self, http: httpx.AsyncClient, traffic: Traffic) -> None:
        self._http = http
        self._limit = asyncio.Semaphore(CONCURRENCY)
        self.traffic = traffic

    async def send(self, config: str, stream: bool = False, measured: bool = False) -> bool:
        """One request; returns whether the gateway fell back to a next target."""
        body: dict[str, Any] = {"model": "any", "messages": [{"role": "user", "content": "hi"}]}
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        async with (
            self._limit,
            self._http.stream(
                "POST", "/v1/chat/completions", json=body, headers={"x-portkey-config": config}
            ) as response,
        ):
            await response.aread()
        self.traffic.statuses.setdefault(config, []).append(response.status_code)
        fell_back = ">" in response.headers.get("x-relaygate-route", "")
        if fell_back and config == "fallback":
            self.traffic.fell_back += 1
            self.traffic.measured_fell_back += measured
        return fell_back


async def _warm_up(client: Client) -> None:
    """Create every series before the measured phase: a fallback, a retry, an exhaustion.

    Counters appear in the exposition at their first increment; Prometheus sees no increase
    for the samples before its first scrape of a series. Scraping this state first makes the
    measured phase show up whole in rates and increases.
    """
    for _ in range(50):
        if await client.send("fallback", stream=True):
            break
    await client.send("fallback")
    await client.send("retrying")
    await client.send("degraded")
    for _ in range(2):
        await client.send("cached")
        await client.send("limited")


async def _measured(client: Client) -> None:
    """The known workload: fallback traffic with some streams, retries, exhausted requests."""

    async def retrying() -> None:
        for _ in range(RETRYING_REQUESTS):  # one at a time: flaky alternates 503 and 200
            await client.send("retrying")

    await asyncio.gather(
        *(
            client.send("fallback", stream=i % STREAM_EVERY == 0, measured=True)
            for i in range(FALLBACK_REQUESTS)
        ),
        retrying(),
        *(client.send("degraded") for _ in range(DEGRADED_REQUESTS)),
        *(client.send(config) for config in ("cached", "limited") for _ in range(4)),
    )


@dataclass
class Live:
    """The running setup after the workload, with the final state scraped."""

    prometheus: Prometheus
    traffic: Traffic
    final_seen_at: float
    """Unix time at which Prometheus was seen holding the final request counts."""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """Upstreams, gateway and Prometheus, after the warm-up and the measured workload."""
    tmp = tmp_path_factory.mktemp("prometheus")
    mocks = {
        "primary": MockSettings(name="primary", error_rate=FAILURE_RATE, seed=20240611),
        "backup": MockSettings(name="backup"),
        "flaky": MockSettings(name="flaky", script=parse_faults("503,200"), loop_script=True),
        "hang": MockSettings(name="hang", script=parse_faults("hang"), loop_script=True),
        "down": MockSettings(name="down", error_rate=1.0),
    }
    with contextlib.ExitStack() as stack:
        upstreams = {
            name: stack.enter_context(serve_in_thread(create_mock_app(settings)))
            for name, settings in mocks.items()
        }
        gateway = stack.enter_context(running_gateway(tmp, _server_config(upstreams)))
        prometheus = stack.enter_context(run_prometheus(tmp, gateway))
        traffic = Traffic()

        def scraped(config: str) -> bool:
            expr = f'sum(relaygate_requests_total{{config="{config}"}})'
            return prometheus.scalar(expr) == traffic.sent(config)

        async def drive(phase: Callable[[Client], Awaitable[None]]) -> None:
            async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
                await phase(Client(http, traffic))

        asyncio.run(drive(_warm_up))
        prometheus.wait_for("the warm-up to be scraped", lambda: all(scraped(c) for c in CONFIGS))
        asyncio.run(drive(_measured))
        prometheus.wait_for(
            "the final request counts to be scraped", lambda: all(scraped(c) for c in CONFIGS)
        )
        yield Live(prometheus, traffic, time.time())


def test_workload_reached_the_gateway_as_configured(live: Live) -> None:
    """The premise: fallbacks rescue every request, retries rescue flaky, degraded exhausts."""
    statuses = live.traffic.statuses
    assert set(statuses["fallback"]) == {200}
    assert set(statuses["retrying"]) == {200}
    assert set(statuses["degraded"]) == {503}
    assert live.traffic.sent("fallback") >= FALLBACK_REQUESTS + 2


QUERIES = panel_queries(load_dashboard())


def test_every_dashboard_panel_query_returns_data(live: Live) -> None:
    """A panel whose query returns nothing against a real gateway is a broken panel."""
    prometheus = live.prometheus
    empty: dict[str, str] = {}

    def all_answer() -> bool:
        empty.clear()
        for query in QUERIES:
            expr = substitute(query.expr)
            if not has_finite_value(prometheus.query(expr)):
                empty[f"{query.panel} [{query.ref}]"] = expr
        return not empty

    prometheus.poll(all_answer)
    assert not empty, "panel queries without data:\n" + "\n".join(
        f"  {where}: {expr}" for where, expr in empty.items()
    )


def test_every_recording_rule_produces_series(live: Live) -> None:
    """Every recorded series exists with a finite value once the rules have run on real data."""
    prometheus = live.prometheus
    names = sorted({rule["record"] for rule in recording_rules()})
    missing: list[str] = []

    def all_recorded() -> bool:
        missing[:] = [name for name in names if not has_finite_value(prometheus.query(name))]
        return not missing

    prometheus.poll(all_recorded)
    assert not missing, f"recording rules without data: {missing}"


def test_every_rule_evaluates_without_error(live: Live) -> None:
    """Prometheus reports every loaded rule healthy: the PromQL works on real series."""
    groups = live.prometheus.get("/api/v1/rules")["groups"]
    loaded = [rule for group in groups for rule in group["rules"]]
    assert len(loaded) == len(recording_rules()) + len(alert_rules())
    broken = {rule["name"]: rule.get("lastError") for rule in loaded if rule["health"] != "ok"}
    assert not broken


def test_scraped_fallback_counter_equals_the_fallbacks_clients_saw(live: Live) -> None:
    """Every fallback a client saw in its route header is one count in Prometheus."""
    scraped = live.prometheus.scalar('sum(relaygate_fallbacks_total{config="fallback"})')
    assert scraped == live.traffic.fell_back


def test_fallback_ratio_rule_matches_the_injected_failure_rate(live: Live) -> None:
    """The recorded fallbacks per request is 0.3 within 4 binomial sigmas of 400 requests.

    Without retries on the primary, each of its failures is exactly one fallback, so the
    ratio over the measured phase estimates the injected failure rate. The rule's value must
    also agree with the client's own count for the same requests (rate extrapolation aside).
    """
    prometheus = live.prometheus
    expr = 'config:relaygate_fallbacks_per_request:ratio_rate5m{config="fallback"}'
    latest: list[tuple[float, float]] = []

    def evaluated_after_final_scrape() -> bool:
        latest[:] = prometheus.samples(f"{expr}[1m]")[-1:]
        return bool(latest) and latest[0][0] > live.final_seen_at

    prometheus.wait_for(
        "the fallback ratio rule after the final scrape", evaluated_after_final_scrape
    )
    ratio = latest[0][1]
    observed = live.traffic.measured_fell_back / FALLBACK_REQUESTS
    # rate() extrapolates each series towards the window start by at most the time its
    # counter would take to reach zero; the two counters start from different warm-up values,
    # which bounds the difference between the two estimates to about a percent here.
    assert ratio == pytest.approx(observed, rel=0.03)
    sigma = math.sqrt(FAILURE_RATE * (1 - FAILURE_RATE) / FALLBACK_REQUESTS)
    tolerance = SIGMAS * sigma  # 400 requests: sigma 0.0229, tolerance 0.092
    assert abs(ratio - FAILURE_RATE) <= tolerance, (
        f"fallback ratio {ratio:.4f} not within {tolerance:.4f} of {FAILURE_RATE}"
    )


def test_alerts_follow_the_live_failures(live: Live) -> None:
    """Exhausted requests and dead targets fire at once; a high fallback ratio goes pending."""
    prometheus = live.prometheus
    expected = {
        ("RelaygateRequestsExhausted", "firing", "degraded", ""),
        ("RelaygateTargetNotAnswering", "firing", "degraded", "down"),
        ("RelaygateTargetNotAnswering", "firing", "degraded", "hang"),
        ("RelaygateHighFallbackRatio", "pending", "fallback", ""),
        ("RelaygateTargetErrorRatioHigh", "pending", "fallback", "primary"),
    }
    seen: set[tuple[str, str, str, str]] = set()

    def all_seen() -> bool:
        seen.clear()
        seen.update(
            (
                alert["labels"]["alertname"],
                alert["state"],
                alert["labels"].get("config", ""),
                alert["labels"].get("target", ""),
            )
            for alert in prometheus.get("/api/v1/alerts")["alerts"]
        )
        return expected <= seen

    prometheus.poll(all_seen)
    assert expected <= seen, f"missing: {sorted(expected - seen)}; seen: {sorted(seen)}"
    healthy = {"backup", "flaky"}
    assert not {t for name, _, _, t in seen if name == "RelaygateTargetNotAnswering"} & healthy
