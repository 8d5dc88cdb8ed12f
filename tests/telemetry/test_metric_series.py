"""relaygate's metric families export exactly what prometheus_client's own metrics would.

The same operations are recorded into :class:`GatewayMetrics` and into the equivalent families
built directly with ``prometheus_client`` ``Counter``/``Histogram``/``Gauge`` (same names, help,
labels and buckets); both text formats must read the same line by line, ``_created`` values
aside. A scrape taken while a histogram is being updated must be internally consistent.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import metrics as client_metrics
from prometheus_client.core import Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import DuplicateTimeseries

from relaygate.config.model import Target
from relaygate.exporters import semconv as sc
from relaygate.exporters.prometheus import (
    UPSTREAM_BUCKETS,
    FamilyCollector,
    GatewayMetrics,
    HistogramChild,
)

NOW = 1_700_000_000.25
TL = ("config", "target", "provider", "model")
GL = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model")
A = ("default", "primary", "openai", "gpt-4o")
B = ("default", "backup", "anthropic", "other")
C = ("inline", "targets[0]", "openai", "other")
TRACE_1 = {"trace_id": "0af7651916cd43dd8448eb211c80319c"}
TRACE_2 = {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}

openmetrics_text: Callable[[CollectorRegistry], bytes] = openmetrics.generate_latest
"""The OpenMetrics exposition of a registry (what ``/metrics`` serves on request)."""


def reference(registry: CollectorRegistry) -> SimpleNamespace:
    """The families as prometheus_client's own metrics (how relaygate recorded them before)."""
    reg = registry
    return SimpleNamespace(
        requests=Counter(
            sc.M_REQUESTS,
            "Gateway requests answered, by config, operation, status class and outcome.",
            ("config", "operation", "status_class", "outcome"),
            registry=reg,
        ),
        request_duration=Histogram(
            sc.M_REQUEST_DURATION,
            "Whole-request latency seen by the client (streams: until the last byte).",
            ("config", "operation"),
            buckets=UPSTREAM_BUCKETS,
            registry=reg,
        ),
        overhead=Histogram(
            sc.M_OVERHEAD,
            "Time the gateway itself added: request latency minus upstream attempt time "
            "and backoff waits.",
            ("config",),
            buckets=sc.OVERHEAD_BUCKETS,
            registry=reg,
        ),
        attempts_per_request=Histogram(
            sc.M_ATTEMPTS_PER_REQUEST,
            "Upstream attempts made for one gateway request (retries and fallbacks included).",
            ("config",),
            buckets=sc.ATTEMPT_COUNT_BUCKETS,
            registry=reg,
        ),
        in_flight=Gauge(sc.M_IN_FLIGHT, "Gateway requests being handled now.", registry=reg),
        exhausted=Counter(
            sc.M_EXHAUSTED,
            "Requests whose every target failed, by the last failure's reason.",
            ("config", "reason"),
            registry=reg,
        ),
        attempts=Counter(
            sc.M_ATTEMPTS,
            "Upstream attempts by target and outcome.",
            (*TL, "status_class", "reason"),
            registry=reg,
        ),
        upstream_duration=Histogram(
            sc.M_UPSTREAM_DURATION,
            "Latency of one upstream attempt, as its span (streams: until the stream ended).",
            TL,
            buckets=UPSTREAM_BUCKETS,
            registry=reg,
        ),
        ttft=Histogram(
            sc.M_TTFT,
            "Time from sending a streamed attempt to its first chunk.",
            TL,
            buckets=UPSTREAM_BUCKETS,
            registry=reg,
        ),
        tokens=Counter(
            sc.M_TOKENS,
            "Tokens reported by upstream usage, by target and token type.",
            (*TL, "type"),
            registry=reg,
        ),
        retries=Counter(
            sc.M_RETRIES,
            "Retries scheduled on a target, by the reason of the attempt that failed.",
            (*TL, "reason"),
            registry=reg,
        ),
        timeouts=Counter(
            sc.M_TIMEOUTS,
            "Attempts cut by the target's request_timeout or first_token_timeout.",
            TL,
            registry=reg,
        ),
        fallbacks=Counter(
            sc.M_FALLBACKS,
            "Moves from one target to the next within a fallback strategy.",
            ("config", "from_target", "to_target", "reason"),
            registry=reg,
        ),
        genai_duration=Histogram(
            sc.M_GENAI_DURATION,
            "GenAI semantic convention: duration of one client operation (an upstream attempt, "
            "streams until the stream ended).",
            (*GL, "error_type"),
            buckets=sc.GENAI_DURATION_BUCKETS,
            registry=reg,
        ),
        genai_tokens=Histogram(
            sc.M_GENAI_TOKENS,
            "GenAI semantic convention: tokens used per operation, by token type.",
            (*GL, "gen_ai_token_type"),
            buckets=sc.GENAI_TOKEN_BUCKETS,
            registry=reg,
        ),
        label_overflow=Counter(
            sc.M_LABEL_OVERFLOW,
            "Recordings that labelled a caller-supplied value as other (past its label's "
            "budget, or too long), by budget.",
            ("label",),
            registry=reg,
        ),
        telemetry_errors=Counter(
            sc.M_TELEMETRY_ERRORS,
            "Telemetry calls that raised and were swallowed (exporters, hooks, metrics, logs); "
            "the requests they belonged to were answered as usual.",
            registry=reg,
        ),
        recovery_given_up=Counter(
            sc.M_RECOVERY_GIVEN_UP,
            "Recoverable streams that delivered more than limits.max_recovery_bytes: their kept "
            "chunks were released and a later break is not recovered.",
            registry=reg,
        ),
        final_errors=Counter(
            sc.M_FINAL_ERRORS,
            "Retries and fallbacks not made because the upstream's error is final (a "
            "content-policy refusal...), by error code and what was stopped.",
            ("config", "code", "stopped"),
            registry=reg,
        ),
        config_reloads=Counter(
            sc.M_CONFIG_RELOADS,
            "Server config reloads (SIGHUP or a changed file), applied (ok) or refused.",
            ("result",),
            registry=reg,
        ),
        config_generation=Gauge(
            sc.M_CONFIG_GENERATION,
            "Server config reloads applied since the process started (summed over workers).",
            registry=reg,
        ),
        circuit_state=Gauge(
            sc.M_CIRCUIT_STATE,
            "Circuit breaker state per target: 1 for the state the circuit is in, 0 for the "
            "others (state: closed, half_open, open).",
            (*TL, "state"),
            registry=reg,
        ),
        circuit_transitions=Counter(
            sc.M_CIRCUIT_TRANSITIONS,
            "Circuit breaker state changes per target, by the state entered.",
            (*TL, "state"),
            registry=reg,
        ),
        traces_sampled=Counter(
            sc.M_TRACES_SAMPLED,
            "Request traces decided by tail sampling: kept (exported) or dropped, and why.",
            ("decision", "reason"),
            registry=reg,
        ),
        trace_spans=Counter(
            sc.M_TRACE_SPANS,
            "Spans of tail-sampled traces, kept (exported) or dropped.",
            ("decision",),
            registry=reg,
        ),
        cache_lookups=Counter(
            sc.M_CACHE_LOOKUPS,
            "Response-cache lookups of configs with a cache, by config and result (hit, miss).",
            ("config", "result"),
            registry=reg,
        ),
        rate_limited=Counter(
            sc.M_RATE_LIMITED,
            "Requests refused (scope=key) or targets skipped (scope=target) for a rate limit "
            "or budget, by the limit reached (requests, tokens, spend).",
            ("scope", "limit"),
            registry=reg,
        ),
        state_errors=Counter(
            sc.M_STATE_ERRORS,
            "Round trips to the shared state backend (Redis) that failed and were answered "
            "from local state instead.",
            registry=reg,
        ),
        state_up=Gauge(
            sc.M_STATE_UP,
            "Whether the shared state backend (Redis) answers: 1 per worker that reaches it.",
            registry=reg,
        ),
    )


