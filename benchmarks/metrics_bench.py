"""CPU cost of one request's Prometheus recording: ``prometheus_client`` metrics vs relaygate's.

Replays the recording a typical request makes (one attempt that succeeds with token usage):
the in-flight gauge up and down, then what ``LogLayer`` does per attempt
(``relaygate/middleware/log.py``: ``series``, ``_count``) and what
``Observation._record`` does per request (``relaygate/middleware/observe.py``): 7 histogram
observations, 4 counter increments and 2 gauge updates, through the same ``GatewayMetrics`` methods
(``series``, ``TargetSeries.attempt``, ``request_series``, ``request_counter``) and
``Telemetry.guard`` calls as the gateway. It runs once against ``GatewayMetrics`` as it is
(relaygate's own families) and once against the same ``GatewayMetrics`` whose families are
replaced by ``prometheus_client`` ``Counter``/``Histogram``/``Gauge`` objects with the same
names, labels and buckets, over 5 targets in 3 configs. Each is timed with
``time.process_time`` over all requests; the best of five passes is printed as µs per
request, without exemplars (no sampled trace: telemetry otherwise off) and with exemplars on
the two latency observations (a sampled trace), plus the ratios. Before timing, both record
the same requests and their Prometheus text expositions are checked to be equal (``_created``
values aside).

Run: ``python -m benchmarks.metrics_bench``.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from relaygate.config.model import Target
from relaygate.exporters import semconv as sc
from relaygate.exporters.prometheus import UPSTREAM_BUCKETS, GatewayMetrics, status_class
from relaygate.telemetry import Telemetry

REQUESTS = 20_000
PASSES = 5
EXEMPLAR = {"trace_id": "0af7651916cd43dd8448eb211c80319c"}

_TARGETS = (
    Target(path="targets[0]", provider="openai", name="primary"),
    Target(path="targets[1]", provider="anthropic", name="backup"),
    Target(path="targets[0]", provider="openai", name="cheap"),
    Target(path="targets[1]", provider="mistral", name="small"),
    Target(path="targets[2]", provider="ollama", name="local"),
)
_CONFIGS = ("cfg-default", "cfg-fallback", "cfg-loadbalance")
_MODELS = ("gpt-4o-mini", "claude-3-5-haiku-latest", "mistral-small-latest", "llama3.1:8b")

Request = tuple[str, Target, str, float, float, float, tuple[int, int]]
"""(config id, target, requested model, total s, overhead s, attempt s, usage)."""


class ClientMetrics(GatewayMetrics):
    """``GatewayMetrics`` whose families are ``prometheus_client``'s own metric objects."""

    def __init__(self, models: Sequence[str]) -> None:
        super().__init__(CollectorRegistry(), models=models)
        self.registry = reg = CollectorRegistry()
        tl = ("config", "target", "provider", "model")
        gl = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model")
        families: dict[str, Any] = {
            "requests": Counter(
                sc.M_REQUESTS,
                "Gateway requests answered, by config, operation, status class and outcome.",
                ("config", "operation", "status_class", "outcome"),
                registry=reg,
            ),
            "request_duration": Histogram(
                sc.M_REQUEST_DURATION,
                "Whole-request latency seen by the client (streams: until the last byte).",
                ("config", "operation"),
                buckets=UPSTREAM_BUCKETS,
                registry=reg,
            ),
            "overhead": Histogram(
                sc.M_OVERHEAD,
                "Time the gateway itself added: request latency minus upstream attempt time "
                "and backoff waits.",
                ("config",),
                buckets=sc.OVERHEAD_BUCKETS,
                registry=reg,
            ),
            "attempts_per_request": Histogram(
                sc.M_ATTEMPTS_PER_REQUEST,
                "Upstream attempts made for one gateway request (retries and fallbacks included).",
                ("config",),
                buckets=sc.ATTEMPT_COUNT_BUCKETS,
                registry=reg,
            ),
            "in_flight": Gauge(sc.M_IN_FLIGHT, "Gateway requests being handled now.", registry=reg),
            "exhausted": Counter(
                sc.M_EXHAUSTED,
                "Requests whose every target failed, by the last failure's reason.",
                ("config", "reason"),
                registry=reg,
            ),
            "attempts": Counter(
                sc.M_ATTEMPTS,
                "Upstream attempts by target and outcome.",
                (*tl, "status_class", "reason"),
                registry=reg,
            ),
            "upstream_duration": Histogram(
                sc.M_UPSTREAM_DURATION,
                "Latency of one upstream attempt, as its span (streams: until the stream ended).",
                tl,
                buckets=UPSTREAM_BUCKETS,
                registry=reg,
            ),
            "ttft": Histogram(
                sc.M_TTFT,
                "Time from sending a streamed attempt to its first chunk.",
                tl,
                buckets=UPSTREAM_BUCKETS,
                registry=reg,
            ),
            "tokens": Counter(
                sc.M_TOKENS,
                "Tokens reported by upstream usage, by target and token type.",
                (*tl, "type"),
                registry=reg,
            ),
            "retries": Counter(
                sc.M_RETRIES,
                "Retries scheduled on a target, by the reason of the attempt that failed.",
                (*tl, "reason"),
                registry=reg,
            ),
            "timeouts": Counter(
                sc.M_TIMEOUTS,
                "Attempts cut by the target's request_timeout or first_token_timeout.",
                tl,
                registry=reg,
            ),
            "fallbacks": Counter(
                sc.M_FALLBACKS,
                "Moves from one target to the next within a fallback strategy.",
                ("config", "from_target", "to_target", "reason"),
                registry=reg,
            ),
            "genai_duration": Histogram(
                sc.M_GENAI_DURATION,
                "GenAI semantic convention: duration of one client operation (an upstream "
                "attempt, streams until the stream ended).",
                (*gl, "error_type"),
                buckets=sc.GENAI_DURATION_BUCKETS,
                registry=reg,
            ),
            "genai_tokens": Histogram(
                sc.M_GENAI_TOKENS,
                "GenAI semantic convention: tokens used per operation, by token type.",
                (*gl, "gen_ai_token_type"),
                buckets=sc.GENAI_TOKEN_BUCKETS,
                registry=reg,
            ),
            "label_overflow": Counter(
                sc.M_LABEL_OVERFLOW,
                "Recordings that labelled a caller-supplied value as other (past its label's "
                "budget, or too long), by budget.",
                ("label",),
                registry=reg,
            ),
            "telemetry_errors": Counter(
                sc.M_TELEMETRY_ERRORS,
                "Telemetry calls that raised and were swallowed (exporters, hooks, metrics, "
                "logs); the requests they belonged to were answered as usual.",
                registry=reg,
            ),
        }
        for name, family in families.items():
            setattr(self, name, family)


