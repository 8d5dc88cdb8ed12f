"""Generate relaygate's Grafana dashboard from the metric contract.

The dashboard is data: every query is built here from the metric names in
:mod:`relaygate.exporters.semconv`, so renaming a metric there changes the dashboard, and a
test (``tests/dashboards/test_contract.py``) fails until the committed JSON is regenerated.

Plain Python on purpose: no dashboard SDK, no jsonnet, nothing to install beyond relaygate
itself. Run it from the repository root with the project's environment::

    .venv/bin/python dashboards/generate.py          # write the dashboard files
    .venv/bin/python dashboards/generate.py --check  # exit 1 if a committed file is stale

Two files are written from the same panels:

* ``dashboards/relaygate.json``: for Grafana's "Import dashboard"; its ``__inputs`` ask for a
  Prometheus data source (``DS_PROMETHEUS``).
* ``dashboards/provisioning/json/relaygate.json``: for file provisioning (the compose setup),
  bound to the provisioned data source whose uid is ``prometheus``; Grafana does not resolve
  ``__inputs`` when it provisions a dashboard from a file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make this checkout's relaygate importable
    sys.path.insert(0, str(ROOT))

from relaygate.exporters import semconv as sc  # noqa: E402
from relaygate.strategies.outcome import CLIENT_OUTCOMES, OK  # noqa: E402

Json = dict[str, Any]
"""A JSON object as Python data."""

IMPORT_OUTPUT = ROOT / "dashboards" / "relaygate.json"
"""The dashboard for Grafana's import dialog."""

PROVISIONED_OUTPUT = ROOT / "dashboards" / "provisioning" / "json" / "relaygate.json"
"""The dashboard for Grafana's file provisioning (compose)."""

IMPORT_DATASOURCE_UID = "${DS_PROMETHEUS}"
"""Data source uid in the import file: resolved by Grafana from ``__inputs`` on import."""

PROVISIONED_DATASOURCE_UID = "prometheus"
"""Uid of the Prometheus data source in ``dashboards/provisioning/datasources``."""

DASHBOARD_UID = "relaygate-overview"
"""Stable uid, so links to the dashboard survive re-imports."""

TEMPLATE_VARIABLES = ("config", "target", "provider", "model")
"""Dashboard variables; each is a label of the relaygate series, multi-valued, ``All`` = ``.*``."""

NOT_SHOWN: dict[str, str] = {
    sc.M_GENAI_DURATION: (
        "The same upstream attempts as relaygate_upstream_duration_seconds, under the "
        "OpenTelemetry GenAI semantic-convention name and labels (operation, provider, model, "
        "error type; no config or target), for tools that read those conventions. The "
        "dashboard shows the relaygate family, which says which config and target."
    ),
    sc.M_GENAI_TOKENS: (
        "Per-operation token counts under the OpenTelemetry GenAI semantic-convention name "
        "(a histogram without config or target); the dashboard shows the rate of "
        "relaygate_upstream_tokens_total, which carries config and target."
    ),
    sc.M_LABEL_OVERFLOW: (
        "A guard on the metrics themselves, not on traffic: it counts label values from "
        "callers' configs recorded as other past the label budget. Read it in Prometheus when "
        "a caller's inline target names or models show up as other."
    ),
    sc.M_TELEMETRY_ERRORS: (
        "A guard on the telemetry itself, not on traffic: it counts exporter, hook, metric and "
        "log calls that raised and were swallowed so the request could still be answered. "
        "Alert on any increase in Prometheus rather than watching it on a traffic dashboard."
    ),
    sc.M_RECOVERY_GIVEN_UP: (
        "Rare by design (a stream longer than limits.max_recovery_bytes): read it in "
        "Prometheus when a long stream that broke was not recovered, or raise the limit."
    ),
    sc.M_FINAL_ERRORS: (
        "Retries and fallbacks not made on final errors (content-policy refusals, schema "
        "errors): the attempts themselves already show in the attempts panels as status_4xx; "
        "read the codes in Prometheus when 4xx answers rise."
    ),
    sc.M_CONFIG_RELOADS: (
        "An operations event, not traffic: alert on result=refused in Prometheus; the log "
        "line config_reload_refused says why."
    ),
    sc.M_CONFIG_GENERATION: (
        "An operations fact, not traffic: compare it with the number of workers after a "
        "reload, or read config_generation on GET /ready."
    ),
    sc.M_TRACES_SAMPLED: (
        "About the traces, not the traffic: every request is already in the request panels "
        "whatever its trace's fate; read kept versus dropped by reason in Prometheus when "
        "tuning telemetry.traces.tail_sampling."
    ),
    sc.M_TRACE_SPANS: (
        "The span volume behind relaygate_traces_sampled_total, for sizing the collector; "
        "read it in Prometheus next to the traces' decisions."
    ),
}
"""Exported metric families deliberately not shown in any panel, with the reason."""

