"""Per-attempt timeout: bound one upstream attempt, innermost, just around the provider.

The bound is :func:`~relaygate.strategies.attempt_bound.attempt_bound`: the tightest of the
target's ``request_timeout``, its ``first_token_timeout`` (streamed requests only) and what
is left of the request's overall deadline. When the target's own timeout expires the
attempt is answered with Portkey's 408 ``timeout_error`` (retry and fallback may act on
it; code ``first_token_timeout`` when the first-token timeout was the bound, since the
provider handler answers a stream only once its first chunk carrying content has come,
before anything reached the client); when the overall deadline is what expired, with a 504
``deadline`` answer (at once, without starting the attempt, when the deadline has already
passed). Either is an ordinary answer to the layers outside, the log layer
included, which records it like any other: as an attempt nothing answered (no status, the
408 or 504 being the gateway's, for the client only). A cancellation that is not this layer's (the
client went away) passes through untouched. The layer opens a span only for a target that
sets ``request_timeout`` or (for a stream) ``first_token_timeout``; the expiry event and the
span carry ``relaygate.timeout.kind``. For a stream, the bound covers everything up to the
chunk the handler hands on; later gaps between chunks are bounded by the target's
``stream_idle_timeout`` (else ``request_timeout``) in the upstream stream itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from opentelemetry.trace import get_current_span
from opentelemetry.util.types import AttributeValue

from relaygate.config.model import Target
from relaygate.errors import synthesized
from relaygate.exchange import GatewayRequest, GatewayResponse
from relaygate.exporters import semconv as sc
from relaygate.pipeline import Handler
from relaygate.strategies.attempt_bound import AttemptBound, BoundSource, attempt_bound
from relaygate.strategies.reasons import Reason
from relaygate.telemetry import Telemetry


def timeout_response(target: Target, source: BoundSource) -> GatewayResponse:
    """The synthesized answer of an attempt on ``target`` cut by a bound from ``source``."""
    if source is BoundSource.REQUEST_DEADLINE:
        return synthesized(
            504,
            "request exceeded the gateway's overall deadline",
            type="timeout_error",
            code="deadline_exceeded",
            failure=Reason.DEADLINE.value,
        )
    if source is BoundSource.FIRST_TOKEN:
        return synthesized(
            408,
            f"no answer content from the upstream within the first_token_timeout: "
            f"{target.first_token_timeout_ms}ms",
            type="timeout_error",
            code="first_token_timeout",
            failure=Reason.TIMEOUT.value,
        )
    return synthesized(
        408,
        f"Request exceeded the timeout sent in the request: {target.request_timeout_ms}ms",
        type="timeout_error",
        code="request_timeout",
        failure=Reason.TIMEOUT.value,
    )


def _event(limit: float, source: BoundSource) -> None:
    span = get_current_span()
    if span.is_recording():
        span.add_event(
            sc.EVENT_TIMEOUT, {sc.TIMEOUT_MS: int(limit * 1000), sc.TIMEOUT_KIND: source.value}
        )


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


class TimeoutLayer:
    """Cuts an attempt at its bound and answers :func:`timeout_response` instead.

    ``now`` is the loop clock the request's deadline is read against (the event loop's
    ``time()`` by default); the cut itself is a relative timer on the running loop.
    """

    def __init__(self, telemetry: Telemetry, now: Callable[[], float] | None = None) -> None:
        self._tel = telemetry
        self._now = now or _loop_time

    def __call__(self, inner: Handler) -> Handler:
        tel = self._tel
        now = self._now

        async def bounded(request: GatewayRequest, bound: AttemptBound) -> GatewayResponse:
            target = request.target
            assert target is not None
            if bound.seconds <= 0:
                # Nothing left of the deadline: the attempt is not even started.
                _event(0.0, bound.source)
                return timeout_response(target, bound.source)
            try:
                async with asyncio.timeout(bound.seconds):
                    return await inner(request)
            except TimeoutError:
                _event(bound.seconds, bound.source)
                return timeout_response(target, bound.source)

        async def timeout(request: GatewayRequest) -> GatewayResponse:
            target = request.target
            assert target is not None
            first_token = target.first_token_timeout_ms if request.stream else None
            bound = attempt_bound(
                target.request_timeout_ms, request.ctx.deadline, now(), first_token
            )
            if bound is None:
                return await inner(request)
            if bound.source is BoundSource.REQUEST_DEADLINE:
                # Only the request's overall deadline applies: a safety net, not a setting of
                # this target, so it gets no span of its own (an expiry is still an event).
                return await bounded(request, bound)
            attrs: dict[str, AttributeValue] | None = (
                {
                    sc.TARGET_PATH: target.path,
                    sc.TIMEOUT_MS: int(bound.seconds * 1000),
                    sc.TIMEOUT_KIND: bound.source.value,
                }
                if tel.detail == "full"  # else the layer span is a no-op
                else None
            )
            scope = tel.layer_span(sc.SPAN_TIMEOUT, attrs)
            with scope:
                response = await bounded(request, bound)
                # The span fails when this layer cut the attempt, not for the answer's status.
                return scope.settle(response, failed=response.failure == Reason.TIMEOUT)

        return timeout
