"""Routing over the config tree: fallback, loadbalance, conditional and single strategies.

The layer walks the compiled tree from the root. At each strategy node the pure
:func:`~relaygate.strategies.selection.plan` says which children to try and in what order;
in ``fallback`` mode the next child is tried while
:func:`~relaygate.strategies.triggers.should_fall_back` says the last outcome warrants it and
the request's deadline has not passed and its attempt budget is not spent
(:func:`~relaygate.strategies.budget.attempt_allowed`; a span event says so). A leaf
binds its target to the request and calls the inner handler (retry → log → timeout →
provider). Each strategy node gets a span, so the trace mirrors the config tree; each move
to a next child is a span event, a metric and a ``fallback`` debug line naming both nodes
by name (``from_target``, ``to_target``: the metrics' labels) and path.

A streamed 2xx answer leaves with the rest of the walk as its ``resume`` when its fallback
strategy recovers streams (``recover_streams``): the target's remaining retries, then the
strategy's remaining children, then those of the strategies above. The route handler makes
such an answer's stream recoverable (:mod:`relaygate.recovery`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from opentelemetry.trace import get_current_span

from relaygate.config.model import Node, Strategy, Target
from relaygate.errors import GatewayError
from relaygate.exchange import GatewayRequest, GatewayResponse, Operation
from relaygate.exporters import semconv as sc
from relaygate.exporters.logging import joins
from relaygate.load import LoadBoard
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
    read by ``loadbalance`` nodes whose ``balance`` sees load (idle loads without one).
    """

    def __init__(
        self,
        telemetry: Telemetry,
        rand: Callable[[], float] = random.random,
        now: Callable[[], float] | None = None,
        loads: LoadBoard | None = None,
    ) -> None:
        self._tel = telemetry
        self._rand = rand
        self._now = now
        self._loads = loads

    def __call__(self, inner: Handler) -> Handler:
        tel = self._tel
        rand = self._rand
        clock = self._now
        board = self._loads

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
            attrs = {sc.STRATEGY_MODE: node.mode, sc.STRATEGY_PATH: node.path}
            scope = tel.layer_span(sc.SPAN_STRATEGY, attrs)
            with scope:
                try:
                    children = choose_children(node, inp)
                except NoRoute:
                    raise GatewayError(
                        400,
                        f"no conditional route matched at {node.path} and no default is set",
                        code="no_route",
                    ) from None
                response = await visit(children[0], request, inp)
                return scope.settle(await walk(node, children, 0, response, request, inp))

        async def walk(
            node: Strategy,
            children: tuple[Node, ...],
            index: int,
            response: GatewayResponse,
            request: GatewayRequest,
            inp: RoutingInput,
        ) -> GatewayResponse:
            """Go on from ``response``, the answer of ``children[index]``: fall back to the
            next child while the strategy says so, and return the answer that stands."""
            last = len(children) - 1
            while True:
                if node.mode != "fallback" or index == last:
                    return _resumable(node, children, index, response, request, inp)
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
                    return _resumable(node, children, index, response, request, inp)
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
                response = await visit(nxt, request, inp)

        def _resumable(
            node: Strategy,
            children: tuple[Node, ...],
            index: int,
            response: GatewayResponse,
            request: GatewayRequest,
            inp: RoutingInput,
        ) -> GatewayResponse:
            """``response``, given the rest of this fallback as its ``resume`` when it is a
            streamed 2xx answer and the strategy recovers streams."""
            if (
                node.mode != "fallback"
                or not node.recover_streams
                or index == len(children) - 1
                or response.stream is None
                or not response.ok
            ):
                return response
            within = response.resume

            async def resume(reason: Reason, detail: str, prefill: str | None) -> GatewayResponse:
                if within is not None:
                    answer = await within(reason, detail, prefill)
                    if answer.ok and answer.stream is not None:
                        return _resumable(node, children, index, answer, request, inp)
                else:
                    answer = broken_answer(reason, detail)
                again = request.derive(prefill=prefill)
                return await walk(node, children, index, answer, again, inp)

            response.resume = resume
            return response

        async def route(request: GatewayRequest) -> GatewayResponse:
            config = request.config
            assert config is not None, "config resolve runs before fallback"
            inp = RoutingInput(params=request.body, metadata=request.ctx.metadata)
            response = await visit(config.root, request, inp)
            if request.operation is not Operation.RESPONSES:
                # Recovery reads and rewrites chat chunks; Responses events end as broken.
                make_recoverable(response, request.ctx, tel)
            return response

        return route


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
        attrs = {sc.FALLBACK_FROM_PATH: child.path, sc.FALLBACK_TO_PATH: nxt.path}
        if child.name:
            attrs[sc.FALLBACK_FROM_NAME] = child.name
        if nxt.name:
            attrs[sc.FALLBACK_TO_NAME] = nxt.name
        attrs[sc.FALLBACK_REASON] = reason
        tel.guard(current.add_event, sc.EVENT_FALLBACK, attrs)
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