# -- series names ---------------------------------------------------------------------------
REQUESTS = f"{sc.M_REQUESTS}_total"
FALLBACKS = f"{sc.M_FALLBACKS}_total"
EXHAUSTED = f"{sc.M_EXHAUSTED}_total"
ATTEMPTS = f"{sc.M_ATTEMPTS}_total"
RETRIES = f"{sc.M_RETRIES}_total"
TIMEOUTS = f"{sc.M_TIMEOUTS}_total"
TOKENS = f"{sc.M_TOKENS}_total"
IN_FLIGHT = sc.M_IN_FLIGHT
CIRCUIT_STATE = sc.M_CIRCUIT_STATE
CIRCUIT_TRANSITIONS = f"{sc.M_CIRCUIT_TRANSITIONS}_total"
NOT_CLOSED = 'state!="closed"'
CACHE_LOOKUPS = f"{sc.M_CACHE_LOOKUPS}_total"
RATE_LIMITED = f"{sc.M_RATE_LIMITED}_total"
STATE_ERRORS = f"{sc.M_STATE_ERRORS}_total"
STATE_UP = sc.M_STATE_UP

RATE = "$__rate_interval"
COUNTED = f'outcome!~"{"|".join(sorted(CLIENT_OUTCOMES))}"'
"""Requests that count for availability: every outcome but the client's own."""
FAILED = f'outcome!~"{OK}|{"|".join(sorted(CLIENT_OUTCOMES))}"'
"""Requests that failed against availability: every outcome but ``ok`` and the client's."""
CONFIG = 'config=~"$config"'
TARGET = 'config=~"$config", target=~"$target", provider=~"$provider", model=~"$model"'


def _sel(metric: str, matchers: str, extra: str = "") -> str:
    inner = f"{matchers}, {extra}" if extra else matchers
    return f"{metric}{{{inner}}}"


def _rate(metric: str, matchers: str, extra: str = "", window: str = RATE) -> str:
    return f"rate({_sel(metric, matchers, extra)}[{window}])"


def _quantile(q: str, histogram: str, matchers: str, by: str) -> str:
    bucket = _rate(f"{histogram}_bucket", matchers)
    return f"histogram_quantile({q}, sum by ({by}, le) ({bucket}))"


def _quantiles(histogram: str, matchers: str, by: str, legend: str) -> tuple[Query, ...]:
    """p50, p95 and p99 of ``histogram`` by ``by``, with exemplars; legends ``<legend> pNN``."""
    return tuple(
        Query(_quantile(q, histogram, matchers, by), f"{legend} p{label}", exemplar=True)
        for q, label in (("0.5", "50"), ("0.95", "95"), ("0.99", "99"))
    )


def _share(part: str, whole: str, by: str) -> str:
    """``part / whole`` summed by ``by``; a group with ``whole`` but no ``part`` reads 0."""
    if by:
        num = f"sum by ({by}) ({part})"
        den = f"sum by ({by}) ({whole})"
        return f"({num} or 0 * {den}) / {den}"
    return f"(sum({part}) or vector(0)) / sum({whole})"


# -- panels ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    """One PromQL query of a panel, with its legend."""

    expr: str
    legend: str
    exemplar: bool = False