def record(m: Any) -> None:
    """One sequence of operations, through the API both implementations share."""
    m.in_flight.inc()
    m.in_flight.inc()
    m.requests.labels("default", "chat", "2xx", "ok").inc()
    m.requests.labels("default", "chat", "2xx", "ok").inc(1, TRACE_1)
    m.requests.labels("default", "embeddings", "5xx", "status_5xx").inc(2.5)
    m.requests.labels("named", "chat", 4, "refused").inc()  # a non-string value is str()-ed
    m.requests.labels("default", "chat", "4xx", "refused")  # created, never incremented
    m.in_flight.dec()
    # On a bound, between bounds, below the first, above the last, zero, +Inf.
    for value in (0.005, 0.007, 0.001, 0.1, 1.0, 0.3, 120.0, 500.0, 0.0, float("inf")):
        m.request_duration.labels("default", "chat").observe(value)
    m.request_duration.labels("default", "chat").observe(0.25, TRACE_1)
    m.request_duration.labels("default", "chat").observe(0.2, TRACE_2)  # same bucket: last wins
    m.request_duration.labels("default", "chat").observe(130.0, TRACE_1)
    m.request_duration.labels("named", "embeddings").observe(2.5, TRACE_2)
    for value in (0.0001, 0.00003, 0.00025, 0.0007, 2.0):
        m.overhead.labels("default").observe(value)
    m.overhead.labels("named").observe(-1.0)  # below every bound: the first bucket
    for n in (1, 2, 3, 7, 25, 1, 20):
        m.attempts_per_request.labels("default").observe(n)
    m.upstream_duration.labels(*A).observe(0.05, TRACE_1)
    m.upstream_duration.labels(*A).observe(0.0500001)
    m.upstream_duration.labels(*B).observe(30.0)
    m.upstream_duration.labels(*C).observe(float("nan"))  # into the sum, no bucket
    m.upstream_duration.labels(*C).observe(0.02)
    m.ttft.labels(*A).observe(0.4, TRACE_2)
    m.ttft.labels(*B)  # created, never observed
    m.attempts.labels(*A, "2xx", "ok").inc()
    m.attempts.labels(*B, "5xx", "status_5xx").inc()
    m.attempts.labels(*B, "5xx", "status_5xx").inc()
    m.tokens.labels(*A, "input").inc(12)
    m.tokens.labels(*A, "output").inc(345)
    m.tokens.labels(*A, "input").inc(0)
    m.retries.labels(*B, "status_429").inc()
    m.timeouts.labels(*C).inc()
    m.exhausted.labels("default", "timeout").inc(1, TRACE_2)
    m.fallbacks.labels("default", "primary", "backup", "status_5xx").inc(1, TRACE_1)
    m.fallbacks.labels("default", "primary", "backup", "status_5xx").inc(1, TRACE_2)
    m.fallbacks.labels("default", "backup", "third", "timeout").inc(1, None)
    m.genai_duration.labels("chat", "openai", "gpt-4o", "").observe(0.64)
    m.genai_duration.labels("chat", "openai", "gpt-4o", "timeout").observe(90.0)
    for tokens in (1, 4, 5, 0, 67108864, 100_000_000):
        m.genai_tokens.labels("chat", "openai", "gpt-4o", "input").observe(tokens)
    m.genai_tokens.labels("chat", "openai", "gpt-4o", "output").observe(345)
    m.label_overflow.labels("model").inc()
    m.label_overflow.labels("model").inc()
    m.telemetry_errors.inc()
    m.telemetry_errors.inc(2)
    m.recovery_given_up.inc()
    m.final_errors.labels("default", "content_filter", "fallback").inc()
    m.config_reloads.labels("ok").inc()
    m.config_reloads.labels("refused")  # created, never incremented
    m.config_generation.set(3)
    m.circuit_state.labels(*A, "open").set(1)
    m.circuit_state.labels(*A, "closed").set(0)
    m.circuit_state.labels(*B, "closed")  # created, never set
    m.circuit_transitions.labels(*A, "open").inc()
    m.traces_sampled.labels("kept", "fallback").inc()
    m.traces_sampled.labels("dropped", "ratio").inc(3)
    m.trace_spans.labels("dropped").inc(9)
    m.cache_lookups.labels("default", "hit").inc()
    m.cache_lookups.labels("default", "miss").inc(2)
    m.rate_limited.labels("key", "requests").inc()
    m.state_errors.inc()
    m.state_up.set(1)
    for wrong in ((), ("default",), ("default", "chat", "2xx", "ok", "extra")):
        with pytest.raises(ValueError):
            m.requests.labels(*wrong)
    with pytest.raises(ValueError):
        m.request_duration.labels("default")
    with pytest.raises(ValueError):
        m.requests.labels("default", "chat", "2xx", "ok").inc(-1)


