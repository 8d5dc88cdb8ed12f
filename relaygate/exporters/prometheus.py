"""Prometheus metrics: the families relaygate exports and the cheap way to record them.

Label values come from configuration (config id, target label, provider, configured model)
and from small fixed sets (status class, reason, token type), never from raw request input,
so series stay bounded; the names and models of a config a caller sent are admitted only
within a budget (:mod:`relaygate.exporters.labels`, the one place label values are chosen).
Label children are resolved once per label set and reused.
Exemplars carry the trace id on latency and fallback samples when a trace is sampled.

Recording does not go through ``prometheus_client``'s metric objects, whose children take a
lock per value and walk their bucket list in Python on every observation. relaygate records
from its event-loop thread only, so its families (:class:`CounterFamily`,
:class:`HistogramFamily`, :class:`GaugeFamily`) keep plain slotted children without locks: a
counter child is a float and its last exemplar; a histogram child is a list of per-bucket
(non-cumulative) counts, found with :func:`bisect.bisect_left` on the upper bounds, a sum and
the last exemplar of each bucket; the gauge is a number.

One :class:`FamilyCollector`, registered in the ``CollectorRegistry``, turns them into
``prometheus_client`` metric families when the registry is scraped: the same names, help
text, label order, ``le`` values, ``_sum``/``_count``, exemplars and ``_created`` series
(unless ``PROMETHEUS_DISABLE_CREATED_SERIES`` is set) as the client's own Counter, Histogram
and Gauge export, so both text formats read as before. A scrape may run on another thread
while a request records: each histogram child is read from one copy of its bucket list, and
its ``+Inf`` bucket and ``_count`` are the sum of that copy, so every scrape is internally
consistent.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client import metrics as _client_metrics
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Exemplar, Sample
from prometheus_client.utils import floatToGoString

from relaygate.config.model import Node, RoutingConfig, Target
from relaygate.exporters import semconv as sc
from relaygate.exporters.labels import DEFAULT_MAX_CALLER_VALUES, OTHER, LabelBudget, LabelPolicy

OTHER_MODEL = OTHER
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

_RecordedExemplar = tuple[dict[str, str], float, float]
"""An exemplar as recorded: ``(labels, observed value, unix time)``."""


NO_STATUS_CLASS = "none"
"""``status_class`` of an upstream attempt to which nothing was answered (timeout, connect
error, deadline, a client that left first): no status line, so no class."""


def status_class(status: int | None) -> str:
    """``2xx``/``4xx``/``5xx``-style class of an HTTP status; :data:`NO_STATUS_CLASS` for
    none."""
    return NO_STATUS_CLASS if status is None else f"{status // 100}xx"


def _use_created() -> bool:
    """Whether ``_created`` samples are exported (``prometheus_client``'s own switch)."""
    return bool(getattr(_client_metrics, "_use_created", True))


def _exemplar(recorded: _RecordedExemplar) -> Exemplar:
    return Exemplar(recorded[0], recorded[1], recorded[2])


class CounterChild:
    """One counter series: its value, last exemplar and creation time."""

    __slots__ = ("created", "exemplar", "labels", "value")

    def __init__(self, labels: tuple[str, ...]) -> None:
        self.labels = labels
        """The series' label values, in the family's label order."""
        self.value = 0.0
        """The running total."""
        self.exemplar: _RecordedExemplar | None = None
        """The exemplar of the last increment that carried one."""
        self.created = time.time()
        """Unix time the series was created (its ``_created`` sample)."""

    def inc(self, amount: float = 1, exemplar: dict[str, str] | None = None) -> None:
        """Add ``amount`` (non-negative); ``exemplar`` labels (``{"trace_id": ...}``) if given."""
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.value += amount
        if exemplar:
            self.exemplar = (exemplar, amount, time.time())


class HistogramChild:
    """One histogram series: per-bucket counts, sum, last exemplar per bucket, creation time.

    ``buckets[i]`` counts the observations in bucket ``i`` alone (not cumulative); the last
    entry is the ``+Inf`` bucket. A value equal to an upper bound falls in that bucket, as
    ``le`` means.
    """

    __slots__ = ("_bounds", "buckets", "created", "exemplars", "labels", "sum")

    def __init__(self, labels: tuple[str, ...], bounds: tuple[float, ...]) -> None:
        self.labels = labels
        """The series' label values, in the family's label order (without ``le``)."""
        self._bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)
        """Observations per bucket, non-cumulative, ``+Inf`` last."""
        self.sum = 0.0
        """Sum of the observed values."""
        self.exemplars: list[_RecordedExemplar | None] = [None] * (len(bounds) + 1)
        """The exemplar of the last observation that carried one, per bucket."""
        self.created = time.time()
        """Unix time the series was created (its ``_created`` sample)."""

    @property
    def count(self) -> int:
        """Number of observations (the sum of the buckets)."""
        return sum(self.buckets)

    def observe(self, value: float, exemplar: dict[str, str] | None = None) -> None:
        """Record ``value``; ``exemplar`` labels (``{"trace_id": ...}``) if given."""
        i = bisect_left(self._bounds, value)
        if not i and value != value:
            # NaN: added to the sum but to no bucket, as prometheus_client does.
            self.sum += value
            return
        self.sum += value
        self.buckets[i] += 1
        if exemplar:
            self.exemplars[i] = (exemplar, value, time.time())