@dataclass(frozen=True)
class Panel:
    """A panel before layout: kind (``timeseries`` or ``stat``), text, queries and display."""

    kind: str
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    width: int = 12
    height: int = 8
    min: float | None = 0
    max: float | None = None
    decimals: int | None = None
    thresholds: tuple[tuple[str, float | None], ...] = (("green", None),)
    threshold_line: bool = False


@dataclass(frozen=True)
class Row:
    """A collapsible row of panels."""

    title: str
    description: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)


ROWS: tuple[Row, ...] = (
    Row(
        "Overview",
        "The gateway at a glance, for the configs selected above.",
        (
            Panel(
                "stat",
                "Requests per second",
                "Gateway requests answered per second (every status). A sudden drop while "
                "clients are busy means requests are not reaching relaygate (check the load "
                "balancer and the `up` series of the scrape job); a sudden rise multiplies "
                "upstream cost, so check the token panels.",
                (Query(f"sum({_rate(REQUESTS, CONFIG)})", "requests/s"),),
                unit="reqps",
                width=4,
                height=4,
            ),
            Panel(
                "stat",
                "Failed requests",
                "Share of gateway requests that failed, by outcome (decided when the answer "
                "was delivered, a stream when it ended): every target failed, a stream broke "
                "after its 200, or the gateway failed. Requests refused as invalid and clients "
                "that went away are left out. Above 0.5% the availability objective burns; "
                "see 'Requests by outcome' and the per-target panels below for which target "
                "fails and why (runbook: RelaygateAvailabilityBudgetBurn).",
                (
                    Query(
                        _share(
                            _rate(REQUESTS, CONFIG, FAILED),
                            _rate(REQUESTS, CONFIG, COUNTED),
                            "",
                        ),
                        "failed share",
                    ),
                ),
                unit="percentunit",
                width=4,
                height=4,
                decimals=2,
                thresholds=(("green", None), ("orange", 0.005), ("red", 0.05)),
            ),
            Panel(
                "stat",
                "Fallbacks per request",
                "Moves to a next target per gateway request (with two targets per chain: the "
                "share of requests that fell back). Requests still succeed, but slower and at "
                "the backup's price. Above 20% the RelaygateHighFallbackRatio alert fires; the "
                "'Fallbacks from → to' panel says which target and why.",
                (
                    Query(
                        _share(_rate(FALLBACKS, CONFIG), _rate(REQUESTS, CONFIG), ""),
                        "fallbacks/request",
                    ),
                ),
                unit="percentunit",
                width=4,
                height=4,
                decimals=1,
                thresholds=(("green", None), ("orange", 0.05), ("red", 0.2)),
            ),
            Panel(
                "stat",
                "Upstream attempts per request",
                "Average upstream attempts per gateway request, retries and fallbacks "
                "included: 1.0 means every request was answered by its first target on the "
                "first try. Each extra attempt costs latency and upstream quota; a rising "
                "value means a target is failing (see Retries and Fallbacks).",
                (
                    Query(
                        f"sum({_rate(f'{sc.M_ATTEMPTS_PER_REQUEST}_sum', CONFIG)}) / "
                        f"sum({_rate(f'{sc.M_ATTEMPTS_PER_REQUEST}_count', CONFIG)})",
                        "attempts/request",
                    ),
                ),
                unit="short",
                width=4,
                height=4,
                decimals=2,
                thresholds=(("green", None), ("orange", 1.2), ("red", 2)),
            ),
            Panel(
                "stat",
                "Exhausted requests",
                "Requests in the selected time range that failed on every target of their "
                "config: the client got the last target's error. Anything above 0 deserves a "
                "look (runbook: RelaygateRequestsExhausted).",
                (
                    Query(
                        f"sum(increase({_sel(EXHAUSTED, CONFIG)}[$__range])) or vector(0)",
                        "exhausted",
                    ),
                ),
                unit="short",
                width=4,
                height=4,
                decimals=0,
                thresholds=(("green", None), ("red", 1)),
            ),
            Panel(
                "stat",
                "Requests in flight",
                "Gateway requests being handled right now, summed over all relaygate "
                "instances (streams count until their last byte). A value that keeps growing "
                "while the request rate does not means upstreams are hanging: check the "
                "latency and timeout panels, and set request_timeout on the targets.",
                (Query(f"sum({IN_FLIGHT})", "in flight"),),
                unit="short",
                width=4,
                height=4,
                decimals=0,
            ),
        ),
    ),
    Row(
        "Traffic and errors",
        "What clients see: request rate, error share and concurrency.",
        (
            Panel(
                "timeseries",
                "Requests by outcome",
                "Gateway requests per second by config and outcome, decided when the answer "
                "was delivered (a stream when it ended): ok is a complete answer; "
                "stream_error a stream that broke after its 200; client_disconnected a client "
                "that hung up; refused a request the gateway refused (bad input, key, scope); "
                "any other value is an exhausted request's last reason (status_5xx, timeout...) "
                "or the gateway's own failure. A config that disappears has stopped receiving "
                "traffic.",
                (
                    Query(
                        f"sum by (config, outcome) ({_rate(REQUESTS, CONFIG)})",
                        "{{config}} {{outcome}}",
                    ),
                ),
                unit="reqps",
            ),
            Panel(
                "timeseries",
                "Failed and client-side shares by config",
                "Share of each config's counted requests that failed (every outcome but ok, "
                "refusals and client aborts: exhausted, broken streams, gateway failures), "
                "and share of all its requests that were the client's doing (refused, every "
                "target refused it, the client went away). A rising failed line burns the "
                "availability objective (dashed line: 0.5%); find the failing target in "
                "'Per-target success ratio'. A rising client-side line usually means a client "
                "or key problem, or clients giving up on slow answers (compare latency).",
                (
                    Query(
                        _share(
                            _rate(REQUESTS, CONFIG, FAILED),
                            _rate(REQUESTS, CONFIG, COUNTED),
                            "config",
                        ),
                        "{{config}} failed",
                    ),
                    Query(
                        _share(
                            _rate(REQUESTS, CONFIG, COUNTED.replace("!~", "=~")),
                            _rate(REQUESTS, CONFIG),
                            "config",
                        ),
                        "{{config}} client-side",
                    ),
                ),
                unit="percentunit",
                thresholds=(("green", None), ("red", 0.005)),
                threshold_line=True,
            ),
            Panel(
                "timeseries",
                "Requests in flight",
                "Requests being handled by each relaygate instance (streams until their last "
                "byte). Steady growth with a flat request rate means upstream calls are "
                "hanging: set request_timeout on the targets. Uneven instances point at the "
                "load balancer.",
                (Query(f"sum by (instance) ({IN_FLIGHT})", "{{instance}}"),),
                unit="short",
                width=24,
                height=6,
            ),
        ),
    ),
    Row(
        "Fallbacks and targets",
        "Which targets answer, which fail, and where requests go when they do.",
        (
            Panel(
                "timeseries",
                "Fallbacks per request by config",
                "Moves to a next target per request, per config (dashed line: the 20% "
                "RelaygateHighFallbackRatio threshold). Fallbacks keep requests succeeding "
                "but add latency and cost. When a line rises, the panel on the right says "
                "which target is failing and why.",
                (
                    Query(
                        _share(_rate(FALLBACKS, CONFIG), _rate(REQUESTS, CONFIG), "config"),
                        "{{config}}",
                    ),
                ),
                unit="percentunit",
                thresholds=(("green", None), ("red", 0.2)),
                threshold_line=True,
            ),
            Panel(
                "timeseries",
                "Fallbacks from → to, by reason",
                "Fallbacks per second by the target that failed, the target tried next and "
                "the failed attempt's reason (status_5xx, status_429, timeout, connect_error, "
                "...). status_429 means the source target is rate limited (raise its quota or "
                "spread load); timeout means it is slow (check its latency); connect_error "
                "means it is unreachable or its custom_host is wrong.",
                (
                    Query(
                        "sum by (config, from_target, to_target, reason) "
                        f"({_rate(FALLBACKS, CONFIG)})",
                        "{{config}}: {{from_target}} → {{to_target}} ({{reason}})",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "timeseries",
                "Per-target success ratio",
                "Share of each target's upstream attempts that succeeded. A target near 0 is "
                "down or misconfigured (RelaygateTargetNotAnswering); more than 10% failures "
                "on the target's side (5xx, 429, timeouts, connect errors) fire "
                "RelaygateTargetErrorRatioHigh. 'Upstream attempts by outcome' says how it "
                "fails; refused client requests (4xx) also lower this ratio.",
                (
                    Query(
                        _share(
                            _rate(ATTEMPTS, TARGET, 'reason="ok"'),
                            _rate(ATTEMPTS, TARGET),
                            "config, target",
                        ),
                        "{{config}}/{{target}}",
                    ),
                ),
                unit="percentunit",
                max=1,
            ),
            Panel(
                "timeseries",
                "Upstream attempts by outcome",
                "Upstream attempts per second by target and outcome: ok, status_429 (rate "
                "limited), status_4xx (refused: often a bad key or request), status_5xx, "
                "timeout, connect_error, invalid_response, stream_error, deadline, cancelled "
                "(the client went away). Use it to see how a failing target fails.",
                (
                    Query(
                        f"sum by (config, target, reason) ({_rate(ATTEMPTS, TARGET)})",
                        "{{config}}/{{target}} {{reason}}",
                    ),
                ),
                unit="ops",
            ),
        ),
    ),
    Row(
        "Latency",
        "Upstream latency per attempt, time to first chunk, what clients wait, and what "
        "relaygate itself adds.",
        (
            Panel(
                "timeseries",
                "Upstream latency per attempt (p50, p95, p99)",
                "Latency of one upstream attempt by target (streams: until the first chunk). "
                "A target whose p99 nears its request_timeout will start timing out; a slow "
                "primary makes every fallback slower. Compare with the provider's status page "
                "and consider a faster model or a lower request_timeout.",
                _quantiles(
                    sc.M_UPSTREAM_DURATION,
                    TARGET,
                    "config, target",
                    "{{config}}/{{target}}",
                ),
                unit="s",
            ),
            Panel(
                "timeseries",
                "Time to first chunk (p50, p95, p99)",
                "For streamed attempts: time from sending the request to the first chunk, by "
                "target. This is what a chat user waits before text appears. Above 2.5 s at "
                "p99 the time-to-first-chunk objective burns "
                "(RelaygateTimeToFirstChunkBudgetBurn): check the provider and prompt sizes.",
                _quantiles(sc.M_TTFT, TARGET, "config, target", "{{config}}/{{target}}"),
                unit="s",
            ),
            Panel(
                "timeseries",
                "Request latency seen by clients (p50, p95, p99)",
                "Whole-request latency per config as clients see it: every retry, backoff "
                "wait and fallback included; streams until their last byte. When it rises "
                "while upstream latency does not, retries and fallbacks are adding the time "
                "(see 'Upstream attempts per request'). Above 30 s at p99 the latency "
                "objective burns (RelaygateLatencyBudgetBurn).",
                _quantiles(sc.M_REQUEST_DURATION, CONFIG, "config", "{{config}}"),
                unit="s",
            ),
            Panel(
                "timeseries",
                "Gateway overhead (p50, p99)",
                "Time relaygate itself added to a request: whole-request latency minus the "
                "upstream attempts and backoff waits. It is normally well under a "
                "millisecond; a rising p99 means the gateway host is short of CPU (add "
                "workers or instances) or its event loop is blocked.",
                tuple(
                    Query(
                        _quantile(q, sc.M_OVERHEAD, CONFIG, "config"),
                        f"{{{{config}}}} p{label}",
                    )
                    for q, label in (("0.5", "50"), ("0.99", "99"))
                ),
                unit="s",
            ),
        ),
    ),
    Row(
        "Retries, timeouts and exhaustion",
        "What relaygate spends on failing targets, and the requests it could not save.",
        (
            Panel(
                "timeseries",
                "Retries by target and reason",
                "Retries scheduled per second, by target and the reason of the attempt that "
                "failed. Retries of status_429 with long waits mean the target is rate "
                "limited; persistent status_5xx retries waste time before a fallback: lower "
                "that target's retry.attempts or fall back sooner.",
                (
                    Query(
                        f"sum by (config, target, reason) ({_rate(RETRIES, TARGET)})",
                        "{{config}}/{{target}} {{reason}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "timeseries",
                "Retry amplification: upstream attempts per request",
                "Upstream attempts per gateway request (mean and p99), by config. 1 means "
                "no retries or fallbacks; each step above multiplies upstream load and cost. "
                "A p99 at the config's maximum (retries x targets) means some requests try "
                "everything: see Retries and Fallbacks.",
                (
                    Query(
                        f"sum by (config) ({_rate(f'{sc.M_ATTEMPTS_PER_REQUEST}_sum', CONFIG)})"
                        " / sum by (config) "
                        f"({_rate(f'{sc.M_ATTEMPTS_PER_REQUEST}_count', CONFIG)})",
                        "{{config}} mean",
                    ),
                    Query(
                        _quantile("0.99", sc.M_ATTEMPTS_PER_REQUEST, CONFIG, "config"),
                        "{{config}} p99",
                    ),
                ),
                unit="short",
                min=1,
                decimals=2,
            ),
            Panel(
                "timeseries",
                "Timeouts by target",
                "Attempts per second cut by the target's request_timeout. Timeouts mean the "
                "target is slower than allowed: compare with its latency p99, raise "
                "request_timeout if the target is merely slow, or keep it and rely on the "
                "fallback if it is hanging.",
                (
                    Query(
                        f"sum by (config, target) ({_rate(TIMEOUTS, TARGET)})",
                        "{{config}}/{{target}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "timeseries",
                "Exhausted requests by config and reason",
                "Requests per second that failed on every target of their config, by the "
                "last failure's reason; the client got that error. Any value here is a user-"
                "visible failure (RelaygateRequestsExhausted): check which targets fail in "
                "'Upstream attempts by outcome' and add or fix a fallback target.",
                (
                    Query(
                        f"sum by (config, reason) ({_rate(EXHAUSTED, CONFIG)})",
                        "{{config}} {{reason}}",
                    ),
                ),
                unit="reqps",
            ),
        ),
    ),
    Row(
        "Circuit breakers",
        "Targets skipped because their circuit breaker is open, and when circuits change.",
        (
            Panel(
                "timeseries",
                "Circuits not closed, by target",
                "Targets whose circuit breaker is open (skipped) or half-open (letting "
                "probes through), by state; summed over workers and instances, so 2 means two "
                "workers see it so. A line that stays up for 10 minutes fires "
                "RelaygateCircuitOpen. When the target recovers, the next probe closes it "
                "within one cooldown_interval and the line drops to 0.",
                (
                    Query(
                        "sum by (config, target, state) "
                        f"({_sel(CIRCUIT_STATE, TARGET, NOT_CLOSED)})",
                        "{{config}}/{{target}} {{state}}",
                    ),
                ),
                unit="short",
            ),
            Panel(
                "timeseries",
                "Circuit transitions by target",
                "Circuit state changes per second by the state entered (open: tripped, or a "
                "probe failed; half_open: a probe let through; closed: recovered). An open "
                "target is skipped without being called: the skips are the fallbacks with "
                "reason circuit_open in 'Fallbacks from → to, by reason'.",
                (
                    Query(
                        f"sum by (config, target, state) ({_rate(CIRCUIT_TRANSITIONS, TARGET)})",
                        "{{config}}/{{target}} -> {{state}}",
                    ),
                ),
                unit="ops",
            ),
        ),
    ),
    Row(
        "Limits, cache and shared state",
        "Requests refused and targets skipped for rate limits and budgets, response-cache "
        "hits, and whether the replicas reach the Redis they share.",
        (
            Panel(
                "timeseries",
                "Rate limited, by scope and limit",
                "Requests per second refused with 429 because their gateway key is over a "
                "limit (scope key), and targets per second skipped because they are over "
                "their own (scope target: the fallback moved on, reason rate_limited), by "
                "the limit reached: requests, tokens or spend (a budget: refusals until the "
                "period ends). With Redis down each replica counts alone and admits more.",
                (
                    Query(
                        f"sum by (scope, limit) (rate({RATE_LIMITED}[{RATE}]))",
                        "{{scope}} {{limit}}",
                    ),
                ),
                unit="reqps",
                width=8,
            ),
            Panel(
                "timeseries",
                "Cache hit ratio by config",
                "Share of the cache lookups of configs with a cache that were answered from "
                "it (no upstream call). Streamed requests are not cached and not counted. A "
                "drop to 0 across replicas with Redis up means the requests stopped repeating; "
                "with Redis down each replica has its own, colder cache.",
                (
                    Query(
                        _share(
                            _rate(CACHE_LOOKUPS, CONFIG, 'result="hit"'),
                            _rate(CACHE_LOOKUPS, CONFIG),
                            "config",
                        ),
                        "{{config}}",
                    ),
                ),
                unit="percentunit",
                max=1,
                width=8,
            ),
            Panel(
                "timeseries",
                "Shared state: Redis reachable, failed round trips",
                "Workers whose last Redis round trip succeeded (summed over replicas; 0 "
                "without state.redis) and failed round trips per second, each answered from "
                "local state: limits, budgets, cache and circuits are per process until "
                "Redis answers again.",
                (
                    Query(f"sum({STATE_UP})", "workers reaching Redis"),
                    Query(f"sum(rate({STATE_ERRORS}[{RATE}]))", "failed round trips/s"),
                ),
                unit="short",
                width=8,
            ),
        ),
    ),
    Row(
        "Tokens",
        "Token throughput reported by the upstreams' usage.",
        (
            Panel(
                "timeseries",
                "Tokens per second (input, output)",
                "Input and output tokens per second as reported by each target's usage "
                "(streams report it only when the client asks for stream_options."
                "include_usage). This is what you pay for: a jump in input tokens with a flat "
                "request rate means bigger prompts; tokens moving to a backup target means "
                "fallbacks are shifting cost.",
                (
                    Query(
                        f"sum by (config, target, type) ({_rate(TOKENS, TARGET)})",
                        "{{config}}/{{target}} {{type}}",
                    ),
                ),
                unit="short",
                width=24,
            ),
        ),
    ),
)
"""The dashboard's rows and panels, top to bottom."""


# -- rendering ------------------------------------------------------------------------------
def _datasource(uid: str) -> Json:
    return {"type": "prometheus", "uid": uid}


def _field_config(panel: Panel) -> Json:
    defaults: Json = {
        "unit": panel.unit,
        "color": {"mode": "palette-classic" if panel.kind == "timeseries" else "thresholds"},
        "thresholds": {
            "mode": "absolute",
            "steps": [{"color": color, "value": value} for color, value in panel.thresholds],
        },
    }
    if panel.min is not None:
        defaults["min"] = panel.min
    if panel.max is not None:
        defaults["max"] = panel.max
    if panel.decimals is not None:
        defaults["decimals"] = panel.decimals
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "spanNulls": False,
            "thresholdsStyle": {"mode": "dashed" if panel.threshold_line else "off"},
        }
    return {"defaults": defaults, "overrides": []}


def _options(panel: Panel) -> Json:
    if panel.kind == "stat":
        return {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "auto",
        }
    return {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }


def _targets(panel: Panel, uid: str) -> list[Json]:
    targets: list[Json] = []
    for index, query in enumerate(panel.queries):
        target: Json = {
            "refId": chr(ord("A") + index),
            "datasource": _datasource(uid),
            "editorMode": "code",
            "expr": query.expr,
            "legendFormat": query.legend,
            "range": panel.kind == "timeseries",
            "instant": panel.kind == "stat",
        }
        if query.exemplar:
            target["exemplar"] = True
        targets.append(target)
    return targets


def _variable(name: str, query: str, uid: str) -> Json:
    return {
        "name": name,
        "label": name.capitalize(),
        "type": "query",
        "datasource": _datasource(uid),
        "definition": query,
        "query": query,
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
        "skipUrlSync": False,
    }


def _variables(uid: str) -> list[Json]:
    attempts = ATTEMPTS
    return [
        _variable("config", f"label_values({REQUESTS}, config)", uid),
        _variable("target", f'label_values({attempts}{{config=~"$config"}}, target)', uid),
        _variable(
            "provider",
            f'label_values({attempts}{{config=~"$config", target=~"$target"}}, provider)',
            uid,
        ),
        _variable(
            "model",
            f"label_values({attempts}"
            '{config=~"$config", target=~"$target", provider=~"$provider"}, model)',
            uid,
        ),
    ]


def _layout(uid: str) -> list[Json]:
    """Rows and panels with ids and grid positions (24 columns; panels flow left to right)."""
    panels: list[Json] = []
    next_id = 1
    y = 0
    for row in ROWS:
        panels.append(
            {
                "id": next_id,
                "type": "row",
                "title": row.title,
                "description": row.description,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        next_id += 1
        y += 1
        x = 0
        line_height = 0
        for panel in row.panels:
            if x + panel.width > 24:
                y += line_height
                x = 0
                line_height = 0
            panels.append(
                {
                    "id": next_id,
                    "type": panel.kind,
                    "title": panel.title,
                    "description": panel.description,
                    "datasource": _datasource(uid),
                    "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
                    "fieldConfig": _field_config(panel),
                    "options": _options(panel),
                    "targets": _targets(panel, uid),
                }
            )
            next_id += 1
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    return panels


def build_dashboard(provisioned: bool = False) -> Json:
    """The dashboard as JSON data: for import (``__inputs``) or for file provisioning."""
    uid = PROVISIONED_DATASOURCE_UID if provisioned else IMPORT_DATASOURCE_UID
    dashboard: Json = {}
    if not provisioned:
        dashboard["__inputs"] = [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "description": "The Prometheus that scrapes relaygate's /metrics.",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ]
        dashboard["__requires"] = [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            {"type": "panel", "id": "stat", "name": "Stat", "version": ""},
            {"type": "panel", "id": "timeseries", "name": "Time series", "version": ""},
        ]
    dashboard.update(
        {
            "annotations": {
                "list": [
                    {
                        "builtIn": 1,
                        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                        "enable": True,
                        "hide": True,
                        "iconColor": "rgba(0, 211, 255, 1)",
                        "name": "Annotations & Alerts",
                        "type": "dashboard",
                    }
                ]
            },
            "description": (
                "relaygate AI gateway: traffic, fallbacks, per-target health, latency, "
                "retries, timeouts, exhausted requests and tokens. Generated by "
                "dashboards/generate.py from relaygate's metric contract."
            ),
            "editable": True,
            "fiscalYearStartMonth": 0,
            "graphTooltip": 1,
            "id": None,
            "links": [],
            "panels": _layout(uid),
            "refresh": "30s",
            "schemaVersion": 39,
            "tags": ["relaygate", "llm", "gateway"],
            "templating": {"list": _variables(uid)},
            "time": {"from": "now-1h", "to": "now"},
            "timepicker": {},
            "timezone": "",
            "title": "relaygate",
            "uid": DASHBOARD_UID,
            "version": 1,
            "weekStart": "",
        }
    )
    return dashboard


def render(dashboard: Json) -> str:
    """The dashboard as the committed file's text: 2-space indented JSON, trailing newline."""
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def outputs() -> dict[Path, str]:
    """Every generated file and its expected content."""
    return {
        IMPORT_OUTPUT: render(build_dashboard(provisioned=False)),
        PROVISIONED_OUTPUT: render(build_dashboard(provisioned=True)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Write the generated files, or with ``--check`` report stale ones; returns exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if a file is out of date"
    )
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    for path in stale:
        hint = "run .venv/bin/python dashboards/generate.py"
        print(f"{path.relative_to(ROOT)} is out of date: {hint}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
