"""What a request costs in Redis, counted against a real ``redis-server``: an ordinary
request (Redis configured, but its key has no limits and its config no cache) sends Redis
nothing; a request whose key has limits and whose config has a cache takes one pipelined
round trip before it is routed (the key's counters and the cache lookup together), and a
cache hit nothing more.

Round trips are counted twice: by the gateway's Redis client (pipelines sent) and by Redis
itself (``INFO commandstats``: the commands it executed, the test's own look-ups aside).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from relaygate.state.redis import RedisBackend
from relaygate.telemetry import Telemetry
from tests.fakes import RecordingTransport, chat_payload
from tests.inprocess import asgi_client, gateway_app
from tests.redis_server import RedisServer, redis_server
from tests.state.test_limits_and_cache import ALICE, BOB, drained, post, server

pytestmark = pytest.mark.redis

NOT_STATE = frozenset({"info", "client", "hello", "ping", "select", "config", "command"})
"""Commands that are connection handshakes or the test's own look-ups, not state."""


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as started:
        yield started


def state_commands(redis: RedisServer) -> int:
    """Commands Redis has executed on state so far (its own count)."""
    client = redis.client()
    try:
        stats: dict[str, Any] = client.info("commandstats")
    finally:
        client.close()
    return sum(
        int(stat["calls"])
        for name, stat in stats.items()
        if name.removeprefix("cmdstat_") not in NOT_STATE
    )


def with_redis(config: dict[str, Any], redis: RedisServer, prefix: str) -> dict[str, Any]:
    """``config`` with its state in ``redis`` (circuit sync far apart: this counts requests)."""
    settings = {"url": redis.url, "prefix": prefix, "circuit_sync_ms": 3_600_000}
    return {**config, "state": {"redis": settings}}


def remote(app: Starlette) -> RedisBackend:
    """The gateway's Redis client."""
    backend = app.state.gateway.state.remote
    assert isinstance(backend, RedisBackend)
    return backend


async def test_an_ordinary_request_sends_redis_nothing(
    redis: RedisServer, telemetry: Telemetry
) -> None:
    app = gateway_app(with_redis(server(), redis, "plain:"), telemetry, RecordingTransport())
    before = state_commands(redis)
    async with asgi_client(app) as client:
        answers = [await post(client, BOB) for _ in range(5)]
        streamed = await post(client, BOB, {**_body(), "stream": True})
        await drained(app)
    assert [a.status_code for a in answers] == [200] * 5 and streamed.status_code == 200
    assert remote(app).round_trips == 0
    assert state_commands(redis) == before


async def test_limits_and_cache_take_one_round_trip_before_routing(
    redis: RedisServer, telemetry: Telemetry
) -> None:
    seen: list[tuple[int, int]] = []

    def answer(_: httpx.Request) -> httpx.Response:
        # Where the request leaves for the upstream: what it has cost Redis until now.
        seen.append((remote(app).round_trips, state_commands(redis)))
        return httpx.Response(200, json=chat_payload())

    limits = {"requests_per_minute": 100, "tokens_per_minute": 100_000}
    config = with_redis(server(limits=limits, cache=True), redis, "limited:")
    app = gateway_app(config, telemetry, RecordingTransport(answer))
    before = state_commands(redis)
    async with asgi_client(app) as client:
        miss = await post(client, ALICE)
        await drained(app)  # the answer stored and the tokens counted, after it
        after_miss = (remote(app).round_trips, state_commands(redis))
        hit = await post(client, ALICE)
        after_hit = (remote(app).round_trips, state_commands(redis))
        await drained(app)
    assert miss.headers["x-portkey-cache-status"] == "MISS"
    assert hit.headers["x-portkey-cache-status"] == "HIT"
    assert len(seen) == 1, "the hit never reached the upstream"
    [(trips_before_routing, commands_before_routing)] = seen
    # The miss: counters and cache lookup in one pipeline, several commands in it.
    assert trips_before_routing == 1
    assert commands_before_routing - before >= 3
    # The hit: one more round trip, answered from it, nothing written after.
    assert after_hit[0] - after_miss[0] == 1
    assert after_hit[1] > after_miss[1]
    assert remote(app).round_trips == after_hit[0]


def _body() -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