def masked(exposition: bytes) -> list[str]:
    """The exposition's lines, with the value of every ``_created`` sample masked."""
    lines = []
    for line in exposition.decode().splitlines():
        name = re.split(r"[{ ]", line, maxsplit=1)[0]
        if name.endswith("_created"):
            line = line.rsplit(" ", 1)[0] + " <created>"
        lines.append(line)
    return lines


@pytest.fixture
def both(monkeypatch: pytest.MonkeyPatch) -> tuple[CollectorRegistry, CollectorRegistry]:
    """(relaygate's registry, the reference registry) after :func:`record` on each, with the
    clock frozen so exemplar timestamps compare too."""
    monkeypatch.setattr(time, "time", lambda: NOW)
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    record(GatewayMetrics(ours))
    record(reference(theirs))
    return ours, theirs


def test_prometheus_text_format_is_the_same(
    both: tuple[CollectorRegistry, CollectorRegistry],
) -> None:
    ours, theirs = both
    expected = masked(prometheus_client.generate_latest(theirs))
    assert any(line.endswith(" <created>") for line in expected)
    assert masked(prometheus_client.generate_latest(ours)) == expected


def test_openmetrics_text_format_is_the_same_exemplars_included(
    both: tuple[CollectorRegistry, CollectorRegistry],
) -> None:
    ours, theirs = both
    expected = masked(openmetrics_text(theirs))
    assert sum("# {trace_id=" in line for line in expected) >= 8
    assert masked(openmetrics_text(ours)) == expected