class GaugeChild:
    """One labelled gauge series: its current value."""

    __slots__ = ("labels", "value")

    def __init__(self, labels: tuple[str, ...]) -> None:
        self.labels = labels
        """The series' label values, in the family's label order."""
        self.value = 0.0
        """The current value."""

    def set(self, value: float) -> None:
        """Set the value."""
        self.value = float(value)


_ChildT = TypeVar("_ChildT", CounterChild, HistogramChild, GaugeChild)


class _LabelledFamily(Generic[_ChildT]):
    """A family of series told apart by label values; children are created on first use."""

    __slots__ = ("_children", "documentation", "labelnames", "name")

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        """The family name (a counter's without ``_total``)."""
        self.documentation = documentation
        """The help text."""
        self.labelnames = tuple(labelnames)
        """The label names, in export order."""
        # Keyed by the label values as strings (prometheus_client applies ``str`` too): the
        # values callers pass are strings already, so the lookup hits on the tuple as given.
        self._children: dict[tuple[object, ...], _ChildT] = {}

    def labels(self, *values: object) -> _ChildT:
        """The child of one label set (values in ``labelnames`` order), created on first use.

        Raises ``ValueError`` when the number of values is not the number of label names.
        """
        child = self._children.get(values)
        if child is None:
            child = self._resolve(values)
        return child

    def _resolve(self, values: tuple[object, ...]) -> _ChildT:
        if not self.labelnames:
            raise ValueError(f"No label names were set when constructing {self.name}")
        if len(values) != len(self.labelnames):
            raise ValueError("Incorrect label count")
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            child = self._new_child(key)
            self._children[key] = child
        return child

    def _new_child(self, labels: tuple[str, ...]) -> _ChildT:
        raise NotImplementedError

    def _snapshot(self) -> list[_ChildT]:
        """The children in creation order (the dict is copied in one step: a child may be
        added by the recording thread while another thread scrapes)."""
        return list(self._children.copy().values())

    def children(self) -> list[_ChildT]:
        """The children in creation order; safe to call from another thread while one records."""
        return self._snapshot()

    def adopt(self, child: _ChildT) -> None:
        """Make ``child`` the series of its label values (replacing one there), as when a
        merged view is assembled from recorded values."""
        self._children[child.labels] = child


