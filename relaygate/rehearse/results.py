"""What a rehearsal observed: per-request results, metric deltas and the report they form."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from relaygate.exchange import AttemptRecord
from relaygate.rehearse.scenario import Scenario, TargetFaults
from relaygate.rehearse.target import RehearsalConfig


@dataclass(frozen=True)
class RequestResult:
    """What one rehearsal request got, as the client saw it, plus the gateway's attempts.

    ``route`` is the ``x-relaygate-route`` header (empty when no upstream was tried);
    ``served_by`` the path of the target that produced the answer (the last one tried when
    the request failed); ``waited_s`` the backoff and Retry-After waits the gateway decided
    on; ``error`` the error message of a non-2xx answer (or of a failure to get any answer).
    For streamed requests, ``chunks`` counts the data events received before the end,
    ``stream_error`` is the message of an error event (or a note when the stream ended
    without ``[DONE]``).
    """

    number: int
    status: int
    latency_s: float
    route: str = ""
    served_by: str | None = None
    attempts: tuple[AttemptRecord, ...] = ()
    waited_s: float = 0.0
    error: str | None = None
    stream: bool = False
    chunks: int = 0
    stream_error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the answer was 2xx and, for a stream, ended cleanly."""
        return 200 <= self.status < 300 and self.stream_error is None

    @property
    def exhausted(self) -> bool:
        """Whether every target tried failed (a non-2xx answer after upstream attempts)."""
        return not 200 <= self.status < 300 and bool(self.route)


@dataclass(frozen=True)
class CircuitEvent:
    """A circuit breaker changing state during a rehearsal.

    ``at_s`` is the scenario time (or the seconds since the rehearsal started, for a
    scenario without ``interval_ms``); ``request`` the number of the request being handled;
    ``targets`` the labels of the targets the circuit belongs to.
    """

    at_s: float
    request: int
    targets: tuple[str, ...]
    from_state: str
    to_state: str


@dataclass(frozen=True)
class MetricDelta:
    """How much one Prometheus sample changed during the rehearsal.

    ``family`` is the metric family name, ``kind`` its type (``counter``, ``gauge``,
    ``histogram``), ``sample`` the sample name (``..._total``, ``..._count``, ``..._sum``),
    ``labels`` its label pairs in the family's order, ``documentation`` the family's help.
    """

    family: str
    kind: str
    sample: str
    labels: tuple[tuple[str, str], ...]
    delta: float
    documentation: str = ""


@dataclass(frozen=True)
class Report:
    """Everything a rehearsal observed; :func:`format_report` prints it."""

    scenario: Scenario
    config: RehearsalConfig
    faults: tuple[TargetFaults, ...]
    requests: tuple[RequestResult, ...]
    stream: bool
    seed: int
    real_waits: bool
    deadline_ms: int
    configured_deadline_ms: int
    metrics: tuple[MetricDelta, ...]
    notes: tuple[str, ...] = ()
    internal_errors: tuple[str, ...] = ()
    telemetry_errors: int = 0
    circuits: tuple[CircuitEvent, ...] = ()


_MetricKey = tuple[str, str, str, tuple[tuple[str, str], ...]]
_KEPT_SUFFIXES = ("_total", "_count", "_sum")


def metric_values(
    registry: CollectorRegistry, prefix: str = "relaygate_"
) -> dict[_MetricKey, float]:
    """Current values of the samples of ``registry`` whose family starts with ``prefix``.

    Keys are ``(family, kind, sample, labels)``; histogram buckets and ``_created``
    timestamps are left out. Keys keep the registry's order.
    """
    values: dict[_MetricKey, float] = {}
    for family in registry.collect():
        if not family.name.startswith(prefix):
            continue
        for sample in family.samples:
            if sample.name != family.name and not sample.name.endswith(_KEPT_SUFFIXES):
                continue
            key = (family.name, family.type, sample.name, tuple(sample.labels.items()))
            values[key] = float(sample.value)
    return values


def metric_deltas(
    before: Mapping[_MetricKey, float],
    after: Mapping[_MetricKey, float],
    documentation: Mapping[str, str] | None = None,
) -> tuple[MetricDelta, ...]:
    """The samples whose value changed between two :func:`metric_values` readings.

    In the order of ``after``; a sample absent from ``before`` counts from zero.
    """
    docs = documentation or {}
    out: list[MetricDelta] = []
    for key, value in after.items():
        delta = value - before.get(key, 0.0)
        if delta == 0:
            continue
        family, kind, sample, labels = key
        out.append(MetricDelta(family, kind, sample, labels, delta, docs.get(family, "")))
    return tuple(out)


def _documentation(registry: CollectorRegistry) -> dict[str, str]:
    return {family.name: family.documentation for family in registry.collect()}


def _duration(seconds: float) -> str:
    """``seconds`` as report text: milliseconds below one second, else seconds."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if float(seconds).is_integer() or seconds >= 100:
        return f"{seconds:.0f} s"
    return f"{seconds:.1f} s"