def test_collected_families_are_the_same_sample_for_sample(
    both: tuple[CollectorRegistry, CollectorRegistry],
) -> None:
    ours, theirs = both

    def families(registry: CollectorRegistry) -> list[Metric]:
        return list(registry.collect())

    mine, expected = families(ours), families(theirs)
    assert [(f.name, f.type, f.documentation, f.unit) for f in mine] == [
        (f.name, f.type, f.documentation, f.unit) for f in expected
    ]
    for got, want in zip(mine, expected, strict=True):
        # Same samples in the same order, label order included (rehearse keys on it).
        got_samples = [(s.name, list(s.labels.items()), s.exemplar) for s in got.samples]
        want_samples = [(s.name, list(s.labels.items()), s.exemplar) for s in want.samples]
        assert got_samples == want_samples
        for g, w in zip(got.samples, want.samples, strict=True):
            assert type(g.value) is type(w.value)
            assert g.value == w.value or (g.value != g.value and w.value != w.value)


def test_created_samples_follow_prometheus_client_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: NOW)
    monkeypatch.setattr(client_metrics, "_use_created", False)
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    record(GatewayMetrics(ours))
    record(reference(theirs))
    text = openmetrics_text(ours)
    assert b"_created" not in text
    assert text == openmetrics_text(theirs)
    assert prometheus_client.generate_latest(ours) == prometheus_client.generate_latest(theirs)


def test_sample_values_spot_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: NOW)
    registry = CollectorRegistry()
    record(GatewayMetrics(registry))
    get = registry.get_sample_value
    chat = {"config": "default", "operation": "chat"}
    duration = sc.M_REQUEST_DURATION
    assert get(duration + "_bucket", {**chat, "le": "0.005"}) == 3.0  # 0.0, 0.001 and 0.005
    assert get(duration + "_bucket", {**chat, "le": "0.01"}) == 4.0
    assert get(duration + "_bucket", {**chat, "le": "0.25"}) == 7.0
    assert get(duration + "_bucket", {**chat, "le": "120.0"}) == 10.0
    assert get(duration + "_bucket", {**chat, "le": "+Inf"}) == 13.0
    assert get(duration + "_count", chat) == 13.0
    assert get(duration + "_sum", chat) == float("inf")
    assert get(duration + "_created", chat) == NOW
    attempts = sc.M_ATTEMPTS_PER_REQUEST
    assert get(attempts + "_bucket", {"config": "default", "le": "1.0"}) == 2.0
    assert get(attempts + "_bucket", {"config": "default", "le": "6.0"}) == 4.0
    assert get(attempts + "_bucket", {"config": "default", "le": "8.0"}) == 5.0
    assert get(attempts + "_bucket", {"config": "default", "le": "20.0"}) == 6.0
    assert get(attempts + "_sum", {"config": "default"}) == 59.0
    nan = {"config": "inline", "target": "targets[0]", "provider": "openai", "model": "other"}
    assert get(sc.M_UPSTREAM_DURATION + "_count", nan) == 1.0
    assert get(sc.M_UPSTREAM_DURATION + "_sum", nan) != get(sc.M_UPSTREAM_DURATION + "_sum", nan)
    tokens = sc.M_GENAI_TOKENS + "_bucket"
    token_labels = {
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "openai",
        "gen_ai_request_model": "gpt-4o",
        "gen_ai_token_type": "input",
    }
    assert get(tokens, {**token_labels, "le": "1.0"}) == 2.0
    assert get(tokens, {**token_labels, "le": "6.7108864e+07"}) == 5.0
    assert get(tokens, {**token_labels, "le": "+Inf"}) == 6.0
    ok = {**chat, "status_class": "2xx", "outcome": "ok"}
    assert get(sc.M_REQUESTS + "_total", ok) == 2.0
    assert get(sc.M_REQUESTS + "_total", {**chat, "status_class": "4xx", "outcome": "refused"}) == 0
    named = {"config": "named", "operation": "chat", "status_class": "4", "outcome": "refused"}
    assert get(sc.M_REQUESTS + "_total", named) == 1.0
    assert get(sc.M_REQUESTS + "_created", ok) == NOW
    assert get(sc.M_TOKENS + "_total", {**dict(zip(TL, A, strict=True)), "type": "output"}) == 345.0
    assert get(sc.M_IN_FLIGHT) == 1.0
    assert get(sc.M_REQUESTS + "_total", {**chat, "status_class": "3xx", "outcome": "ok"}) is None


