"""The state backend interface and its in-process implementation.

Callers hand a backend a batch of operations (:class:`Incr`, :class:`Get`, :class:`Set`) and
get one result per operation, in order. A batch is one round trip to a remote backend
(Redis pipelines it), so a request that needs several counters pays for one. Keys are
strings built by relaygate (never raw caller input); values are integers (counters) or bytes
(cached answers); every key written carries a time to live.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "CACHE_PREFIX",
    "DEFAULT_CACHE_ENTRIES",
    "DEFAULT_COUNTER_ENTRIES",
    "Get",
    "Incr",
    "MemoryBackend",
    "Op",
    "Result",
    "Set",
    "StateBackend",
]


@dataclass(frozen=True, slots=True)
class Incr:
    """Add ``amount`` to the integer counter ``key`` (created at 0) and make it expire
    ``ttl_s`` seconds from now; the result is the counter's new value."""

    key: str
    amount: int
    ttl_s: int


@dataclass(frozen=True, slots=True)
class Get:
    """Read ``key``: the result is its bytes, or ``None`` when it is absent or expired."""

    key: str


@dataclass(frozen=True, slots=True)
class Set:
    """Store ``value`` under ``key`` for ``ttl_s`` seconds; the result is ``None``."""

    key: str
    value: bytes
    ttl_s: int


Op = Incr | Get | Set
"""One operation of a batch."""

Result = int | bytes | None
"""One operation's result: a counter's new value, a value read, or nothing."""


class StateBackend(Protocol):
    """Where counters and cached answers live (see the module docstring)."""

    shared: bool
    """Whether other processes see this state (Redis) or only this one (memory)."""

    async def run(self, ops: Sequence[Op]) -> list[Result]:
        """Run ``ops`` in order, in one round trip; one result per operation."""
        ...

    async def aclose(self) -> None:
        """Release connections; the backend is not used afterwards."""
        ...


def as_int(value: Result) -> int:
    """A counter as read by :class:`Get` (bytes of a decimal number) or :class:`Incr`; 0 when
    absent or unreadable."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    try:
        return int(value)
    except ValueError:
        return 0


CACHE_PREFIX = "cache:"
"""The prefix of every cached answer's key; the in-process backend keeps these apart."""

DEFAULT_COUNTER_ENTRIES = 50_000
"""Keys of the in-process counter store by default (``state.counters.max_entries``)."""

DEFAULT_CACHE_ENTRIES = 10_000
"""Entries of the in-process response cache by default (``state.cache.max_entries``)."""


class _Store:
    """One bounded LRU map of keys to values with expiry times (monotonic seconds)."""

    __slots__ = ("data", "max")

    def __init__(self, max_entries: int) -> None:
        self.max = max_entries
        self.data: OrderedDict[str, tuple[int | bytes, float]] = OrderedDict()

    def live(self, key: str, now: float) -> int | bytes | None:
        """The value of ``key`` unless absent or expired (an expired one is dropped)."""
        found = self.data.get(key)
        if found is None:
            return None
        if found[1] <= now:
            del self.data[key]
            return None
        self.data.move_to_end(key)
        return found[0]

    def put(self, key: str, value: int | bytes, expires: float) -> None:
        """Store ``value`` until ``expires``, dropping the least recently used past the bound."""
        data = self.data
        data[key] = (value, expires)
        data.move_to_end(key)
        while len(data) > self.max:
            data.popitem(last=False)


class MemoryBackend:
    """State kept in this process: two bounded LRU maps of keys with expiry times.

    Cached answers (keys starting with :data:`CACHE_PREFIX`) live in a store of at most
    ``cache_entries`` keys, everything else (rate-limit and budget counters, circuit
    records) in one of at most ``counter_entries``; past its bound a store drops its least
    recently used key (a counter so dropped starts again from 0, a cached answer is a miss).
    The stores are separate so that a flood of distinct cached requests can never evict a
    counter and so reset a limit. ``clock`` is the time source in seconds (monotonic),
    injectable for tests. Each call runs synchronously: nothing awaits, so a batch is atomic
    with respect to other requests of the process.
    """

    shared = False

    def __init__(
        self,
        counter_entries: int = DEFAULT_COUNTER_ENTRIES,
        cache_entries: int = DEFAULT_CACHE_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._counters = _Store(counter_entries)
        self._cache = _Store(cache_entries)
        self._clock = clock

    def __len__(self) -> int:
        return len(self._counters.data) + len(self._cache.data)

    def sizes(self) -> tuple[int, int]:
        """Keys held now: ``(counters, cached answers)``."""
        return len(self._counters.data), len(self._cache.data)

    def _store(self, key: str) -> _Store:
        return self._cache if key.startswith(CACHE_PREFIX) else self._counters

    async def run(self, ops: Sequence[Op]) -> list[Result]:
        """Run ``ops`` on the local maps (see :class:`StateBackend`)."""
        return self.run_now(ops)

    def run_now(self, ops: Sequence[Op]) -> list[Result]:
        """:meth:`run` without awaiting (the batch completes before returning)."""
        now = self._clock()
        out: list[Result] = []
        for op in ops:
            store = self._store(op.key)
            if isinstance(op, Get):
                value = store.live(op.key, now)
                out.append(str(value).encode() if isinstance(value, int) else value)
            elif isinstance(op, Incr):
                total = as_int(store.live(op.key, now)) + op.amount
                store.put(op.key, total, now + op.ttl_s)
                out.append(total)
            else:
                store.put(op.key, op.value, now + op.ttl_s)
                out.append(None)
        return out

    async def aclose(self) -> None:
        """Nothing to release."""
