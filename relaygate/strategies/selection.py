"""Which children of a strategy node a request tries, and in what order."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from relaygate.config.model import Node, Strategy
from relaygate.strategies.conditions import matches

if TYPE_CHECKING:
    from relaygate.strategies.balance import Load


class NoRoute(Exception):
    """A strategy node has no child to route this request to.

    Raised for a conditional node when no condition matched and there is no default, or when
    the chosen name matches no child; and for a loadbalance node whose children all have
    zero weight, or any node without children.
    """


@dataclass(frozen=True, slots=True)
class RoutingInput:
    """The request facts routing decisions may read.

    ``params`` is the request body; ``metadata`` is the parsed ``x-portkey-metadata`` header.
    """

    params: Mapping[str, Any]
    metadata: Mapping[str, Any]

    def document(self) -> dict[str, Any]:
        """The document conditional queries are evaluated against."""
        return {"metadata": self.metadata, "params": self.params}


def usable_weight(weight: float) -> float:
    """A weight as used for picking: negative, NaN and infinite weights count as zero."""
    return weight if math.isfinite(weight) and weight > 0 else 0.0


def pick_weighted(weights: Sequence[float], rand: float) -> int:
    """The index picked by ``rand`` in ``[0, 1)`` over ``weights``.

    Walks the cumulative weights and returns the first index whose cumulative weight exceeds
    ``rand * total``: over a uniform ``rand`` each index is picked with probability
    ``weight / total``. Zero (and negative or non-finite) weights are never picked; ``rand``
    is clamped to ``[0, 1)``, and rounding at the top end picks the last positive weight.
    Raises :class:`ValueError` when no weight is positive.
    """
    usable = [usable_weight(w) for w in weights]
    peak = max(usable, default=0.0)
    if peak > 0:
        # Scaled by the largest weight: finite weights can still sum past the float range.
        usable = [w / peak for w in usable]
    total = math.fsum(usable)
    if total <= 0:
        raise ValueError("no positive weight to pick from")
    target = min(max(rand, 0.0), 1.0) * total
    cumulative = 0.0
    last = -1
    for index, weight in enumerate(usable):
        if weight <= 0:
            continue
        cumulative += weight
        last = index
        if target < cumulative:
            return index
    return last


def _balanced(
    node: Strategy,
    weights: list[float],
    loads: Callable[[Node], Load] | None,
    rand: float,
    rand2: float,
) -> int:
    """The index a load-aware ``balance`` rule picks (its module imports this one)."""
    from relaygate.strategies.balance import IDLE, choose

    seen = [loads(child) if loads else IDLE for child in node.children]
    return choose(node.balance, weights, seen, rand, rand2)


def _named(node: Strategy, name: str) -> Node:
    for child in node.children:
        if child.name == name:
            return child
    raise NoRoute(f"{node.label}: no child named {name!r}")


def plan(
    node: Strategy,
    inp: RoutingInput,
    rand: float,
    *,
    loads: Callable[[Node], Load] | None = None,
    rand2: float = 0.0,
) -> tuple[Node, ...]:
    """The children of ``node`` to try for this request, in order.

    * ``single``: the first child.
    * ``fallback``: every child, in config order.
    * ``loadbalance``: one child picked under the node's ``balance`` rule: ``weighted`` by
      :func:`pick_weighted` over the children's weights with ``rand`` in ``[0, 1)``; the
      others by :func:`~relaygate.strategies.balance.choose` over the weights and the
      children's loads (``loads`` reads one; idle when not given), with draws ``rand`` and
      ``rand2``.
    * ``conditional``: the child named by ``then`` of the first condition whose query
      :func:`~relaygate.strategies.conditions.matches` the request, else the child named
      ``default``.

    Raises :class:`NoRoute` when no child can be chosen.
    """
    if not node.children:
        raise NoRoute(f"{node.label}: strategy has no targets")
    if node.mode == "single":
        return (node.children[0],)
    if node.mode == "fallback":
        return node.children
    if node.mode == "loadbalance":
        weights = [child.weight for child in node.children]
        try:
            if node.balance == "weighted":
                index = pick_weighted(weights, rand)
            else:
                index = _balanced(node, weights, loads, rand, rand2)
        except ValueError:
            raise NoRoute(f"{node.label}: every target has zero weight") from None
        return (node.children[index],)
    doc = inp.document()
    for condition in node.conditions:
        if matches(condition.query, doc):
            return (_named(node, condition.then),)
    if node.default is not None:
        return (_named(node, node.default),)
    raise NoRoute(f"{node.label}: no condition matched and no default is set")
