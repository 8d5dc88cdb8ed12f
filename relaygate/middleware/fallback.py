"""Routing over the config tree: fallback, loadbalance, conditional and single strategies.

The layer walks the compiled tree from the root. At each strategy node the pure
:func:`~relaygate.strategies.selection.plan` says which children to try and in what order;
in ``fallback`` mode the next child is tried while
:func:`~relaygate.strategies.triggers.should_fall_back` says the last outcome warrants it and
the request's deadline has not passed and its attempt budget is not spent
(:func:`~relaygate.strategies.budget.attempt_allowed`; a span event says so). A leaf
binds its target to the request and calls the inner handler (retry → circuit → load → log →
timeout → provider). Each strategy node gets a span, so the trace mirrors the config tree; each move
to a next child is a span event, a metric and a ``fallback`` debug line naming both nodes
by name (``from_target``, ``to_target``: the metrics' labels) and path.

A streamed 2xx answer leaves with the rest of the walk as its ``resume`` when its fallback
strategy recovers streams (``recover_streams``): the target's remaining retries, then the
strategy's remaining children, then those of the strategies above. The route handler makes
such an answer's stream recoverable (:mod:`relaygate.recovery`).

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
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry.trace import get_current_span

from relaygate.config.model import Node, Strategy, Target, iter_targets
from relaygate.config.server import DEFAULT_MAX_RECOVERY_BYTES
from relaygate.errors import GatewayError
from relaygate.exchange import GatewayRequest, GatewayResponse, Operation
from relaygate.exporters import semconv as sc
from relaygate.exporters.logging import joins, logs_at
from relaygate.load import LoadBoard
from relaygate.middleware.breaker import CircuitGate
from relaygate.middleware.budget import record_budget_spent
from relaygate.middleware.finality import answer_final_code, record_final
from relaygate.pipeline import Handler
from relaygate.recovery.stream import broken_answer, make_recoverable
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
    deadline is expressed in; ``loads`` is the gateway's :class:`~relaygate.load.LoadBoard`,
    read by ``loadbalance`` nodes whose ``balance`` sees load (idle loads without one);
    ``circuits`` the gateway's circuit breakers (``None``: none); ``max_recovery_bytes``
    how much of a recoverable stream is kept for mid-stream recovery.
    """

    def __init__(
        self,
        telemetry: Telemetry,
        rand: Callable[[], float] = random.random,
        now: Callable[[], float] | None = None,
        loads: LoadBoard | None = None,
        circuits: CircuitGate | None = None,
        max_recovery_bytes: int = DEFAULT_MAX_RECOVERY_BYTES,
    ) -> None:
        self._tel = telemetry
        self._max_recovery = max_recovery_bytes
        self._rand = rand
        self._now = now
        self._loads = loads
        self._circuits = circuits

    def __call__(self, inner: Handler) -> Handler:
        tel = self._tel
        rand = self._rand
        clock = self._now
        board = self._loads
        gate = self._circuits
        max_recovery = self._max_recovery

        def choose_children(node: Strategy, inp: RoutingInput) -> tuple[Node, ...]:
            if node.balance == "weighted" or node.mode != "loadbalance":
                return plan(node, inp, rand())
            loads = None
            if board is not None:
                loads = board.loads(clock() if clock else asyncio.get_running_loop().time())
            second = rand() if node.balance == "p2c_ewma" else 0.0
            return plan(node, inp, rand(), loads=loads, rand2=second)

        async def visit(node: Node, request: GatewayRequest, inp: RoutingInput) -> GatewayResponse:
            if isinstance(node, Target):
                return await inner(request.derive(target=node))
            attrs = (
                {sc.STRATEGY_MODE: node.mode, sc.STRATEGY_PATH: node.path}
                if tel.detail == "full"  # else the layer span is a no-op
                else None
            )
            scope = tel.layer_span(sc.SPAN_STRATEGY, attrs)
            with scope:
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
                            return scope.settle(gate.reject(request, iter_targets(node)))
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
                        children = choose_children(route, inp)
                    except NoRoute:
                        if route is node:
                            raise
                        children = choose_children(node, inp)  # the healthy ones weigh nothing
                except NoRoute:
                    raise GatewayError(
                        400,
                        f"no conditional route matched at {node.path} and no default is set",
                        code="no_route",
                    ) from None
                response = await visit(children[0], request, inp)
                at = _Walk(node, children, inp, skipped)
                return scope.settle(await walk(at, 0, response, request))

        async def walk(
            at: _Walk, index: int, response: GatewayResponse, request: GatewayRequest
        ) -> GatewayResponse:
            """Go on from ``response``, the answer of ``at.children[index]``: fall back to
            the next child while the strategy says so, and return the answer that stands."""
            node, children, skipped = at.node, at.children, at.skipped
            last = len(children) - 1
            while True:
                if node.mode != "fallback" or index == last:
                    return _resumable(at, index, response, request)
                failure = _failure(response)
                child = children[index]
                final = answer_final_code(response, node.on_error_codes)
                if not should_fall_back(
                    response.status, failure, node.on_status_codes, final is not None
                ):
                    if final is not None and should_fall_back(
                        response.status, failure, node.on_status_codes
                    ):
                        record_final(tel, request, final, "fallback", child.path)
                    return _resumable(at, index, response, request)
                if skipped and all(id(c) in skipped for c in children[index + 1 :]):
                    return response  # only open circuits are left: this answer stands
                nxt = children[index + 1]
                ctx = request.ctx
                # A move is recorded only when the next child will be tried: once the
                # deadline has passed, the answer so far is the request's.
                deadline = ctx.deadline
                now = clock() if clock else asyncio.get_running_loop().time()
                if deadline is not None and now >= deadline:
                    return response
                if not attempt_allowed(ctx.attempts_started, ctx.max_attempts):
                    record_budget_spent(tel, ctx.attempts_started, nxt)
                    return response
                reason = classify(response.status, failure).value
                _record_fallback(tel, request, node, child, nxt, reason)
                await response.aclose()
                index += 1
                response = await visit(nxt, request, at.inp)

        def _resumable(
            at: _Walk, index: int, response: GatewayResponse, request: GatewayRequest
        ) -> GatewayResponse:
            """``response``, given the rest of this fallback as its ``resume`` when it is a
            streamed 2xx answer and the strategy recovers streams."""
            node = at.node
            if (
                node.mode != "fallback"
                or not node.recover_streams
                or index == len(at.children) - 1
                or response.stream is None
                or not response.ok
            ):
                return response
            within = response.resume

            async def resume(reason: Reason, detail: str, prefill: str | None) -> GatewayResponse:
                if within is not None:
                    answer = await within(reason, detail, prefill)
                    if answer.ok and answer.stream is not None:
                        return _resumable(at, index, answer, request)
                else:
                    answer = broken_answer(reason, detail)
                again = request.derive(prefill=prefill)
                return await walk(at, index, answer, again)

            response.resume = resume
            return response

        async def route(request: GatewayRequest) -> GatewayResponse:
            config = request.config
            assert config is not None, "config resolve runs before fallback"
            inp = RoutingInput(params=request.body, metadata=request.ctx.metadata)
            response = await visit(config.root, request, inp)
            if response.resume is not None and request.operation is not Operation.RESPONSES:
                # Recovery reads and rewrites chat chunks; Responses events end as broken.
                make_recoverable(response, request.ctx, tel, max_recovery)
            return response

        return route