def test_resolved_series_are_the_label_children() -> None:
    metrics = GatewayMetrics(models=["gpt-4o"])
    target = Target(path="targets[0]", provider="openai", name="primary")
    model = metrics.model_label(target, "gpt-4o")
    series = metrics.series("default", target, model, "chat")
    labels = ("default", "primary", "openai", "gpt-4o")
    assert series.labels == labels
    assert metrics.series("default", target, model, "chat") is series
    assert series.duration is metrics.upstream_duration.labels(*labels)
    assert series.tokens_out is metrics.tokens.labels(*labels, "output")
    assert series.genai_duration_ok is metrics.genai_duration.labels("chat", "openai", model, "")
    assert series.attempt(metrics, "2xx", "ok") is metrics.attempts.labels(*labels, "2xx", "ok")
    assert metrics.model_label(target, "unknown") == "other"
    # A caller's config is labelled by target name too, within the label budget.
    inline = metrics.series("inline", target, "other", "chat", caller_supplied=True)
    assert inline.labels[1] == "primary"
    request = metrics.request_series("default", "chat")
    assert metrics.request_series("default", "chat") is request
    counter = metrics.request_counter(request, "default", "chat", "2xx", "ok")
    assert counter is metrics.requests.labels("default", "chat", "2xx", "ok")
    counter.inc()
    request.duration.observe(0.3)
    get = metrics.registry.get_sample_value
    assert (
        get(
            sc.M_REQUESTS + "_total",
            {"config": "default", "operation": "chat", "status_class": "2xx", "outcome": "ok"},
        )
        == 1.0
    )
    assert get(sc.M_REQUEST_DURATION + "_count", {"config": "default", "operation": "chat"}) == 1


def test_registration_describes_without_collecting(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: FamilyCollector) -> Iterator[Metric]:
        raise AssertionError("collected at registration")

    monkeypatch.setattr(FamilyCollector, "collect", refuse)
    registry = CollectorRegistry()
    GatewayMetrics(registry)
    # The registry knows every name, as it did with prometheus_client's own metrics.
    with pytest.raises(DuplicateTimeseries):
        GatewayMetrics(registry)
    with pytest.raises(DuplicateTimeseries):
        reference(registry)


class ScrapingBuckets(list[int]):
    """A bucket list that scrapes the registry right before each of its updates lands."""

    def __init__(self, source: list[int], scrape: Any) -> None:
        super().__init__(source)
        self.scrape = scrape

    def __setitem__(self, index: Any, value: Any) -> None:
        self.scrape()
        super().__setitem__(index, value)


def histogram_samples(registry: CollectorRegistry, name: str) -> Iterator[list[Any]]:
    """The samples of each series of histogram ``name`` in one scrape."""
    for family in registry.collect():
        if family.name == name:
            by_series: dict[tuple[tuple[str, str], ...], list[Any]] = {}
            for s in family.samples:
                key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
                by_series.setdefault(key, []).append(s)
            yield from by_series.values()


def check_consistent(samples: list[Any], name: str) -> float:
    """Assert one histogram series' samples agree with each other; its count."""
    buckets = [s.value for s in samples if s.name == name + "_bucket"]
    (count,) = [s.value for s in samples if s.name == name + "_count"]
    assert buckets == sorted(buckets), "cumulative buckets never decrease"
    assert buckets[-1] == count, "+Inf is the count"
    return float(count)


