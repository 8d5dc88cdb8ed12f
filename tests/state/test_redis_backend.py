"""The Redis backend against a real ``redis-server``: concurrent batches share pipelines and
each gets its own results; a failed pipeline fails every batch waiting on it at once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from relaygate.state.backend import Get, Incr, MemoryBackend, Set
from relaygate.state.redis import RedisBackend
from relaygate.state.shared import SharedState
from relaygate.telemetry import Telemetry
from tests.redis_server import RedisServer, redis_server
from tests.servers import free_port

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


async def test_a_burst_of_concurrent_batches_is_served_in_few_round_trips(
    redis: RedisServer,
) -> None:
    # Five times redis-py's default pool of 100 connections, all at once: a pipeline (and a
    # connection) per request would run out of connections.
    backend = RedisBackend(redis.url, prefix="burst:", timeout_s=5)
    try:
        results = await asyncio.gather(
            *(
                backend.run([Incr("n", 1, 60), Set(f"v{i}", b"%d" % i, 60), Get(f"v{i}")])
                for i in range(500)
            )
        )
        again = await backend.run([Get("n"), Get("v7")])
    finally:
        await backend.aclose()
    # Each batch got its own results, in order; the counter saw every increment once.
    assert sorted(r[0] for r in results) == list(range(1, 501))
    assert all(r[1:] == [None, b"%d" % i] for i, r in enumerate(results))
    assert again == [b"500", b"7"]
    assert backend.round_trips < 50
    assert redis.client().ttl("burst:n") > 0


async def test_a_failed_pipeline_fails_every_waiting_batch() -> None:
    backend = RedisBackend(f"redis://127.0.0.1:{free_port()}/0", timeout_s=2)
    try:
        outcomes = await asyncio.gather(
            *(backend.run([Incr("n", 1, 60)]) for _ in range(50)), return_exceptions=True
        )
    finally:
        await backend.aclose()
    assert len(outcomes) == 50
    assert all(isinstance(o, RedisConnectionError) for o in outcomes), outcomes[:3]
    assert backend.round_trips < 50


async def test_requests_that_shared_a_failed_round_trip_count_one_failure(
    telemetry: Telemetry,
) -> None:
    remote = RedisBackend(f"redis://127.0.0.1:{free_port()}/0", timeout_s=2)
    state = SharedState(remote, MemoryBackend(), telemetry, retry_interval_s=60)
    try:
        answers = await asyncio.gather(*(state.run([Incr("n", 1, 60)]) for _ in range(20)))
    finally:
        await state.aclose()
    # Every request answered from local state, one count each; one failure recorded.
    assert sorted(a[0] for a in answers) == list(range(1, 21))
    errors = telemetry.metrics.registry.get_sample_value("relaygate_state_backend_errors_total")
    assert errors == remote.round_trips == 1
