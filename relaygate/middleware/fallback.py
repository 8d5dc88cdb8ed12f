"""Routing over the config tree: fallback, loadbalance, conditional and single strategies.

The layer walks the compiled tree from the root. At each strategy node the pure
:func:`~relaygate.strategies.selection.plan` says which children to try and in what order;
in ``fallback`` mode the next child is tried while
:func:`~relaygate.strategies.triggers.should_fall_back` says the last outcome warrants it and
the request's deadline has not passed and its attempt budget is not spent
(:func:`~relaygate.strategies.budget.attempt_allowed`; a span event says so). A leaf
binds its target to the request and calls the inner handler (retry → circuit → log → timeout →
provider). Each strategy node gets a span, so the trace mirrors the config tree; each move
to a next child is a span event and a metric.

Circuit breakers (:class:`~relaygate.middleware.breaker.CircuitGate`): while some circuit is
not closed, a ``fallback`` or ``loadbalance`` node looks at which children are open (a
target whose circuit refuses attempts, a strategy whose every target does). ``loadbalance``
picks among the others; ``fallback`` keeps its order and the circuit layer skips the open
ones (route story ``open``); when only open children are left after a failure, that
failure is the answer. When every child is open, the node answers a fast
``circuit_open`` 503 if a strategy above has another child to use, or if its breaker says
``on_all_open: reject``; otherwise it tries them anyway, as Portkey does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable

from opentelemetry.trace import get_current_span

from relaygate.config.model import Node, Strategy, Target, iter_targets
from relaygate.errors import GatewayError
from relaygate.exchange import GatewayRequest, GatewayResponse
from relaygate.exporters import semconv as sc
from relaygate.middleware.breaker import CircuitGate
from relaygate.middleware.budget import record_budget_spent
from relaygate.pipeline import Handler
from relaygate.strategies import (
    NoRoute,
    RoutingInput,
    attempt_allowed,
    classify,
    plan,
    should_fall_back,
)
from relaygate.strategies.reasons import Reason
from relaygate.telemetry import Telemetry, exemplar


class FallbackLayer:
    """Routes a request through its config tree (see the module docstring).

    ``rand`` draws the loadbalance choice; ``now`` is the event-loop clock the request
    deadline is expressed in; ``circuits`` the gateway's circuit breakers (``None``: none).
    """

    def __init__(
        self,
        telemetry: Telemetry,
        rand: Callable[[], float] = random.random,
        now: Callable[[], float] | None = None,
        circuits: CircuitGate | None = None,
    ) -> None:
        self._tel = telemetry
        self._rand = rand
        self._now = now
        self._circuits = circuits

    def __call__(self, inner: Handler) -> Handler:
        tel = self._tel
        rand = self._rand
        clock = self._now
        gate = self._circuits

        async def visit(node: Node, request: GatewayRequest, inp: RoutingInput) -> GatewayResponse:
            if isinstance(node, Target):
                return await inner(request.derive(target=node))
            attrs = {sc.STRATEGY_MODE: node.mode, sc.STRATEGY_PATH: node.path}
            with tel.layer_span(sc.SPAN_STRATEGY, attrs):
                spread = node.mode in _SPREAD and len(node.children) > 1
                route = node
                skipped: frozenset[int] = frozenset()
                if spread and gate is not None and not gate.quiet():
                    healthy = tuple(c for c in node.children if not gate.is_open(c, request))
                    skipped = frozenset(id(c) for c in node.children) - {id(c) for c in healthy}
                    if not healthy:
                        settings = gate.settings(node)
                        rejects = settings is not None and settings.on_all_open == "reject"
                        if request.circuit_alternatives or rejects:
                            return gate.reject(request, iter_targets(node))
                        # Every child open: try them anyway, their circuits do not refuse.
                        spread = False
                        skipped = frozenset()
                        request = request.derive(circuit_alternatives=False)
                    elif node.mode == "loadbalance" and len(healthy) < len(node.children):
                        route = dataclasses.replace(node, children=healthy)
                if spread and not request.circuit_alternatives:
                    request = request.derive(circuit_alternatives=True)
                try:
                    try:
                        children = plan(route, inp, rand())
                    except NoRoute:
                        if route is node:
                            raise
                        children = plan(node, inp, rand())  # the healthy ones weigh nothing
                except NoRoute:
                    raise GatewayError(
                        400,
                        f"no conditional route matched at {node.path} and no default is set",
                        code="no_route",
                    ) from None
                last = len(children) - 1
                response: GatewayResponse | None = None
                for index, child in enumerate(children):
                    if response is not None:
                        deadline = request.ctx.deadline
                        now = clock() if clock else asyncio.get_running_loop().time()
                        if deadline is not None and now >= deadline:
                            return response
                    response = await visit(child, request, inp)
                    if node.mode != "fallback" or index == last:
                        return response
                    failure = _failure(response)
                    if not should_fall_back(response.status, failure, node.on_status_codes):
                        return response
                    if skipped and all(id(c) in skipped for c in children[index + 1 :]):
                        return response  # only open circuits are left: this answer stands
                    nxt = children[index + 1]
                    ctx = request.ctx
                    if not attempt_allowed(ctx.attempts_started, ctx.max_attempts):
                        record_budget_spent(tel, ctx.attempts_started, nxt.path)
                        return response
                    reason = classify(response.status, failure).value
                    _record_fallback(tel, request, node, child, nxt, reason)
                    await response.aclose()
                assert response is not None
                return response

        async def route(request: GatewayRequest) -> GatewayResponse:
            config = request.config
            assert config is not None, "config resolve runs before fallback"
            inp = RoutingInput(params=request.body, metadata=request.ctx.metadata)
            return await visit(config.root, request, inp)

        return route


_SPREAD = frozenset({"fallback", "loadbalance"})
"""Modes whose children stand in for each other: an open child can be skipped."""


def _failure(response: GatewayResponse) -> Reason | None:
    return Reason(response.failure) if response.failure else None


def _record_fallback(
    tel: Telemetry,
    request: GatewayRequest,
    node: Strategy,
    child: Node,
    nxt: Node,
    reason: str,
) -> None:
    request.ctx.fallbacks += 1
    config = request.config
    config_id = config.id if config else ""
    supplied = config.caller_supplied if config else False
    try:
        counter = tel.metrics.fallback(config_id, child, nxt, reason, supplied)
        counter.inc(1, exemplar())
    except Exception:  # telemetry never fails a request
        tel.errors += 1
    current = get_current_span()
    if current.is_recording():
        tel.guard(
            current.add_event,
            sc.EVENT_FALLBACK,
            {"from": child.path, "to": nxt.path, sc.FALLBACK_REASON: reason},
        )
    tel.guard(
        tel.logger.debug,
        "fallback",
        config_id=config_id,
        strategy=node.path,
        from_target=child.path,
        to_target=nxt.path,
        reason=reason,
    )
