"""Two real `relaygate serve` replicas sharing one real redis-server.

A gateway key's limit admits N requests in total across both replicas; an answer one
replica caches is served by the other; killing Redis mid-run fails no request, and both
replicas share state again once it is back.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from relaygate.security.keys import hash_key
from tests.e2e.helpers_e2e import CLIENT_TIMEOUT_S, MESSAGES, QUIET_LOGS, Mocks
from tests.redis_server import RedisServer, redis_server
from tests.servers import RunningServer, running_gateway

pytestmark = [pytest.mark.gateway_process, pytest.mark.redis]

MOCK_NAMES = ("alpha", "beta")
KEY = "rg-replica-test-key"
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def config(mocks: Mocks, redis: RedisServer, **key: Any) -> dict[str, Any]:
    """Both replicas' server config: one gateway key (with ``key`` settings), one cached
    target on the alpha upstream, state in ``redis``."""
    return {
        "auth": {"keys": [{"name": "team", "hash": hash_key(KEY), **key}]},
        "default_config": {
            "cache": {"mode": "simple", "max_age": 300},
            **mocks["alpha"].target(),
        },
        "state": {"redis": {"url": redis.url, "retry_interval_ms": 200}},
        "telemetry": QUIET_LOGS,
    }


@contextlib.contextmanager
def replicas(tmp_path: Path, server_config: dict[str, Any]) -> Iterator[list[RunningServer]]:
    with (
        running_gateway(tmp_path / "a", server_config) as one,
        running_gateway(tmp_path / "b", server_config) as two,
    ):
        yield [one, two]


def ask(server: RunningServer, content: str, client: httpx.Client) -> httpx.Response:
    return client.post(
        f"{server.url}{CHAT}",
        json={"model": "gpt-4o-mini", "messages": [{**MESSAGES[0], "content": content}]},
        headers={"authorization": f"Bearer {KEY}"},
    )


def metric(server: RunningServer, client: httpx.Client, name: str) -> float:
    """The sum of every series of ``name`` on ``server``'s ``/metrics`` (0 when none)."""
    text = client.get(f"{server.url}/metrics").text
    found = re.finditer(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.MULTILINE)
    return sum(float(each.group(1)) for each in found)


def circuit_gauge(server: RunningServer, client: httpx.Client, state: str) -> float:
    """``relaygate_circuit_state`` of the first target's circuit in ``state``, summed."""
    text = client.get(f"{server.url}/metrics").text
    total = 0.0
    for found in re.finditer(r"^relaygate_circuit_state\{([^}]*)\} (\S+)$", text, re.MULTILINE):
        labels = found.group(1)
        if 'target="config.targets[0]"' in labels and f'state="{state}"' in labels:
            total += float(found.group(2))
    return total


def away_from_a_minute_boundary() -> None:
    """Wait for the next minute when this one is nearly over, so a test's burst of
    requests falls in one counting window (where the count is exact)."""
    into = time.time() % 60
    if into > 50:
        time.sleep(60 - into + 0.2)


def test_a_key_limit_admits_n_in_total_across_two_replicas(
    tmp_path: Path, mocks: Mocks, redis: RedisServer
) -> None:
    limit = 6
    cfg = config(mocks, redis, limits={"requests_per_minute": limit})
    with replicas(tmp_path, cfg) as both, httpx.Client(timeout=CLIENT_TIMEOUT_S) as client:
        away_from_a_minute_boundary()
        answers = [ask(both[i % 2], f"limit {i}", client) for i in range(3 * limit)]
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == limit
    assert statuses.count(429) == 2 * limit
    assert all(int(a.headers["retry-after"]) >= 1 for a in answers if a.status_code == 429)
    assert mocks["alpha"].hits() == limit
    # Both replicas answered some of the admitted requests and refused some of the rest.
    admitted_by = {i % 2 for i, a in enumerate(answers) if a.status_code == 200}
    refused_by = {i % 2 for i, a in enumerate(answers) if a.status_code == 429}
    assert admitted_by == refused_by == {0, 1}


def test_an_answer_cached_by_one_replica_is_served_by_the_other(
    tmp_path: Path, mocks: Mocks, redis: RedisServer
) -> None:
    with (
        replicas(tmp_path, config(mocks, redis)) as (one, two),
        httpx.Client(timeout=CLIENT_TIMEOUT_S) as client,
    ):
        miss = ask(one, "cache me", client)
        store = redis.client()
        deadline = time.monotonic() + 10
        while not store.keys("relaygate:cache:*") and time.monotonic() < deadline:
            time.sleep(0.02)  # the store is written just after the answer
        hit = ask(two, "cache me", client)
    assert miss.headers["x-portkey-cache-status"] == "MISS"
    assert hit.headers["x-portkey-cache-status"] == "HIT"
    assert hit.headers["x-relaygate-route"] == "cache:hit"
    assert hit.json()["choices"] == miss.json()["choices"]
    assert mocks["alpha"].hits() == 1


