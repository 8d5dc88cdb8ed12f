"""Per-attempt timeout: bound one upstream attempt by the target's ``request_timeout``.

The bound is the smaller of the target's ``request_timeout`` and what is left of the
request's overall deadline. When the target's own timeout expires the attempt is answered
with Portkey's 408 ``timeout_error`` (retry and fallback may act on it); when the overall
deadline is what expired, with a 504 ``deadline`` answer. The layer opens a span only for
a target that sets ``request_timeout``. For a stream, the bound covers
everything up to the first chunk; later gaps between chunks are bounded by the same
``request_timeout`` in the upstream stream itself.
"""

from __future__ import annotations

import asyncio

from opentelemetry.trace import get_current_span
from opentelemetry.util.types import AttributeValue

from relaygate.errors import synthesized
from relaygate.exchange import GatewayRequest, GatewayResponse
from relaygate.exporters import semconv as sc
from relaygate.pipeline import Handler
from relaygate.strategies.reasons import Reason
from relaygate.telemetry import Telemetry


def timeout_response(request: GatewayRequest) -> GatewayResponse:
    """The synthesized answer of an attempt cut by its bound (see the module docstring)."""
    if request.deadline_is_request:
        return synthesized(
            504,
            "request exceeded the gateway's overall deadline",
            type="timeout_error",
            code="deadline_exceeded",
            failure=Reason.DEADLINE.value,
        )
    ms = request.target.request_timeout_ms if request.target else None
    return synthesized(
        408,
        f"Request exceeded the timeout sent in the request: {ms}ms",
        type="timeout_error",
        code="request_timeout",
        failure=Reason.TIMEOUT.value,
    )


def _event(limit: float) -> None:
    span = get_current_span()
    if span.is_recording():
        span.add_event(sc.EVENT_TIMEOUT, {sc.TIMEOUT_MS: int(limit * 1000)})


class TimeoutLayer:
    """Cuts an attempt at its bound and answers :func:`timeout_response` instead."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._tel = telemetry

    def __call__(self, inner: Handler) -> Handler:
        tel = self._tel

        async def timeout(request: GatewayRequest) -> GatewayResponse:
            target = request.target
            assert target is not None
            loop = asyncio.get_running_loop()
            now = loop.time()
            limit = target.request_timeout_ms / 1000 if target.request_timeout_ms else None
            is_request = False
            deadline = request.ctx.deadline
            if deadline is not None and (limit is None or deadline - now < limit):
                limit = max(deadline - now, 0.0)
                is_request = True
            if limit is None:
                return await inner(request)
            timer = asyncio.timeout_at(now + limit)
            bounded = request.derive(attempt_timer=timer, deadline_is_request=is_request)
            if is_request:
                # Only the request's overall deadline applies: a safety net, not a setting of
                # this target, so it gets no span of its own (an expiry is still an event).
                try:
                    async with timer:
                        return await inner(bounded)
                except TimeoutError:
                    _event(limit)
                    return timeout_response(bounded)
            attrs: dict[str, AttributeValue] = {
                sc.TARGET_PATH: target.path,
                sc.TIMEOUT_MS: int(limit * 1000),
            }
            with tel.layer_span(sc.SPAN_TIMEOUT, attrs):
                try:
                    async with timer:
                        return await inner(bounded)
                except TimeoutError:
                    _event(limit)
                    return timeout_response(bounded)

        return timeout
