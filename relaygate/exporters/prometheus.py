"""Prometheus metrics: the families relaygate exports and the cheap way to record them.

Label values come from configuration (config id, target label, provider, configured model)
and from small fixed sets (status class, reason, token type), never from raw request input,
so series stay bounded. Label children are resolved once per (config, target) and reused.
Exemplars carry the trace id on latency and fallback samples when a trace is sampled.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from relaygate.config.model import Target
from relaygate.exporters import semconv as sc

OTHER_MODEL = "other"
"""Model label value for a model that is neither configured nor allow-listed."""

UPSTREAM_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)


def status_class(status: int) -> str:
    """``2xx``/``4xx``/``5xx``-style class of an HTTP status."""
    return f"{status // 100}xx"


@dataclass(slots=True)
class TargetSeries:
    """Pre-resolved label children of one target within one config."""

    duration: Histogram
    ttft: Histogram
    tokens_in: Counter
    tokens_out: Counter
    timeouts: Counter
    genai_duration_ok: Histogram
    genai_tokens_in: Histogram
    genai_tokens_out: Histogram
    labels: tuple[str, str, str, str]
    attempts: dict[tuple[str, str], Counter]

    def attempt(self, metrics: GatewayMetrics, status_class: str, reason: str) -> Counter:
        """The attempts counter child for one outcome (resolved once, then reused)."""
        key = (status_class, reason)
        child = self.attempts.get(key)
        if child is None:
            child = metrics.attempts.labels(*self.labels, status_class, reason)
            self.attempts[key] = child
        return child


@dataclass(slots=True)
class RequestSeries:
    """Pre-resolved per-request label children of one (config, operation)."""

    duration: Histogram
    overhead: Histogram
    attempts_per_request: Histogram
    requests: dict[str, Counter]


class GatewayMetrics:
    """The metric families of one gateway, registered in an injected ``CollectorRegistry``."""

    def __init__(
        self, registry: CollectorRegistry | None = None, models: Iterable[str] = ()
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._models = frozenset(models)
        self._targets: dict[tuple[str, str, str, str], TargetSeries] = {}
        self._requests: dict[tuple[str, str], RequestSeries] = {}
        reg = self.registry
        tl = ("config", "target", "provider", "model")
        self.requests = Counter(
            sc.M_REQUESTS,
            "Gateway requests answered, by config, operation and status class.",
            ("config", "operation", "status_class"),
            registry=reg,
        )
        self.request_duration = Histogram(
            sc.M_REQUEST_DURATION,
            "Whole-request latency seen by the client (streams: until the last byte).",
            ("config", "operation"),
            buckets=UPSTREAM_BUCKETS,
            registry=reg,
        )
        self.overhead = Histogram(
            sc.M_OVERHEAD,
            "Time the gateway itself added: request latency minus upstream attempt time "
            "and backoff waits.",
            ("config",),
            buckets=sc.OVERHEAD_BUCKETS,
            registry=reg,
        )
        self.attempts_per_request = Histogram(
            sc.M_ATTEMPTS_PER_REQUEST,
            "Upstream attempts made for one gateway request (retries and fallbacks included).",
            ("config",),
            buckets=sc.ATTEMPT_COUNT_BUCKETS,
            registry=reg,
        )
        self.in_flight = Gauge(sc.M_IN_FLIGHT, "Gateway requests being handled now.", registry=reg)
        self.exhausted = Counter(
            sc.M_EXHAUSTED,
            "Requests whose every target failed, by the last failure's reason.",
            ("config", "reason"),
            registry=reg,
        )
        self.attempts = Counter(
            sc.M_ATTEMPTS,
            "Upstream attempts by target and outcome.",
            (*tl, "status_class", "reason"),
            registry=reg,
        )
        self.upstream_duration = Histogram(
            sc.M_UPSTREAM_DURATION,
            "Latency of one upstream attempt (streams: until the first chunk).",
            tl,
            buckets=UPSTREAM_BUCKETS,
            registry=reg,
        )
        self.ttft = Histogram(
            sc.M_TTFT,
            "Time from sending a streamed attempt to its first chunk.",
            tl,
            buckets=UPSTREAM_BUCKETS,
            registry=reg,
        )
        self.tokens = Counter(
            sc.M_TOKENS,
            "Tokens reported by upstream usage, by target and token type.",
            (*tl, "type"),
            registry=reg,
        )
        self.retries = Counter(
            sc.M_RETRIES,
            "Retries scheduled on a target, by the reason of the attempt that failed.",
            (*tl, "reason"),
            registry=reg,
        )
        self.timeouts = Counter(
            sc.M_TIMEOUTS, "Attempts cut by the target's request_timeout.", tl, registry=reg
        )
        self.fallbacks = Counter(
            sc.M_FALLBACKS,
            "Moves from one target to the next within a fallback strategy.",
            ("config", "from_target", "to_target", "reason"),
            registry=reg,
        )
        gl = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model")
        self.genai_duration = Histogram(
            sc.M_GENAI_DURATION,
            "GenAI semantic convention: duration of one client operation (an upstream attempt).",
            (*gl, "error_type"),
            buckets=sc.GENAI_DURATION_BUCKETS,
            registry=reg,
        )
        self.genai_tokens = Histogram(
            sc.M_GENAI_TOKENS,
            "GenAI semantic convention: tokens used per operation, by token type.",
            (*gl, "gen_ai_token_type"),
            buckets=sc.GENAI_TOKEN_BUCKETS,
            registry=reg,
        )

    def request_series(self, config_id: str, operation: str) -> RequestSeries:
        """The per-request label children of ``(config_id, operation)``, created once."""
        key = (config_id, operation)
        found = self._requests.get(key)
        if found is None:
            found = RequestSeries(
                duration=self.request_duration.labels(config_id, operation),
                overhead=self.overhead.labels(config_id),
                attempts_per_request=self.attempts_per_request.labels(config_id),
                requests={},
            )
            if len(self._requests) < 10_000:
                self._requests[key] = found
        return found

    def request_counter(
        self, series: RequestSeries, config_id: str, operation: str, status_class: str
    ) -> Counter:
        """The requests counter child for one status class of ``series``."""
        child = series.requests.get(status_class)
        if child is None:
            child = self.requests.labels(config_id, operation, status_class)
            series.requests[status_class] = child
        return child

    def model_label(self, target: Target, requested: str | None) -> str:
        """A bounded model label: the configured model, an allow-listed one, or ``other``."""
        model = target.model
        if model is not None:
            return model
        if requested is not None and requested in self._models:
            return requested
        return OTHER_MODEL

    def series(self, config_id: str, target: Target, model: str, operation: str) -> TargetSeries:
        """The label children of ``target`` (created on first use, then reused)."""
        key = (config_id, target.path, model, operation)
        found = self._targets.get(key)
        if found is not None:
            return found
        # A config sent inline in a header may name its targets freely: label those by path.
        label = target.path if config_id == "inline" else target.label
        labels = (config_id, label, target.provider, model)
        genai = (operation, target.provider, model)
        found = TargetSeries(
            duration=self.upstream_duration.labels(*labels),
            ttft=self.ttft.labels(*labels),
            tokens_in=self.tokens.labels(*labels, "input"),
            tokens_out=self.tokens.labels(*labels, "output"),
            timeouts=self.timeouts.labels(*labels),
            genai_duration_ok=self.genai_duration.labels(*genai, ""),
            genai_tokens_in=self.genai_tokens.labels(*genai, "input"),
            genai_tokens_out=self.genai_tokens.labels(*genai, "output"),
            labels=labels,
            attempts={},
        )
        if len(self._targets) < 10_000:
            self._targets[key] = found
        return found