class CounterFamily(_LabelledFamily[CounterChild]):
    """A counter family, exported as ``<name>_total`` (plus ``<name>_created``).

    With label names, children are created on first use; without, the family has exactly one
    series, created (at 0) with the family, that :meth:`inc` and :attr:`value` act on, as a
    ``prometheus_client`` ``Counter`` without labels.
    """

    __slots__ = ()
    type: ClassVar[str] = "counter"
    """The Prometheus metric type."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        super().__init__(name, documentation, labelnames)
        if not self.labelnames:
            self._children[()] = CounterChild(())

    def inc(self, amount: float = 1) -> None:
        """Add ``amount`` to the one series of a family without labels."""
        self._children[()].inc(amount)

    @property
    def value(self) -> float:
        """The running total of the one series of a family without labels."""
        return self._children[()].value

    def _new_child(self, labels: tuple[str, ...]) -> CounterChild:
        return CounterChild(labels)

    def describe(self) -> CounterMetricFamily:
        """The family without samples (for registration)."""
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> CounterMetricFamily:
        """The family with one ``_total`` (and ``_created``) sample per child."""
        family = self.describe()
        created = _use_created()
        for child in self._snapshot():
            recorded = child.exemplar
            family.add_metric(
                child.labels,
                child.value,
                created=child.created if created else None,
                exemplar=None if recorded is None else _exemplar(recorded),
            )
        return family


class HistogramFamily(_LabelledFamily[HistogramChild]):
    """A labelled histogram family with fixed upper bounds (``+Inf`` added)."""

    __slots__ = ("_bounds", "_le")
    type: ClassVar[str] = "histogram"
    """The Prometheus metric type."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
    ) -> None:
        super().__init__(name, documentation, labelnames)
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds):
            raise ValueError("Buckets not in sorted order")
        if bounds and bounds[-1] == math.inf:
            bounds.pop()
        if not bounds:
            raise ValueError("Must have at least two buckets")
        self._bounds = tuple(bounds)
        le = [floatToGoString(b) for b in bounds]  # type: ignore[no-untyped-call]
        self._le = (*le, "+Inf")

    @property
    def bounds(self) -> tuple[float, ...]:
        """The finite upper bounds, ascending (``+Inf`` is implied)."""
        return self._bounds

    def _new_child(self, labels: tuple[str, ...]) -> HistogramChild:
        return HistogramChild(labels, self._bounds)

    def describe(self) -> HistogramMetricFamily:
        """The family without samples (for registration)."""
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> HistogramMetricFamily:
        """The family with cumulative ``_bucket`` samples, ``_count``, ``_sum`` (and
        ``_created``) per child, each child read from one copy of its buckets."""
        family = self.describe()
        created = _use_created()
        created_name = self.name + "_created"
        for child in self._snapshot():
            # Exemplars first: every exemplar read then belongs to an observation that the
            # bucket copy below already counts.
            exemplars = child.exemplars[:]
            counts = child.buckets[:]
            total = child.sum
            acc = 0
            buckets: list[tuple[str, float] | tuple[str, float, Exemplar]] = []
            for le, n, recorded in zip(self._le, counts, exemplars, strict=True):
                acc += n
                if recorded is None:
                    buckets.append((le, float(acc)))
                else:
                    buckets.append((le, float(acc), _exemplar(recorded)))
            family.add_metric(child.labels, buckets, total)
            if created:
                labels = dict(zip(self.labelnames, child.labels, strict=True))
                family.samples.append(Sample(created_name, labels, child.created))
        return family


class GaugeFamily:
    """A gauge without labels: the family and its one series."""

    __slots__ = ("documentation", "name", "value")
    type: ClassVar[str] = "gauge"
    """The Prometheus metric type."""
    labelnames: ClassVar[tuple[str, ...]] = ()
    """No labels."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        """The family name."""
        self.documentation = documentation
        """The help text."""
        self.value = 0.0
        """The current value."""

    def inc(self, amount: float = 1) -> None:
        """Add ``amount``."""
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        """Subtract ``amount``."""
        self.value -= amount

    def set(self, value: float) -> None:
        """Set the value."""
        self.value = float(value)

    def describe(self) -> GaugeMetricFamily:
        """The family without samples (for registration)."""
        return GaugeMetricFamily(self.name, self.documentation)

    def collect(self) -> GaugeMetricFamily:
        """The family with its one sample."""
        return GaugeMetricFamily(self.name, self.documentation, value=self.value)


class LabelledGaugeFamily(_LabelledFamily[GaugeChild]):
    """A gauge family with labels; children are created (at 0) on first use."""

    __slots__ = ()
    type: ClassVar[str] = "gauge"
    """The Prometheus metric type."""

    def _new_child(self, labels: tuple[str, ...]) -> GaugeChild:
        return GaugeChild(labels)

    def describe(self) -> GaugeMetricFamily:
        """The family without samples (for registration)."""
        return GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> GaugeMetricFamily:
        """The family with one sample per child."""
        family = self.describe()
        for child in self._snapshot():
            family.add_metric(child.labels, child.value)
        return family


Family = CounterFamily | HistogramFamily | GaugeFamily | LabelledGaugeFamily
"""Any of relaygate's metric families."""


