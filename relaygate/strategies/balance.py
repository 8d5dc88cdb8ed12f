"""How a ``loadbalance`` node picks one child: by weight alone, or seeing the children's load.

Pure decisions over the candidates a caller hands in (their weights and current
:class:`Load`) and uniform draws in ``[0, 1)``; whoever filters candidates (for instance,
skipping open circuits) does so before calling :func:`choose`. The load itself is measured
by :class:`relaygate.load.LoadBoard`.

* ``weighted``: a weighted random pick
  (:func:`~relaygate.strategies.selection.pick_weighted`).
* ``least_in_flight``: the child with the fewest requests in flight per unit of weight
  (``in_flight / weight``); ties (all idle, say) are broken by a weighted random pick
  among the tied, so idle children share traffic by weight.
* ``p2c_ewma``: power of two choices. Two distinct children are drawn by weight; the one
  with the lower cost ``latency_s * (in_flight + 1)`` wins, the first drawn on a tie. A child
  with no latency sample yet costs 0, so a new or long-idle child gets traffic and is
  measured.

Children of weight 0 (or negative, NaN, infinite) are never picked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from relaygate.config.model import Balance
from relaygate.strategies.reasons import Reason
from relaygate.strategies.selection import pick_weighted, usable_weight

FAILURE_PENALTY_S = 5.0
"""The latency sample a failed attempt (5xx, 429, timeout, connect error, broken answer)
counts as when it answered faster: a failing child must not look fast."""


@dataclass(frozen=True, slots=True)
class Load:
    """What is known of one child's load now: requests in flight to it, and its latency
    estimate (peak-EWMA of attempt latency, seconds; 0 without a sample)."""

    in_flight: int = 0
    latency_s: float = 0.0


IDLE = Load()


def _least_in_flight(weights: Sequence[float], loads: Sequence[Load], rand: float) -> int:
    usable = [usable_weight(w) for w in weights]
    scores = [
        load.in_flight / w if w > 0 else math.inf for w, load in zip(usable, loads, strict=True)
    ]
    best = min(scores)
    if best == math.inf:
        raise ValueError("no positive weight to pick from")
    tied = [w if score == best else 0.0 for w, score in zip(usable, scores, strict=True)]
    return pick_weighted(tied, rand)


def cost(load: Load) -> float:
    """The ``p2c_ewma`` cost of a child: its latency estimate times its load plus one."""
    return load.latency_s * (load.in_flight + 1)


def _p2c(weights: Sequence[float], loads: Sequence[Load], first: float, second: float) -> int:
    a = pick_weighted(weights, first)
    rest = [0.0 if i == a else usable_weight(w) for i, w in enumerate(weights)]
    if not any(rest):
        return a
    b = pick_weighted(rest, second)
    return a if cost(loads[a]) <= cost(loads[b]) else b


def choose(
    rule: Balance,
    weights: Sequence[float],
    loads: Sequence[Load],
    first: float,
    second: float = 0.0,
) -> int:
    """The index of the child ``rule`` picks among candidates of ``weights`` and ``loads``.

    ``first`` and ``second`` are independent uniform draws in ``[0, 1)``; ``weighted`` and
    ``least_in_flight`` use only ``first``, ``p2c_ewma`` draws its second child with
    ``second``. Raises :class:`ValueError` when no weight is positive.
    """
    if rule == "least_in_flight":
        return _least_in_flight(weights, loads, first)
    if rule == "p2c_ewma":
        return _p2c(weights, loads, first, second)
    return pick_weighted(weights, first)


def combined(loads: Sequence[Load]) -> Load:
    """The load of a child that is itself a strategy, from its targets' loads: requests in
    flight summed, latency the mean of the estimates its targets have (0 when none has)."""
    known = [load.latency_s for load in loads if load.latency_s > 0]
    return Load(
        in_flight=sum(load.in_flight for load in loads),
        latency_s=math.fsum(known) / len(known) if known else 0.0,
    )


def latency_sample(reason: Reason, elapsed_s: float) -> float | None:
    """The latency sample an attempt of ``reason`` that took ``elapsed_s`` contributes.

    A success counts as its latency; a failure (429, 5xx, timeout, connect error, invalid
    response, stream error) as at least :data:`FAILURE_PENALTY_S`; other answers (4xx: the
    request's own fault) and outcomes that say nothing of the child (the request deadline,
    no route) give no sample (``None``).
    """
    if reason is Reason.OK:
        return max(elapsed_s, 0.0)
    if reason in (Reason.STATUS_4XX, Reason.DEADLINE, Reason.NO_ROUTE):
        return None
    return max(elapsed_s, FAILURE_PENALTY_S)