@dataclass(frozen=True, slots=True)
class _Walk:
    """A fallback under way: its strategy node, its children in the order planned, the
    routing input, and the ids of the children skipped for an open circuit."""

    node: Strategy
    children: tuple[Node, ...]
    inp: RoutingInput
    skipped: frozenset[int]


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
        counter.inc(1, exemplar(kept=True))
    except Exception:  # telemetry never fails a request
        tel.errors += 1
    current = get_current_span()
    if current.is_recording():
        attrs = {sc.FALLBACK_FROM_PATH: child.path, sc.FALLBACK_TO_PATH: nxt.path}
        if child.name:
            attrs[sc.FALLBACK_FROM_NAME] = child.name
        if nxt.name:
            attrs[sc.FALLBACK_TO_NAME] = nxt.name
        attrs[sc.FALLBACK_REASON] = reason
        tel.guard(current.add_event, sc.EVENT_FALLBACK, attrs)
    if not logs_at(tel.logger, logging.DEBUG):
        return
    tel.guard(
        tel.logger.debug,
        "fallback",
        **joins(request.ctx.request_id, config_id, current),
        strategy=node.path,
        from_target=child.label,
        from_target_path=child.path,
        to_target=nxt.label,
        to_target_path=nxt.path,
        reason=reason,
    )