class FamilyCollector:
    """The collector that exports relaygate's families to a ``CollectorRegistry``."""

    def __init__(self, families: Iterable[Family]) -> None:
        self.families = tuple(families)
        """The families, in export order."""

    def describe(self) -> list[Metric]:
        """The families without samples, so registering does not collect."""
        return [family.describe() for family in self.families]

    def collect(self) -> Iterator[Metric]:
        """The families with their current samples."""
        for family in self.families:
            yield family.collect()


@dataclass(slots=True)
class TargetSeries:
    """Pre-resolved label children of one target within one config."""

    duration: HistogramChild
    ttft: HistogramChild
    tokens_in: CounterChild
    tokens_out: CounterChild
    timeouts: CounterChild
    genai_duration_ok: HistogramChild
    genai_tokens_in: HistogramChild
    genai_tokens_out: HistogramChild
    labels: tuple[str, str, str, str]
    attempts: dict[tuple[str, str], CounterChild]

    def attempt(self, metrics: GatewayMetrics, status_class: str, reason: str) -> CounterChild:
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

    duration: HistogramChild
    overhead: HistogramChild
    attempts_per_request: HistogramChild
    requests: dict[tuple[str, str], CounterChild]


class GatewayMetrics:
    """The metric families of one gateway, registered in an injected ``CollectorRegistry``.

    All families are exported by one :class:`FamilyCollector` (``collector``), registered in
    ``registry`` on construction. ``models`` allow-lists request models as label values;
    ``max_caller_label_values`` is the budget of caller-supplied label values per label
    (:class:`~relaygate.exporters.labels.LabelBudget`).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        models: Iterable[str] = (),
        max_caller_label_values: int = DEFAULT_MAX_CALLER_VALUES,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._targets: dict[tuple[str, str, str, str, str], TargetSeries] = {}
        self._requests: dict[tuple[str, str], RequestSeries] = {}
        tl = ("config", "target", "provider", "model")
        self.requests = CounterFamily(
            sc.M_REQUESTS,
            "Gateway requests answered, by config, operation, status class and outcome.",
            ("config", "operation", "status_class", "outcome"),
        )
        self.request_duration = HistogramFamily(
            sc.M_REQUEST_DURATION,
            "Whole-request latency seen by the client (streams: until the last byte).",
            ("config", "operation"),
            UPSTREAM_BUCKETS,
        )
        self.overhead = HistogramFamily(
            sc.M_OVERHEAD,
            "Time the gateway itself added: request latency minus upstream attempt time "
            "and backoff waits.",
            ("config",),
            sc.OVERHEAD_BUCKETS,
        )
        self.attempts_per_request = HistogramFamily(
            sc.M_ATTEMPTS_PER_REQUEST,
            "Upstream attempts made for one gateway request (retries and fallbacks included).",
            ("config",),
            sc.ATTEMPT_COUNT_BUCKETS,
        )
        self.in_flight = GaugeFamily(sc.M_IN_FLIGHT, "Gateway requests being handled now.")
        self.exhausted = CounterFamily(
            sc.M_EXHAUSTED,
            "Requests whose every target failed, by the last failure's reason.",
            ("config", "reason"),
        )
        self.attempts = CounterFamily(
            sc.M_ATTEMPTS,
            "Upstream attempts by target and outcome.",
            (*tl, "status_class", "reason"),
        )
        self.upstream_duration = HistogramFamily(
            sc.M_UPSTREAM_DURATION,
            "Latency of one upstream attempt, as its span (streams: until the stream ended).",
            tl,
            UPSTREAM_BUCKETS,
        )
        self.ttft = HistogramFamily(
            sc.M_TTFT,
            "Time from sending a streamed attempt to its first chunk.",
            tl,
            UPSTREAM_BUCKETS,
        )
        self.tokens = CounterFamily(
            sc.M_TOKENS,
            "Tokens reported by upstream usage, by target and token type.",
            (*tl, "type"),
        )
        self.retries = CounterFamily(
            sc.M_RETRIES,
            "Retries scheduled on a target, by the reason of the attempt that failed.",
            (*tl, "reason"),
        )
        self.timeouts = CounterFamily(
            sc.M_TIMEOUTS,
            "Attempts cut by the target's request_timeout or first_token_timeout.",
            tl,
        )
        self.fallbacks = CounterFamily(
            sc.M_FALLBACKS,
            "Moves from one target to the next within a fallback strategy.",
            ("config", "from_target", "to_target", "reason"),
        )
        gl = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model")
        self.genai_duration = HistogramFamily(
            sc.M_GENAI_DURATION,
            "GenAI semantic convention: duration of one client operation (an upstream attempt, "
            "streams until the stream ended).",
            (*gl, "error_type"),
            sc.GENAI_DURATION_BUCKETS,
        )
        self.genai_tokens = HistogramFamily(
            sc.M_GENAI_TOKENS,
            "GenAI semantic convention: tokens used per operation, by token type.",
            (*gl, "gen_ai_token_type"),
            sc.GENAI_TOKEN_BUCKETS,
        )
        self.label_overflow = CounterFamily(
            sc.M_LABEL_OVERFLOW,
            "Recordings that labelled a caller-supplied value as other (past its label's "
            "budget, or too long), by budget.",
            ("label",),
        )
        self.telemetry_errors = CounterFamily(
            sc.M_TELEMETRY_ERRORS,
            "Telemetry calls that raised and were swallowed (exporters, hooks, metrics, logs); "
            "the requests they belonged to were answered as usual.",
            (),
        )
        self.recovery_given_up = CounterFamily(
            sc.M_RECOVERY_GIVEN_UP,
            "Recoverable streams that delivered more than limits.max_recovery_bytes: their kept "
            "chunks were released and a later break is not recovered.",
            (),
        )
        self.final_errors = CounterFamily(
            sc.M_FINAL_ERRORS,
            "Retries and fallbacks not made because the upstream's error is final (a "
            "content-policy refusal...), by error code and what was stopped.",
            ("config", "code", "stopped"),
        )
        self.config_reloads = CounterFamily(
            sc.M_CONFIG_RELOADS,
            "Server config reloads (SIGHUP or a changed file), applied (ok) or refused.",
            ("result",),
        )
        self.config_generation = GaugeFamily(
            sc.M_CONFIG_GENERATION,
            "Server config reloads applied since the process started (summed over workers).",
        )
        self.circuit_state = LabelledGaugeFamily(
            sc.M_CIRCUIT_STATE,
            "Circuit breaker state per target: 1 for the state the circuit is in, 0 for the "
            "others (state: closed, half_open, open).",
            (*tl, "state"),
        )
        self.circuit_transitions = CounterFamily(
            sc.M_CIRCUIT_TRANSITIONS,
            "Circuit breaker state changes per target, by the state entered.",
            (*tl, "state"),
        )
        self.traces_sampled = CounterFamily(
            sc.M_TRACES_SAMPLED,
            "Request traces decided by tail sampling: kept (exported) or dropped, and why.",
            ("decision", "reason"),
        )
        self.trace_spans = CounterFamily(
            sc.M_TRACE_SPANS,
            "Spans of tail-sampled traces, kept (exported) or dropped.",
            ("decision",),
        )
        self.cache_lookups = CounterFamily(
            sc.M_CACHE_LOOKUPS,
            "Response-cache lookups of configs with a cache, by config and result (hit, miss).",
            ("config", "result"),
        )
        self.rate_limited = CounterFamily(
            sc.M_RATE_LIMITED,
            "Requests refused (scope=key) or targets skipped (scope=target) for a rate limit "
            "or budget, by the limit reached (requests, tokens, spend).",
            ("scope", "limit"),
        )
        self.state_errors = CounterFamily(
            sc.M_STATE_ERRORS,
            "Round trips to the shared state backend (Redis) that failed and were answered "
            "from local state instead.",
            (),
        )
        self.state_up = GaugeFamily(
            sc.M_STATE_UP,
            "Whether the shared state backend (Redis) answers: 1 per worker that reaches it.",
        )
        self.labels = LabelPolicy(
            LabelBudget(max_caller_label_values, on_overflow=self._overflowed), models
        )
        """The label policy: every target, node and model label value is chosen here."""
        self.collector = FamilyCollector(
            (
                self.requests,
                self.request_duration,
                self.overhead,
                self.attempts_per_request,
                self.in_flight,
                self.exhausted,
                self.attempts,
                self.upstream_duration,
                self.ttft,
                self.tokens,
                self.retries,
                self.timeouts,
                self.fallbacks,
                self.genai_duration,
                self.genai_tokens,
                self.label_overflow,
                self.telemetry_errors,
                self.recovery_given_up,
                self.final_errors,
                self.config_reloads,
                self.config_generation,
                self.circuit_state,
                self.circuit_transitions,
                self.traces_sampled,
                self.trace_spans,
                self.cache_lookups,
                self.rate_limited,
                self.state_errors,
                self.state_up,
            )
        )
        """The collector exporting every family above, in this order."""
        self.registry.register(self.collector)

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
        self,
        series: RequestSeries,
        config_id: str,
        operation: str,
        status_class: str,
        outcome: str,
    ) -> CounterChild:
        """The requests counter child for one status class and outcome of ``series``
        (``outcome``: a bounded value of :mod:`relaygate.strategies.outcome`)."""
        key = (status_class, outcome)
        child = series.requests.get(key)
        if child is None:
            child = self.requests.labels(config_id, operation, status_class, outcome)
            series.requests[key] = child
        return child

    def _overflowed(self, label: str) -> None:
        self.label_overflow.labels(label).inc()

    def trust(self, configs: Iterable[RoutingConfig]) -> None:
        """Admit the server config's labels (node names and paths, pinned models) as they
        are, outside the caller budget; caller-supplied configs are skipped."""
        for config in configs:
            self.labels.trust_config(config)

    def model_label(
        self, target: Target, requested: str | None, caller_supplied: bool = False
    ) -> str:
        """A bounded model label: the configured model (budgeted when ``caller_supplied``),
        an allow-listed one, or ``other``."""
        return self.labels.model(target, requested, caller_supplied)

    def series(
        self,
        config_id: str,
        target: Target,
        model: str,
        operation: str,
        caller_supplied: bool = False,
    ) -> TargetSeries:
        """The label children of ``target`` under model label ``model`` (from
        :meth:`model_label`), created on first use, then reused. The target label is its name,
        else its path; for a ``caller_supplied`` config, within the label budget (values past
        it share the ``other`` children)."""
        label, model = self.labels.series(target, model, caller_supplied)
        provider = target.provider
        key = (config_id, label, provider, model, operation)
        found = self._targets.get(key)
        if found is not None:
            return found
        labels = (config_id, label, provider, model)
        genai = (operation, sc.gen_ai_provider_name(provider), model)
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

    def fallback(
        self, config_id: str, src: Node, dst: Node, reason: str, caller_supplied: bool = False
    ) -> CounterChild:
        """The fallbacks counter child of a move from ``src`` to ``dst`` (labelled by name,
        else path; for a ``caller_supplied`` config, within the label budget)."""
        frm, to = self.labels.fallback(src, dst, caller_supplied)
        return self.fallbacks.labels(config_id, frm, to, reason)