def record(tel: Telemetry, request: Request, ex: dict[str, str] | None) -> None:
    """One request's recording, as the gateway's layers make it."""
    config_id, target, requested, total, overhead, duration, usage = request
    metrics = tel.metrics
    op = "chat"
    tel.guard(metrics.in_flight.inc)
    # LogLayer: the attempt.
    model = metrics.model_label(target, requested)
    series = metrics.series(config_id, target, model, op)
    series.attempt(metrics, status_class(200), "ok").inc()
    series.duration.observe(duration, ex)
    series.genai_duration_ok.observe(duration)
    tel.guard(series.tokens_in.inc, usage[0])
    tel.guard(series.tokens_out.inc, usage[1])
    tel.guard(series.genai_tokens_in.observe, usage[0])
    tel.guard(series.genai_tokens_out.observe, usage[1])
    # Observation._record: the request.
    rseries = metrics.request_series(config_id, op)
    metrics.request_counter(rseries, config_id, op, status_class(200), "ok").inc()
    rseries.duration.observe(total, ex)
    rseries.overhead.observe(overhead)
    rseries.attempts_per_request.observe(1)
    tel.guard(metrics.in_flight.dec)


def requests(n: int, seed: int = 7) -> list[Request]:
    """``n`` requests over a few configs, targets and models, with plausible timings."""
    rng = random.Random(seed)
    out: list[Request] = []
    for _ in range(n):
        duration = rng.lognormvariate(-1.0, 1.0)
        overhead = rng.lognormvariate(-7.5, 0.6)
        usage = (rng.randint(5, 4000), rng.randint(1, 1500))
        out.append(
            (
                rng.choice(_CONFIGS),
                rng.choice(_TARGETS),
                rng.choice(_MODELS),
                duration + overhead,
                overhead,
                duration,
                usage,
            )
        )
    return out


def _masked(exposition: bytes) -> list[str]:
    lines = []
    for line in exposition.decode().splitlines():
        if re.split(r"[{ ]", line, maxsplit=1)[0].endswith("_created"):
            line = line.rsplit(" ", 1)[0]
        lines.append(line)
    return lines


def _check_same(batch: list[Request]) -> None:
    ours = Telemetry(metrics=GatewayMetrics(models=_MODELS[:2]))
    theirs = Telemetry(metrics=ClientMetrics(models=_MODELS[:2]))
    for request in batch:
        record(ours, request, EXEMPLAR)
        record(theirs, request, EXEMPLAR)
    got = _masked(generate_latest(ours.metrics.registry))
    want = _masked(generate_latest(theirs.metrics.registry))
    if got != want:
        raise SystemExit("the two implementations export different samples")
    if ours.errors or theirs.errors:
        raise SystemExit("recording raised")


def _best(make: Callable[[], Telemetry], batch: list[Request], ex: dict[str, str] | None) -> float:
    """Best pass over ``batch`` as µs of process CPU time per request."""
    best = float("inf")
    for _ in range(PASSES):
        tel = make()
        for request in batch[:50]:  # label children resolved before timing, as in a warm gateway
            record(tel, request, ex)
        start = time.process_time()
        for request in batch:
            record(tel, request, ex)
        best = min(best, time.process_time() - start)
    return best / len(batch) * 1e6


def main() -> None:
    """Check both implementations agree, then time them and print the figures."""
    batch = requests(REQUESTS)
    _check_same(batch[:2000])
    print(f"{REQUESTS} requests x best of {PASSES} passes, µs of CPU per request's recording")
    print(f"{'':28}{'prometheus_client':>18}{'relaygate':>12}{'ratio':>8}")
    for title, ex in (
        ("no exemplars (telemetry off)", None),
        ("exemplars (sampled trace)", EXEMPLAR),
    ):
        client = _best(lambda: Telemetry(metrics=ClientMetrics(_MODELS[:2])), batch, ex)
        own = _best(lambda: Telemetry(metrics=GatewayMetrics(models=_MODELS[:2])), batch, ex)
        print(f"{title:28}{client:>18.2f}{own:>12.2f}{client / own:>7.2f}x")


if __name__ == "__main__":
    main()
