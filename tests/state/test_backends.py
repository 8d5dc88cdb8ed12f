"""The in-process backend (expiry, LRU bound) and Redis-with-a-local-fallback, on fakes."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from structlog.testing import capture_logs

from relaygate.state.backend import Get, Incr, MemoryBackend, Op, Result, Set
from relaygate.state.shared import SharedState
from relaygate.telemetry import Telemetry


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_counters_count_and_expire_with_their_ttl() -> None:
    clock = Clock()
    memory = MemoryBackend(clock=clock)
    assert await memory.run([Incr("a", 1, 60), Incr("a", 2, 60), Get("a")]) == [1, 3, b"3"]
    clock.now += 59.9
    assert await memory.run([Get("a")]) == [b"3"]
    clock.now += 0.2
    assert await memory.run([Get("a"), Incr("a", 1, 60)]) == [None, 1]


async def test_values_expire_and_the_least_recently_used_key_goes_first() -> None:
    clock = Clock()
    memory = MemoryBackend(cache_entries=2, clock=clock)
    await memory.run([Set("cache:x", b"1", 10), Set("cache:y", b"2", 10)])
    assert await memory.run([Get("cache:x")]) == [b"1"]  # x is now the most recently used
    await memory.run([Set("cache:z", b"3", 10)])
    assert await memory.run([Get("cache:x"), Get("cache:y"), Get("cache:z")]) == [
        b"1",
        None,
        b"3",
    ]
    assert memory.sizes() == (0, 2)
    clock.now += 10
    assert await memory.run([Get("cache:x")]) == [None]


async def test_counters_have_their_own_bound() -> None:
    memory = MemoryBackend(counter_entries=2)
    await memory.run([Incr("rl:a", 1, 60), Incr("rl:b", 1, 60), Incr("rl:c", 1, 60)])
    assert await memory.run([Get("rl:a"), Get("rl:b"), Get("rl:c")]) == [None, b"1", b"1"]
    assert memory.sizes() == (2, 0)


async def test_filling_the_cache_never_evicts_a_counter() -> None:
    memory = MemoryBackend(counter_entries=2, cache_entries=3)
    await memory.run([Incr("rl:key", 5, 60), Set("cb:circuit", b"open", 60)])
    for n in range(1000):
        await memory.run([Get(f"cache:{n}"), Set(f"cache:{n}", b"answer", 60)])
    assert await memory.run([Get("rl:key"), Get("cb:circuit")]) == [b"5", b"open"]
    assert memory.sizes() == (2, 3)


class FlakyRemote:
    """A remote backend that fails while ``down``, else answers from its own memory."""

    shared = True

    def __init__(self) -> None:
        self.down = False
        self.calls = 0
        self.store = MemoryBackend()

    async def run(self, ops: Sequence[Op]) -> list[Result]:
        self.calls += 1
        if self.down:
            raise ConnectionError("connection refused")
        return await self.store.run(ops)

    async def aclose(self) -> None:
        return None


def _metric(tel: Telemetry, name: str) -> float:
    return tel.metrics.registry.get_sample_value(name) or 0.0


async def test_a_down_remote_is_answered_locally_counted_logged_once_and_retried_later(
    telemetry: Telemetry,
) -> None:
    clock = Clock()
    remote = FlakyRemote()
    state = SharedState(
        remote, MemoryBackend(clock=clock), telemetry, retry_interval_s=1.0, clock=clock
    )
    assert await state.run([Incr("n", 1, 60)]) == [1]
    assert _metric(telemetry, "relaygate_state_backend_up") == 1

    remote.down = True
    with capture_logs() as logs:
        # Each request is still answered, from local state (a fresh count).
        assert await state.run([Incr("n", 1, 60)]) == [1]
        assert await state.run([Incr("n", 1, 60)]) == [2]
        clock.now += 0.5
        assert await state.run([Incr("n", 1, 60)]) == [3]
    # One failed round trip per retry interval, not one per request.
    assert remote.calls == 2
    assert _metric(telemetry, "relaygate_state_backend_errors_total") == 1
    assert _metric(telemetry, "relaygate_state_backend_up") == 0
    assert [line["event"] for line in logs] == ["state_backend_down"]
    assert "connection refused" not in str(logs)

    clock.now += 1.0
    with capture_logs() as logs:
        assert await state.run([Incr("n", 1, 60)]) == [4]  # tried again, still down
    assert logs == []  # logged once per log interval
    assert _metric(telemetry, "relaygate_state_backend_errors_total") == 2

    remote.down = False
    clock.now += 1.0
    with capture_logs() as logs:
        # Back to the shared counter, which kept its value.
        assert await state.run([Incr("n", 1, 60)]) == [2]
    assert [line["event"] for line in logs] == ["state_backend_recovered"]
    assert _metric(telemetry, "relaygate_state_backend_up") == 1


async def test_a_flapping_remote_logs_once_per_interval(telemetry: Telemetry) -> None:
    clock = Clock()
    remote = FlakyRemote()
    state = SharedState(
        remote,
        MemoryBackend(clock=clock),
        telemetry,
        retry_interval_s=0.1,
        log_interval_s=30.0,
        clock=clock,
    )
    with capture_logs() as logs:
        for _ in range(20):  # down for one round trip, then up again, twenty times
            remote.down = True
            await state.run([Incr("n", 1, 60)])
            remote.down = False
            clock.now += 0.2
            await state.run([Incr("n", 1, 60)])
    assert [line["event"] for line in logs] == ["state_backend_down", "state_backend_recovered"]
    assert _metric(telemetry, "relaygate_state_backend_errors_total") == 20
    assert _metric(telemetry, "relaygate_state_backend_up") == 1
    clock.now += 30
    remote.down = True
    with capture_logs() as logs:
        await state.run([Incr("n", 1, 60)])
    assert [line["event"] for line in logs] == ["state_backend_down"]  # a new interval


@pytest.mark.parametrize("error", [TimeoutError("slow"), OSError("reset"), RuntimeError("x")])
async def test_any_remote_error_falls_back(telemetry: Telemetry, error: Exception) -> None:
    class Broken(FlakyRemote):
        async def run(self, ops: Sequence[Op]) -> list[Result]:
            raise error

    state = SharedState(Broken(), MemoryBackend(), telemetry)
    assert await state.run([Set("k", b"v", 5), Get("k")]) == [None, b"v"]
    assert _metric(telemetry, "relaygate_state_backend_errors_total") == 1
    assert _metric(telemetry, "relaygate_state_backend_up") == 0
