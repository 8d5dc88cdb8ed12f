"""Rate limits and budgets counted in a state backend (the mechanism of
:mod:`relaygate.strategies.ratelimit`).

A check is planned as a few operations (:meth:`Limiter.plan`) that the caller runs in one
batch, together with whatever else the request needs from the backend (a cache lookup),
then judged (:meth:`Limiter.verdict`). A refused request's count is given back in the
background; tokens and spend are added in the background once an answer's usage is known.
Nothing here waits on the backend except the one batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from relaygate.state.backend import Get, Incr, Op, Result, StateBackend, as_int
from relaygate.strategies.ratelimit import (
    WINDOW_S,
    CounterKeys,
    Counters,
    RateLimits,
    Refusal,
    counter_keys,
    judge,
)

__all__ = ["Background", "Check", "Limiter"]

_COUNTER_TTL_S = 2 * WINDOW_S + 5
"""A minute counter is read during its minute and the next one."""


class Background:
    """Fire-and-forget writes: each is a task the event loop keeps a reference to until it
    ends; an error in one is swallowed (the backends answer locally rather than raise)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` without waiting for it."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()

    async def drain(self) -> None:
        """Wait for the writes started so far (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


@dataclass(frozen=True, slots=True)
class Check:
    """One planned check: the subject, its limits and counter keys, and the operations to
    run (results ``start`` onwards in the batch belong to it)."""

    subject: str
    limits: RateLimits
    keys: CounterKeys
    ops: tuple[Op, ...]


class Limiter:
    """Plans, judges and counts rate limits on ``backend``; ``wall`` is epoch seconds."""

    def __init__(
        self,
        backend: StateBackend,
        background: Background,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._backend = backend
        self._background = background
        self._wall = wall

    def plan(self, subject: str, limits: RateLimits) -> Check:
        """The operations checking ``subject`` now: counting this request and reading the
        counters its limits need."""
        keys = counter_keys(subject, limits, self._wall())
        ops: list[Op] = []
        if limits.requests_per_minute is not None:
            ops += [Incr(keys.requests, 1, _COUNTER_TTL_S), Get(keys.requests_previous)]
        if limits.tokens_per_minute is not None:
            ops += [Get(keys.tokens), Get(keys.tokens_previous)]
        if limits.budget_usd is not None:
            ops.append(Get(keys.spend))
        return Check(subject, limits, keys, tuple(ops))

    def verdict(self, check: Check, results: Sequence[Result]) -> Refusal | None:
        """Judge ``check`` on its results (in the order of ``check.ops``); a refused
        request's count is given back."""
        values = iter(results)
        limits = check.limits
        counted: dict[str, int] = {}
        if limits.requests_per_minute is not None:
            counted["requests"] = as_int(next(values))
            counted["requests_previous"] = as_int(next(values))
        if limits.tokens_per_minute is not None:
            counted["tokens"] = as_int(next(values))
            counted["tokens_previous"] = as_int(next(values))
        if limits.budget_usd is not None:
            counted["spend_micro_usd"] = as_int(next(values))
        keys = check.keys
        refusal = judge(limits, Counters(**counted), keys.fraction, keys.period_left_s)
        if refusal is not None and limits.requests_per_minute is not None:
            self._background.spawn(self._backend.run([Incr(keys.requests, -1, _COUNTER_TTL_S)]))
        return refusal

    def count_usage(self, check: Check, usage: tuple[int, int] | None, spend: int) -> None:
        """Add an answer's tokens (input + output) and spend (micro-USD) to the counters of
        ``check``'s subject, in the background."""
        limits = check.limits
        keys = check.keys
        ops: list[Op] = []
        if limits.tokens_per_minute is not None and usage is not None:
            ops.append(Incr(keys.tokens, usage[0] + usage[1], _COUNTER_TTL_S))
        if limits.budget_usd is not None and spend:
            ops.append(Incr(keys.spend, spend, keys.spend_ttl_s))
        if ops:
            self._background.spawn(self._backend.run(ops))
