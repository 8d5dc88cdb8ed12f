"""Server config sections for shared state, rate limits, budgets and prices.

``state`` says where counters and cached answers live (in the process by default, in Redis
with ``state.redis.url``) and bounds the response cache; ``rate_limits.targets`` limits
upstream endpoints; ``prices`` prices models for spend budgets; a gateway key's own limits
are its ``auth.keys[].limits`` (:class:`LimitSpec`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from relaygate.config.schema import Int, LowerName, Number
from relaygate.state.backend import DEFAULT_CACHE_ENTRIES, DEFAULT_COUNTER_ENTRIES
from relaygate.strategies.ratelimit import Price, RateLimits

__all__ = [
    "CacheStoreSettings",
    "CounterStoreSettings",
    "LimitSpec",
    "PriceSettings",
    "RateLimitSettings",
    "RedisSettings",
    "StateSettings",
    "TargetLimitSpec",
]


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, use_attribute_docstrings=True
    )


class RedisSettings(_Section):
    """A Redis (or Valkey) server that every replica shares."""

    url: SecretStr
    """`redis://[user:password@]host:port/db` (`rediss://` for TLS); kept out of logs."""
    timeout_ms: Annotated[Int, Field(gt=0, le=10_000)] = 250
    """Connect and reply timeout of one round trip; past it, local state answers."""
    retry_interval_ms: Annotated[Int, Field(gt=0)] = 1000
    """After a failed round trip, how long local state answers before Redis is tried again."""
    prefix: Annotated[str, Field(min_length=1, max_length=64)] = "relaygate:"
    """Prefix of every key relaygate writes."""
    circuit_sync_ms: Annotated[Int, Field(gt=0)] = 500
    """How often each process reads the circuit-breaker decisions of the others."""


class CacheStoreSettings(_Section):
    """Bounds of the response cache (configs turn it on with `cache: {mode: simple}`)."""

    max_entries: Annotated[Int, Field(gt=0)] = DEFAULT_CACHE_ENTRIES
    """Entries of the in-process cache (least recently used dropped first); a store of its
    own, so filling it never evicts a rate-limit counter."""
    max_entry_bytes: Annotated[Int, Field(gt=0)] = 1024 * 1024
    """Answers larger than this are not cached."""
    share_across_keys: bool = False
    """Serve an answer cached for one gateway key (or caller credential) to another."""


class CounterStoreSettings(_Section):
    """Bound of the in-process store of rate-limit and budget counters (and, with Redis,
    of the local fallback's)."""

    max_entries: Annotated[Int, Field(gt=0)] = DEFAULT_COUNTER_ENTRIES
    """Counter keys kept (least recently used dropped first; a dropped counter restarts
    from 0). Each limited key or target uses up to five at a time."""


class StateSettings(_Section):
    """Where limits, budgets and cached answers are kept."""

    redis: RedisSettings | None = None
    """Shared state in Redis; without it, each process keeps its own."""
    cache: CacheStoreSettings = Field(default_factory=CacheStoreSettings)
    """Bounds of the response cache."""
    counters: CounterStoreSettings = Field(default_factory=CounterStoreSettings)
    """Bound of the in-process counter store, apart from the cache's."""


class LimitSpec(_Section):
    """Rate limits and a spend budget (unset: no limit of that kind)."""

    requests_per_minute: Annotated[Int, Field(gt=0)] | None = None
    """Requests admitted over a sliding minute."""
    tokens_per_minute: Annotated[Int, Field(gt=0)] | None = None
    """Tokens (input + output, from upstream usage) over a sliding minute."""
    budget_usd: Annotated[Number, Field(gt=0)] | None = None
    """Spend per `budget_period`, priced by `prices`."""
    budget_period: Literal["day", "month"] = "day"
    """The calendar period (UTC) a budget covers."""

    def limits(self) -> RateLimits:
        """The compiled limits."""
        return RateLimits(
            requests_per_minute=self.requests_per_minute,
            tokens_per_minute=self.tokens_per_minute,
            budget_usd=self.budget_usd,
            budget_period=self.budget_period,
        )


class TargetLimitSpec(LimitSpec):
    """Limits of one upstream endpoint: every target calling `provider` (and `model`, when
    given: the target's pinned model or else the requested one), whatever config names it."""

    provider: LowerName
    """The provider the limit applies to."""
    model: str | None = None
    """The model it applies to; unset: each model of the provider has these limits."""


class RateLimitSettings(_Section):
    """Limits of upstream endpoints (a gateway key's own are `auth.keys[].limits`)."""

    targets: list[TargetLimitSpec] = Field(default_factory=list)
    """The first entry matching a target applies to it."""


class PriceSettings(_Section):
    """The price of one model, USD per million tokens."""

    input_per_mtok: Annotated[Number, Field(ge=0)]
    """USD per million input (prompt) tokens."""
    output_per_mtok: Annotated[Number, Field(ge=0)]
    """USD per million output (completion) tokens."""

    def price(self) -> Price:
        """The compiled price."""
        return Price(self.input_per_mtok, self.output_per_mtok)