def test_killing_redis_fails_no_request_and_both_replicas_recover(
    tmp_path: Path, mocks: Mocks, redis: RedisServer
) -> None:
    cfg = config(mocks, redis, limits={"requests_per_minute": 100_000})
    statuses: list[int] = []
    stop = threading.Event()

    def load(server: RunningServer, tag: str) -> None:
        with httpx.Client(timeout=CLIENT_TIMEOUT_S) as client:
            i = 0
            while not stop.is_set():
                statuses.append(ask(server, f"{tag} {i}", client).status_code)
                i += 1

    with replicas(tmp_path, cfg) as both, httpx.Client(timeout=CLIENT_TIMEOUT_S) as client:
        threads = [threading.Thread(target=load, args=(s, str(n))) for n, s in enumerate(both)]
        for thread in threads:
            thread.start()
        try:
            wait_for(lambda: len(statuses) >= 20)
            redis.kill()
            wait_for(
                lambda: all(metric(s, client, "relaygate_state_backend_up") == 0 for s in both)
            )
            during = len(statuses)
            wait_for(lambda: len(statuses) >= during + 20)
            redis.start()
            wait_for(
                lambda: all(metric(s, client, "relaygate_state_backend_up") == 1 for s in both)
            )
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
        errors = [metric(s, client, "relaygate_state_backend_errors_total") for s in both]
        # Shared again: a cached answer written now by one is served by the other.
        ask(both[0], "after the outage", client)
        wait_for(lambda: bool(redis.client().keys("relaygate:cache:*")))
        again = ask(both[1], "after the outage", client)
    assert statuses and set(statuses) == {200}
    assert all(count >= 1 for count in errors)
    assert again.headers["x-portkey-cache-status"] == "HIT"


def wait_for(condition: Any, timeout_s: float = 30.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time", pytrace=True)
        time.sleep(0.05)


def test_one_replicas_failures_open_the_circuit_seen_by_the_other(
    tmp_path: Path, mocks: Mocks, redis: RedisServer
) -> None:
    cfg = config(mocks, redis)
    cfg["default_config"] = {
        "strategy": {"mode": "fallback"},
        "cb_config": {"failure_threshold": 2, "cooldown_interval": 60_000},
        "targets": [mocks["alpha"].target(), mocks["beta"].target()],
    }
    cfg["state"]["redis"]["circuit_sync_ms"] = 100
    with replicas(tmp_path, cfg) as (one, two), httpx.Client(timeout=CLIENT_TIMEOUT_S) as client:
        # Both replicas have called the first target (replicas behind one load balancer do).
        assert ask(one, "warm one", client).headers["x-relaygate-route"] == "config.targets[0]:200"
        assert ask(two, "warm two", client).headers["x-relaygate-route"] == "config.targets[0]:200"
        mocks["alpha"].script("500,500")
        failed = [ask(one, f"fail {i}", client) for i in range(2)]
        # The second replica's gauge shows the circuit open as soon as it adopts it, before
        # it is asked anything more.
        served_before = metric(two, client, "relaygate_requests_total")
        wait_for(lambda: circuit_gauge(two, client, "open") == 1)
        assert circuit_gauge(two, client, "closed") == 0
        assert metric(two, client, "relaygate_requests_total") == served_before
        # Within a sync interval the second replica skips the target it never saw fail.
        skipped: list[tuple[int, int, httpx.Response]] = []

        def skips() -> bool:
            before = mocks["alpha"].hits()
            answer = ask(two, f"probe {len(skipped)}", client)
            skipped.append((before, mocks["alpha"].hits(), answer))
            return answer.headers["x-relaygate-route"].startswith("config.targets[0]:open>")

        wait_for(skips)
        before, after, last = skipped[-1]
    assert [f.headers["x-relaygate-route"] for f in failed] == [
        "config.targets[0]:500>config.targets[1]:200"
    ] * 2
    assert last.status_code == 200
    assert last.headers["x-relaygate-route"] == ("config.targets[0]:open>config.targets[1]:200")
    assert after == before  # the second replica did not call the target
