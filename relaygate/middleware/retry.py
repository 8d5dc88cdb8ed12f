"""Retries of one target: call, ask the policy, wait, call again.

A retry is not scheduled when ``may_retry`` (the gateway's circuit breakers) says the
target's circuit no longer admits attempts: the fallback moves on at once instead.

The decision (which statuses, how many, how long: backoff with jitter or the upstream's
Retry-After, bounded by the request deadline) is
:func:`~relaygate.strategies.backoff.decide_retry`; this layer only loops, sleeps through the
injected ``sleep`` and records. It is also where attempts are counted against the request's
attempt budget: once spent, no retry starts and the last answer is returned. Each retry is
a span event, a metric sample on the target and a ``retry`` debug line. A streamed 2xx
answer of a target with ``recover_streams`` carries the remaining retries as its ``resume``
(see :mod:`relaygate.recovery`): a stream that breaks midway is judged like a 502 (a 408
when it stalled) and retried on the same settings.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from opentelemetry import trace
from opentelemetry.trace import Span, get_current_span
from opentelemetry.util.types import AttributeValue

from relaygate.config.model import RetrySettings
from relaygate.exchange import GatewayRequest, GatewayResponse, Resume
from relaygate.exporters import semconv as sc
from relaygate.exporters.logging import joins, logs_at
from relaygate.middleware.budget import record_budget_spent
from relaygate.middleware.finality import answer_final_code, record_final
from relaygate.pipeline import Handler
from relaygate.recovery.prefill import attempt
from relaygate.recovery.stream import broken_answer
from relaygate.strategies import Backoff, attempt_allowed, classify, decide_retry
from relaygate.strategies.reasons import Reason
from relaygate.strategies.triggers import policy_status
from relaygate.telemetry import Telemetry

_NOOP: Span = trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)


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

        async def attempts(
            request: GatewayRequest,
            settings: RetrySettings,
            span: Span,
            retries: int,
            failed: GatewayResponse | None,
        ) -> GatewayResponse:
            """Attempts on the target from retry number ``retries`` on; ``failed`` is the
            previous attempt's answer, judged first (a broken stream's stand-in, on resume)."""
            ctx = request.ctx
            target = request.target
            assert target is not None
            waited = 0.0
            while True:
                if failed is not None:
                    deadline = ctx.deadline
                    remaining = None
                    if deadline is not None:
                        now = clock() if clock else asyncio.get_running_loop().time()
                        remaining = deadline - now
                    failure = Reason(failed.failure) if failed.failure else None
                    final = answer_final_code(failed, target.on_error_codes)
                    decision = decide_retry(
                        status=failed.status,
                        failure=failure,
                        settings=settings,
                        retries_done=retries,
                        policy=backoff,
                        rand=rand(),
                        headers=failed.headers,
                        now_epoch_s=wall(),
                        remaining_s=remaining,
                        final=final,
                    )
                    if not decision.retry:
                        if final is not None and _would_retry(failed.status, settings, retries):
                            record_final(tel, request, final, "retry", target.path)
                        if span.is_recording():
                            span.set_attribute(sc.ATTEMPTS, retries + 1)
                        return failed
                    if may_retry is not None and not may_retry(request):
                        if span.is_recording():
                            span.set_attribute(sc.ATTEMPTS, retries + 1)
                        return failed
                    if not attempt_allowed(ctx.attempts_started, ctx.max_attempts):
                        record_budget_spent(tel, ctx.attempts_started, target)
                        if span.is_recording():
                            span.set_attribute(sc.ATTEMPTS, retries + 1)
                        return failed
                    await failed.aclose()
                    reason = classify(failed.status, failure).value
                    _record_retry(
                        tel, request, retries + 1, reason, decision.delay_s, decision.source
                    )
                    await sleep(decision.delay_s)
                    retries += 1
                    waited = decision.delay_s
                ctx.attempts_started += 1
                response = await attempt(
                    inner, request.derive(attempt=retries + 1, backoff_s=waited)
                )
                if response.ok or settings.attempts == 0:
                    if span.is_recording():
                        span.set_attribute(sc.ATTEMPTS, retries + 1)
                    if target.recover_streams and response.stream is not None and response.ok:
                        response.resume = resumer(request, settings, retries)
                    return response
                failed = response

        def resumer(request: GatewayRequest, settings: RetrySettings, retries: int) -> Resume:
            async def resume(reason: Reason, detail: str, prefill: str | None) -> GatewayResponse:
                again = request.derive(prefill=prefill)
                return await attempts(
                    again, settings, _NOOP, retries, broken_answer(reason, detail)
                )

            return resume

        async def retry(request: GatewayRequest) -> GatewayResponse:
            target = request.target
            assert target is not None
            settings = target.retry
            if settings.attempts > cap:
                settings = replace(settings, attempts=cap)
            if settings.attempts == 0:
                request.ctx.attempts_started += 1
                return await attempt(inner, request.derive(attempt=1))
            attrs = (
                {
                    sc.TARGET_PATH: target.path,
                    sc.GEN_AI_PROVIDER_NAME: sc.gen_ai_provider_name(target.provider),
                }
                if tel.detail == "full"  # else the layer span is a no-op
                else None
            )
            scope = tel.layer_span(sc.SPAN_RETRY, attrs)
            with scope as span:
                return scope.settle(await attempts(request, settings, span, 0, None))

        return retry


def _would_retry(status: int, settings: RetrySettings, retries_done: int) -> bool:
    """Whether the retry settings alone would retry an answer of ``status``."""
    return policy_status(status) in settings.on_status_codes and retries_done < settings.attempts


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
        attrs: dict[str, AttributeValue] = {sc.TARGET_PATH: target.path}
        if target.name:
            attrs[sc.TARGET_NAME] = target.name
        attrs[sc.ATTEMPT] = failed_attempt
        attrs[sc.RETRY_REASON] = reason
        attrs[sc.RETRY_WAIT_S] = delay
        attrs[sc.RETRY_WAIT_SOURCE] = source
        tel.guard(current.add_event, sc.EVENT_RETRY, attrs)
    if not logs_at(tel.logger, logging.DEBUG):
        return
    tel.guard(
        tel.logger.debug,
        "retry",
        **joins(request.ctx.request_id, config.id, current),
        target=target.label,
        target_path=target.path,
        attempt=failed_attempt,
        reason=reason,
        wait_ms=round(delay * 1000, 3),
        wait_source=source,
    )
