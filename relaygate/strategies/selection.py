"""Which children of a strategy node a request tries, and in what order."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from relaygate.config.model import Node, Strategy
from relaygate.strategies.balance import IDLE, Load, choose, pick_weighted
from relaygate.strategies.conditions import matches

__all__ = ["NoRoute", "RoutingInput", "pick_weighted", "plan"]


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


def _idle(_: Node) -> Load:
    return IDLE


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
    * ``loadbalance``: one child picked by
      :func:`~relaygate.strategies.balance.choose` under the node's ``balance`` rule over the
      children's weights and loads (``loads`` reads a child's; idle when not given), with
      draws ``rand`` and ``rand2`` in ``[0, 1)`` (``weighted``: :func:`pick_weighted` with
      ``rand``).
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
        children = node.children
        weights = [child.weight for child in children]
        try:
            if node.balance == "weighted":
                index = pick_weighted(weights, rand)
            else:
                read = loads or _idle
                index = choose(node.balance, weights, [read(c) for c in children], rand, rand2)
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
