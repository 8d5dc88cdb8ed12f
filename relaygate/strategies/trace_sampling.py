"""Tail-based trace sampling: whether a finished request's trace is exported, and why.

Decided once per request, when its answer has been delivered and its outcome is known
(:func:`decide`). Every trace that shows something worth reading is kept; only clean, fast
successes are sampled, at ``keep_ok_ratio``. The first reason that applies, in this order,
names the decision (the ``reason`` label of ``relaygate_traces_sampled_total``):

========================  ==================================================================
reason                    the request ...
========================  ==================================================================
``error``                 ended in any outcome other than ``ok`` except the client's leaving
``client_abort``          was abandoned by its client (``client_disconnected``, ``cancelled``)
``timeout``               had an attempt cut by a timeout, the deadline or a stream stall
``stream_recovery``       had a broken stream taken over (or tried) by another attempt
``fallback``              moved from one target to another
``retry``                 made more than one upstream attempt
``slow``                  took longer than ``latency_threshold_ms`` (a stream: to its head)
``parent_sampled``        continued a caller's ``traceparent`` that was sampled
``ratio``                 none of the above: kept or dropped by ``keep_ok_ratio``
========================  ==================================================================

Two more reasons are given by the buffering mechanism, not by this table: ``overflow`` (a
trace kept early because its spans outgrew the buffer, :mod:`relaygate.exporters.tail`) and
``undecided`` (a request span that ended before its request was decided; kept).

The ratio draw is the trace id's low 64 bits against ``keep_ok_ratio * 2**64``, as
OpenTelemetry's ``TraceIdRatioBased`` sampler draws: deterministic per trace, so gateways
sharing a trace and the same ratio agree, and no random source is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from relaygate.strategies.outcome import CANCELLED, OK

KEPT = "kept"
"""The ``decision`` label of a trace handed to the exporter."""
DROPPED = "dropped"
"""The ``decision`` label of a trace whose spans were discarded."""

ERROR = "error"
CLIENT_ABORT = "client_abort"
TIMEOUT = "timeout"
STREAM_RECOVERY = "stream_recovery"
FALLBACK = "fallback"
RETRY = "retry"
SLOW = "slow"
PARENT_SAMPLED = "parent_sampled"
RATIO = "ratio"
OVERFLOW = "overflow"
UNDECIDED = "undecided"

REASONS: tuple[str, ...] = (
    ERROR,
    CLIENT_ABORT,
    TIMEOUT,
    STREAM_RECOVERY,
    FALLBACK,
    RETRY,
    SLOW,
    PARENT_SAMPLED,
    RATIO,
    OVERFLOW,
    UNDECIDED,
)
"""Every ``reason`` label value, in the order the table above applies them."""

CLIENT_ABORTS: frozenset[str] = frozenset({"client_disconnected", CANCELLED})
"""Outcomes that mean the client left before its answer was complete."""

TIMEOUT_REASONS: frozenset[str] = frozenset({"timeout", "deadline", "stream_idle"})
"""Attempt reasons that mean a timer cut the attempt."""

_MAX_ID = 1 << 64


def _ratio_bound(ratio: float) -> int:
    """The draw's bound for ``ratio``: a trace is kept when its id's low 64 bits are below."""
    return _MAX_ID if ratio >= 1 else int(ratio * _MAX_ID)


@dataclass(frozen=True, slots=True)
class TailPolicy:
    """What tail sampling keeps: clean successes at ``keep_ok_ratio`` (0-1), every other
    trace, and successes slower than ``latency_threshold_s`` (``None``: no latency rule)."""

    keep_ok_ratio: float = 1.0
    latency_threshold_s: float | None = 2.0
    ratio_bound: int = field(init=False, repr=False, compare=False)
    """The ratio draw's bound (:func:`ratio_keeps`), worked out once."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "ratio_bound", _ratio_bound(self.keep_ok_ratio))

    @property
    def samples(self) -> bool:
        """Whether any trace can be dropped (a ratio below 1); at 1 every trace is kept."""
        return self.keep_ok_ratio < 1


class RequestFacts(NamedTuple):
    """What a finished request did, as far as the sampling decision needs.

    ``attempt_reasons``: each upstream attempt's reason, in order; ``recovered``: an attempt
    took over (or tried to take over) a broken stream; ``latency_s``: the whole request for
    a body, the time to the answer's head for a stream; ``parent_sampled``: the request
    continued a sampled ``traceparent``; ``trace_id``: the trace's id, for the ratio draw.
    """

    outcome: str
    attempt_reasons: Sequence[str] = ()
    fallbacks: int = 0
    recovered: bool = False
    latency_s: float = 0.0
    parent_sampled: bool = False
    trace_id: int = 0


class Decision(NamedTuple):
    """Keep the trace or not, and the reason (one of :data:`REASONS`)."""

    keep: bool
    reason: str

    @property
    def label(self) -> str:
        """The ``decision`` label: :data:`KEPT` or :data:`DROPPED`."""
        return KEPT if self.keep else DROPPED


_KEEP = {reason: Decision(True, reason) for reason in REASONS}
_RATIO_DROPPED = Decision(False, RATIO)


def decide(policy: TailPolicy, facts: RequestFacts) -> Decision:
    """Whether the trace of the request described by ``facts`` is exported (see the module
    docstring for the order of the reasons)."""
    outcome = facts.outcome
    if outcome != OK:
        return _KEEP[CLIENT_ABORT if outcome in CLIENT_ABORTS else ERROR]
    reasons = facts.attempt_reasons
    if not TIMEOUT_REASONS.isdisjoint(reasons):
        return _KEEP[TIMEOUT]
    if facts.recovered:
        return _KEEP[STREAM_RECOVERY]
    if facts.fallbacks:
        return _KEEP[FALLBACK]
    if len(reasons) > 1:
        return _KEEP[RETRY]
    threshold = policy.latency_threshold_s
    if threshold is not None and facts.latency_s > threshold:
        return _KEEP[SLOW]
    if facts.parent_sampled:
        return _KEEP[PARENT_SAMPLED]
    if (facts.trace_id & (_MAX_ID - 1)) < policy.ratio_bound:
        return _KEEP[RATIO]
    return _RATIO_DROPPED


def ratio_keeps(ratio: float, trace_id: int) -> bool:
    """Whether the trace ``trace_id`` falls within ``ratio`` (0-1) of all traces."""
    return (trace_id & (_MAX_ID - 1)) < _ratio_bound(ratio)
