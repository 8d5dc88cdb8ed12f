"""Rate limits and budgets of upstream endpoints: a target over its own limit is skipped.

Sits between fallback and retry, so it is asked once each time the routing reaches a target
(the retries of one request on that target count once). The limit of a target is the first
``rate_limits.targets`` entry matching its provider and model (the pinned model, else the
requested one; an entry without ``model`` matches every model of its provider, each model
counted apart). Counters are per provider and model, shared by every config and, with
``state.redis``, every replica.

A target over its limit is not called: the attempt is recorded in the route story as
``rate_limited`` (no status: nothing was sent), as a ``relaygate.rate_limited`` span event
and in ``relaygate_rate_limited_total{scope="target"}``, and a synthesized 429
``rate_limited`` answer with ``retry-after`` goes back to the fallback, which moves past it
like an open circuit (unless its ``on_status_codes`` leaves 429 out; a lone target's
client then gets that 429). Its tokens and spend are counted when its answer ends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from relaygate.config.model import Target
from relaygate.errors import synthesized
from relaygate.exchange import AttemptRecord, GatewayRequest, GatewayResponse
from relaygate.middleware.admission import record_refusal
from relaygate.pipeline import Handler
from relaygate.state.backend import StateBackend
from relaygate.state.limiter import Limiter
from relaygate.state.usage import on_usage
from relaygate.strategies.ratelimit import Price, RateLimits, spend_micro_usd
from relaygate.strategies.reasons import Reason
from relaygate.telemetry import Telemetry

__all__ = ["TargetLimit", "TargetLimitLayer", "limit_of"]

_LIMITED = Reason.RATE_LIMITED.value


@dataclass(frozen=True, slots=True)
class TargetLimit:
    """One ``rate_limits.targets`` entry: which endpoints it matches and their limits."""

    provider: str
    model: str | None
    limits: RateLimits


def limit_of(rules: Sequence[TargetLimit], provider: str, model: str | None) -> TargetLimit | None:
    """The first rule matching ``provider`` and ``model``, if any."""
    for rule in rules:
        if rule.provider == provider and (rule.model is None or rule.model == model):
            return rule
    return None


class TargetLimitLayer:
    """Skips targets over their limits (see the module docstring)."""

    def __init__(
        self,
        rules: Sequence[TargetLimit],
        backend: StateBackend,
        limiter: Limiter,
        telemetry: Telemetry,
        prices: Mapping[str, Price],
    ) -> None:
        self._rules = tuple(rules)
        self._backend = backend
        self._limiter = limiter
        self._tel = telemetry
        self._prices = prices

    def __call__(self, inner: Handler) -> Handler:
        rules = self._rules
        backend = self._backend
        limiter = self._limiter
        tel = self._tel
        prices = self._prices

        async def limited(request: GatewayRequest) -> GatewayResponse:
            target = request.target
            assert target is not None
            model = target.model or request.model
            rule = limit_of(rules, target.provider, model)
            if rule is None:
                return await inner(request)
            check = limiter.plan(f"target:{target.provider}/{model or ''}", rule.limits)
            refusal = limiter.verdict(check, await backend.run(check.ops))
            if refusal is not None:
                record_refusal(tel, "target", refusal)
                return _skip(request, target, refusal.retry_after_s)
            response = await inner(request)
            if rule.limits.counts_usage:

                def counted(usage: tuple[int, int] | None, priced: str | None) -> None:
                    spend = spend_micro_usd(prices.get(priced or ""), usage)
                    limiter.count_usage(check, usage, spend)

                on_usage(request, response, counted)
            return response

        return limited


def _skip(request: GatewayRequest, target: Target, retry_after_s: int) -> GatewayResponse:
    """The answer for a target skipped for its limit, recorded in the route story."""
    request.ctx.attempts.append(
        AttemptRecord(target=target, attempt=1, status=None, reason=_LIMITED, duration_s=0.0)
    )
    response = synthesized(
        429,
        f"{target.path} skipped: it is over its rate limit or budget",
        type="rate_limit_error",
        code=_LIMITED,
        failure=_LIMITED,
    )
    response.headers["retry-after"] = str(retry_after_s)
    response.target = target
    return response
