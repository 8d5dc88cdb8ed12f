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

__all__ = ["Get", "Incr", "MemoryBackend", "Op", "Result", "Set", "StateBackend"]


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


class MemoryBackend:
    """State kept in this process: a bounded LRU map of keys with expiry times.

    At most ``max_entries`` keys are kept; past that the least recently used is dropped
    (a counter so dropped starts again from 0, a cached answer is a miss). ``clock`` is the
    time source in seconds (monotonic), injectable for tests. Each call runs synchronously:
    nothing awaits, so a batch is atomic with respect to other requests of the process.
    """

    shared = False

    def __init__(
        self, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max = max_entries
        self._clock = clock
        self._data: OrderedDict[str, tuple[int | bytes, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    async def run(self, ops: Sequence[Op]) -> list[Result]:
        """Run ``ops`` on the local map (see :class:`StateBackend`)."""
        return self.run_now(ops)

    def run_now(self, ops: Sequence[Op]) -> list[Result]:
        """:meth:`run` without awaiting (the batch completes before returning)."""
        now = self._clock()
        data = self._data
        out: list[Result] = []
        for op in ops:
            if isinstance(op, Get):
                found = data.get(op.key)
                if found is None or found[1] <= now:
                    if found is not None:
                        del data[op.key]
                    out.append(None)
                    continue
                data.move_to_end(op.key)
                value = found[0]
                out.append(str(value).encode() if isinstance(value, int) else value)
            elif isinstance(op, Incr):
                found = data.get(op.key)
                current = 0
                if found is not None and found[1] > now:
                    current = as_int(found[0])
                total = current + op.amount
                self._put(op.key, total, now + op.ttl_s)
                out.append(total)
            else:
                self._put(op.key, op.value, now + op.ttl_s)
                out.append(None)
        return out

    def _put(self, key: str, value: int | bytes, expires: float) -> None:
        data = self._data
        data[key] = (value, expires)
        data.move_to_end(key)
        while len(data) > self._max:
            data.popitem(last=False)

    async def aclose(self) -> None:
        """Nothing to release."""