def test_a_scrape_in_the_middle_of_an_observation_is_consistent() -> None:
    metrics = GatewayMetrics()
    child = metrics.request_duration.labels("default", "chat")
    name = sc.M_REQUEST_DURATION
    seen: list[float] = []

    def scrape() -> None:
        for samples in histogram_samples(metrics.registry, name):
            seen.append(check_consistent(samples, name))
        # Both text formats render a scrape taken at this point.
        prometheus_client.generate_latest(metrics.registry)
        openmetrics_text(metrics.registry)

    for value in (0.001, 0.3, 0.3, 7.0, 1000.0):
        child.observe(value, TRACE_1)
    child.buckets = ScrapingBuckets(child.buckets, scrape)
    for value in (0.001, 0.3, 0.3, 7.0, 1000.0):
        child.observe(value, TRACE_1)
    assert seen == [5.0, 6.0, 7.0, 8.0, 9.0]
    assert (
        metrics.registry.get_sample_value(
            name + "_count", {"config": "default", "operation": "chat"}
        )
        == 10.0
    )


class ScrapeRendezvous:
    """Lets a recording thread stop at chosen points until one whole scrape has run there.

    The scraping thread wraps each scrape in :meth:`scrape`; the recorder calls :meth:`pause`,
    which returns once a scrape that began after the call has ended, so that scrape saw the
    recorder's state at that point exactly. Between pauses both threads run freely.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._begun = 0
        self._ended = 0
        self._stopped = False

    def scrape(self, scrape: Callable[[], None]) -> None:
        """Run one scrape, counted."""
        with self._cond:
            self._begun += 1
        try:
            scrape()
        finally:
            with self._cond:
                self._ended += 1
                self._cond.notify_all()

    def pause(self) -> None:
        """Wait until a scrape that began after this call has ended (or :meth:`stop`)."""
        with self._cond:
            target = self._begun + 1
            self._cond.wait_for(lambda: self._ended >= target or self._stopped)

    def stop(self) -> None:
        """Release the recorder for good: no more scrapes will come."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()


def test_scrapes_from_another_thread_while_recording_are_consistent() -> None:
    """Scrapes running concurrently with observations and new series are each consistent.

    The threads interleave freely (a tiny switch interval), and the recorder also stops every
    1,000 observations until a whole scrape has run, so scrapes in the middle of the
    recording happen however the machine schedules the threads.
    """
    metrics = GatewayMetrics()
    name = sc.M_UPSTREAM_DURATION
    children: list[HistogramChild] = [metrics.upstream_duration.labels(*A)]
    n = 20_000
    every = 1000
    values = [(i % 97) * 0.013 for i in range(n)]
    done = threading.Event()
    rendezvous = ScrapeRendezvous()
    failures: list[BaseException] = []
    seen: set[tuple[float, frozenset[str]]] = set()  # (series A's count, other models) a scrape saw

    def recorder() -> None:
        try:
            for i, value in enumerate(values):
                children[0].observe(value, TRACE_1 if i % 3 else None)
                if i % every == 0:
                    rendezvous.pause()
                    # New series appear while the other thread scrapes.
                    children.append(metrics.upstream_duration.labels(*B[:3], f"m{i}"))
                    children[-1].observe(value)
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)
        finally:
            done.set()

    last = 0.0

    def scrape() -> None:
        nonlocal last
        count: float = 0.0
        models: set[str] = set()
        for samples in histogram_samples(metrics.registry, name):
            series = check_consistent(samples, name)
            if samples[0].labels["model"] == A[3]:
                assert series >= last, "a series' count never goes back"
                last = count = series
            else:
                models.add(samples[0].labels["model"])
        seen.add((count, frozenset(models)))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    thread = threading.Thread(target=recorder)
    try:
        thread.start()
        while not done.is_set():
            rendezvous.scrape(scrape)
        scrape()
    finally:
        rendezvous.stop()
        thread.join()
        sys.setswitchinterval(interval)
    assert not failures, failures
    for i in range(0, n, every):
        # The scrape during the pause at i: i + 1 observations, the series made before i.
        models = frozenset(f"m{j}" for j in range(0, i, every))
        assert (float(i + 1), models) in seen, f"no scrape saw the pause at {i}"
    get = metrics.registry.get_sample_value
    assert get(name + "_count", dict(zip(TL, A, strict=True))) == float(n)
    assert get(name + "_sum", dict(zip(TL, A, strict=True))) == pytest.approx(sum(values))
