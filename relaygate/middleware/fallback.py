"""Routing over the config tree: fallback, loadbalance, conditional and single strategies.

The layer walks the compiled tree from the root. At each strategy node the pure
:func:`~relaygate.strategies.selection.plan` says which children to try and in what order;
in ``fallback`` mode the next child is tried while
:func:`~relaygate.strategies.triggers.should_fall_back` says the last outcome warrants it and
the request's deadline has not passed and its attempt budget is not spent
(:func:`~relaygate.strategies.budget.attempt_allowed`; a span event says so). A leaf
binds its target to the request and calls the inner handler (retry → log → timeout →
provider). Each strategy node gets a span, so the trace mirrors the config tree; each move
to a next child is a span event and a metric.

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
from relaygate.exchange import GatewayRequest, GatewayResponse
from relaygate.exporters import semconv as sc
from relaygate.middleware.budget import record_budget_spent
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
    deadline is expressed in.
    """

    def __init__(
        self,
        telemetry: Telemetry,
        rand: Callable[[], float] = random.random,
        now: Callable[[], float] | None = None,
    ) -> None:
        self._tel = telemetry
        self._rand = rand
        self._now = now

    def __call__(self, inner: Handler) -> Handler:
        tel = self._tel
        rand = self._rand
        clock = self._now

        async def visit(node: Node, request: GatewayRequest, inp: RoutingInput) -> GatewayResponse:
            if isinstance(node, Target):
                return await inner(request.derive(target=node))
            attrs = {sc.STRATEGY_MODE: node.mode, sc.STRATEGY_PATH: node.path}
            with tel.layer_span(sc.SPAN_STRATEGY, attrs):
                try:
                    children = plan(node, inp, rand())
                except NoRoute:
                    raise GatewayError(
                        400,
                        f"no conditional route matched at {node.path} and no default is set",
                        code="no_route",
                    ) from None
                response = await visit(children[0], request, inp)
                return await walk(node, children, 0, response, request, inp)

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
                if not should_fall_back(response.status, failure, node.on_status_codes):
                    return _resumable(node, children, index, response, request, inp)
                child = children[index]
                nxt = children[index + 1]
                ctx = request.ctx
                if not attempt_allowed(ctx.attempts_started, ctx.max_attempts):
                    record_budget_spent(tel, ctx.attempts_started, nxt.path)
                    return response
                reason = classify(response.status, failure).value
                _record_fallback(tel, request, node, child, nxt, reason)
                await response.aclose()
                deadline = ctx.deadline
                now = clock() if clock else asyncio.get_running_loop().time()
                if deadline is not None and now >= deadline:
                    return response
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
