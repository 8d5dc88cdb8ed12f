"""Admission: a gateway key's rate limits and the response cache, in one state round trip.

Sits just after config resolution (the cache key names the config). Only when the request
has something to check (its key has limits, its config a ``cache``) does it touch the state
backend, and then once: counting the request, reading the key's counters and looking up the
cached answer are one batch (one pipelined Redis round trip).

- **Key limits.** Over a limit (:func:`~relaygate.strategies.ratelimit.judge`) the request
  is answered 429 ``rate_limit_exceeded`` with ``retry-after`` and never routed; counted in
  ``relaygate_rate_limited_total{scope="key"}`` and a ``relaygate.rate_limited`` span
  event. An admitted request's tokens and spend (``prices``) are counted when its answer
  ends (a stream's at its end), in the background.
- **Cache.** Non-streamed requests whose config has ``cache: {mode: simple}``: a hit is
  answered from the cache (``x-portkey-cache-status: HIT``, route story ``cache:hit``, no
  upstream attempt); a miss is routed as usual, answered with ``x-portkey-cache-status:
  MISS``, and its 200 answer stored for ``max_age`` in the background. Streamed requests
  bypass the cache (no header). Every lookup counts in ``relaygate_cache_lookups_total``
  and is a ``relaygate.cache`` span event.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.trace import get_current_span

from relaygate.errors import GatewayError
from relaygate.exchange import GatewayRequest, GatewayResponse
from relaygate.exporters import semconv as sc
from relaygate.middleware.auth import presented_key
from relaygate.pipeline import Handler
from relaygate.state.backend import Get, Op, Set, StateBackend
from relaygate.state.cache import cache_key, decode_entry, encode_entry
from relaygate.state.limiter import Background, Check, Limiter
from relaygate.state.usage import on_usage
from relaygate.strategies.ratelimit import Price, Refusal, spend_micro_usd
from relaygate.telemetry import Telemetry

__all__ = ["AdmissionLayer", "record_refusal"]

CACHE_HEADER = "x-portkey-cache-status"
"""The response header saying whether the answer came from the cache (Portkey's name)."""


class AdmissionLayer:
    """Key limits and the response cache (see the module docstring)."""

    def __init__(
        self,
        backend: StateBackend,
        limiter: Limiter,
        background: Background,
        telemetry: Telemetry,
        *,
        prices: Mapping[str, Price],
        max_entry_bytes: int,
        share_across_keys: bool,
    ) -> None:
        self._backend = backend
        self._limiter = limiter
        self._background = background
        self._tel = telemetry
        self._prices = prices
        self._max_entry = max_entry_bytes
        self._shared = share_across_keys

    def __call__(self, inner: Handler) -> Handler:
        backend = self._backend
        limiter = self._limiter
        background = self._background
        tel = self._tel
        prices = self._prices
        max_entry = self._max_entry
        shared = self._shared

        async def admit(request: GatewayRequest) -> GatewayResponse:
            ctx = request.ctx
            config = request.config
            assert config is not None, "config resolve runs before admission"
            principal = ctx.principal
            limits = principal.limits if principal is not None else None
            cache = config.cache if not request.stream else None
            if limits is None and cache is None:
                return await inner(request)
            ops: list[Op] = []
            check: Check | None = None
            if limits is not None and principal is not None:
                check = limiter.plan("key:" + principal.name, limits)
                ops += check.ops
            key = None
            if cache is not None:
                key = cache_key(
                    request.operation.value,
                    request.body,
                    config,
                    request.headers,
                    principal,
                    presented_key(request.headers),
                    shared,
                )
                ops.append(Get(key))
            results = await backend.run(ops)
            if check is not None:
                refusal = limiter.verdict(check, results[: len(check.ops)])
                if refusal is not None:
                    record_refusal(tel, "key", refusal)
                    raise GatewayError(
                        429,
                        f"gateway key '{principal.name if principal else ''}' is over its "
                        f"{_LIMIT_NAMES[refusal.limit]}; retry after {refusal.retry_after_s} s",
                        type="rate_limit_error"
                        if refusal.limit != "spend"
                        else "insufficient_quota",
                        code="rate_limit_exceeded"
                        if refusal.limit != "spend"
                        else "budget_exceeded",
                        headers={"retry-after": str(refusal.retry_after_s)},
                    )
            if key is not None:
                found = results[-1]
                entry = decode_entry(found) if isinstance(found, bytes) else None
                _record_lookup(tel, config.id, entry is not None)
                if entry is not None:
                    ctx.route_note = "cache:hit"
                    return GatewayResponse(
                        status=200,
                        headers={"content-type": entry[0], CACHE_HEADER: "HIT"},
                        body=entry[1],
                    )
            response = await inner(request)
            if key is not None and cache is not None:
                response.headers[CACHE_HEADER] = "MISS"
                body = response.body
                if response.status == 200 and body is not None and len(body) <= max_entry:
                    kind = response.headers.get("content-type", "application/json")
                    value = encode_entry(kind, body)
                    background.spawn(backend.run([Set(key, value, cache.max_age_s)]))
            if check is not None and check.limits.counts_usage:

                def counted(usage: tuple[int, int] | None, model: str | None) -> None:
                    spend = spend_micro_usd(prices.get(model or ""), usage)
                    limiter.count_usage(check, usage, spend)

                on_usage(request, response, counted)
            return response

        return admit


_LIMIT_NAMES = {
    "requests": "requests-per-minute limit",
    "tokens": "tokens-per-minute limit",
    "spend": "spend budget",
}


def record_refusal(tel: Telemetry, scope: str, refusal: Refusal) -> None:
    """Count a refusal for a limit (``scope``: ``key`` or ``target``) and mark the span."""
    tel.guard(lambda: tel.metrics.rate_limited.labels(scope, refusal.limit).inc())
    current = get_current_span()
    if current.is_recording():
        tel.guard(
            current.add_event,
            sc.EVENT_RATE_LIMITED,
            {sc.RATE_LIMIT_SCOPE: scope, sc.RATE_LIMIT_KIND: refusal.limit},
        )


def _record_lookup(tel: Telemetry, config_id: str, hit: bool) -> None:
    result = "hit" if hit else "miss"
    tel.guard(lambda: tel.metrics.cache_lookups.labels(config_id, result).inc())
    current = get_current_span()
    if current.is_recording():
        tel.guard(current.add_event, sc.EVENT_CACHE, {sc.CACHE_STATUS: result})
