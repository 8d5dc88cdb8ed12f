"""Retries of one target: call, ask the policy, wait, call again.

A retry is not scheduled when ``may_retry`` (the gateway's circuit breakers) says the
target's circuit no longer admits attempts: the fallback moves on at once instead.

The decision (which statuses, how many, how long: backoff with jitter or the upstream's
Retry-After, bounded by the request deadline) is
:func:`~relaygate.strategies.backoff.decide_retry`; this layer only loops, sleeps through the
injected ``sleep`` and records. It is also where attempts are counted against the request's
attempt budget: once spent, no retry starts and the last answer is returned. Each retry is
a span event and a metric sample on the target.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from opentelemetry.trace import get_current_span

from relaygate.exchange import GatewayRequest, GatewayResponse
from relaygate.exporters import semconv as sc
from relaygate.middleware.budget import record_budget_spent
from relaygate.pipeline import Handler
from relaygate.strategies import Backoff, attempt_allowed, classify, decide_retry
from relaygate.strategies.reasons import Reason
from relaygate.telemetry import Telemetry


class RetryLayer:
    """Retries a target per its ``retry`` settings; ``max_attempts`` caps any config's count."""

    def __init__(
        self,
        telemetry: Telemetry,
        backoff: Backoff | None = None,
        max_attempts: int = 5,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        wall: Callable[[], float] = time.time,
        now: Callable[[], float] | None = None,
        may_retry: Callable[[GatewayRequest], bool] | None = None,
    ) -> None:
        self._tel = telemetry
        self._backoff = backoff or Backoff()
        self._max = max_attempts
        self._sleep = sleep
        self._rand = rand
        self._wall = wall
        self._now = now
        self._may_retry = may_retry

    def __call__(self, inner: Handler) -> Handler:
        tel = self._tel
        backoff = self._backoff
        cap = self._max
        sleep = self._sleep
        rand = self._rand
        wall = self._wall
        clock = self._now
        may_retry = self._may_retry

        async def retry(request: GatewayRequest) -> GatewayResponse:
            target = request.target
            assert target is not None
            settings = target.retry
            if settings.attempts > cap:
                settings = replace(settings, attempts=cap)
            ctx = request.ctx
            if settings.attempts == 0:
                ctx.attempts_started += 1
                return await inner(request.derive(attempt=1))
            attrs = {sc.TARGET_PATH: target.path, sc.GEN_AI_PROVIDER_NAME: target.provider}
            with tel.layer_span(sc.SPAN_RETRY, attrs) as span:
                retries = 0
                waited = 0.0
                while True:
                    ctx.attempts_started += 1
                    response = await inner(request.derive(attempt=retries + 1, backoff_s=waited))
                    if response.ok or settings.attempts == 0:
                        if span.is_recording():
                            span.set_attribute(sc.ATTEMPTS, retries + 1)
                        return response
                    deadline = request.ctx.deadline
                    remaining = None
                    if deadline is not None:
                        now = clock() if clock else asyncio.get_running_loop().time()
                        remaining = deadline - now
                    failure = Reason(response.failure) if response.failure else None
                    decision = decide_retry(
                        status=response.status,
                        failure=failure,
                        settings=settings,
                        retries_done=retries,
                        policy=backoff,
                        rand=rand(),
                        headers=response.headers,
                        now_epoch_s=wall(),
                        remaining_s=remaining,
                    )
                    if not decision.retry or (may_retry is not None and not may_retry(request)):
                        if span.is_recording():
                            span.set_attribute(sc.ATTEMPTS, retries + 1)
                        return response
                    if not attempt_allowed(ctx.attempts_started, ctx.max_attempts):
                        record_budget_spent(tel, ctx.attempts_started, target.path)
                        if span.is_recording():
                            span.set_attribute(sc.ATTEMPTS, retries + 1)
                        return response
                    await response.aclose()
                    reason = classify(response.status, failure).value
                    _record_retry(
                        tel, request, retries + 1, reason, decision.delay_s, decision.source
                    )
                    await sleep(decision.delay_s)
                    retries += 1
                    waited = decision.delay_s

        return retry


def _record_retry(
    tel: Telemetry,
    request: GatewayRequest,
    failed_attempt: int,
    reason: str,
    delay: float,
    source: str,
) -> None:
    target = request.target
    config = request.config
    assert target is not None and config is not None
    metrics = tel.metrics
    supplied = config.caller_supplied
    model = metrics.model_label(target, request.model, supplied)
    series = metrics.series(config.id, target, model, request.operation.value, supplied)
    tel.guard(metrics.retries.labels(*series.labels, reason).inc)
    current = get_current_span()
    if current.is_recording():
        tel.guard(
            current.add_event,
            sc.EVENT_RETRY,
            {
                sc.TARGET_PATH: target.path,
                sc.ATTEMPT: failed_attempt,
                "reason": reason,
                "wait_s": delay,
                "wait_source": source,
            },
        )
