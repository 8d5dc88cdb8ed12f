"""A 2-worker ``relaygate serve`` answers every ``/metrics`` scrape for the whole instance.

Several clients send requests at once over fresh connections, so both worker processes
serve some; then every scrape, whichever worker accepts it, reports exactly the number of
requests the clients saw answered, and no counter goes back between scrapes, not even when
a worker is killed and uvicorn starts another in its place.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from relaygate.exporters import semconv as sc
from relaygate.exporters.workers import read_snapshots
from tests.servers import RunningServer, running_gateway, serve_in_thread

pytestmark = pytest.mark.gateway_process

CLIENTS = 8
BATCH = 120
TIMEOUT_S = 30.0
REQUESTS = sc.M_REQUESTS + "_total"


async def upstream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An OpenAI-compatible chat upstream that takes a moment to answer (so requests overlap
    and spread over the workers)."""
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await asyncio.sleep(0.02)
    body = orjson.dumps(
        {
            "id": "c1",
            "object": "chat.completion",
            "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }
    )
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary directory with a short path, the gateway's ``TMPDIR`` (where the workers'
    shared metrics directory is made, so the test can see it)."""
    path = Path(tempfile.mkdtemp(prefix="rg-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def gateway(tmp_path: Path, short_tmp: Path) -> Iterator[RunningServer]:
    with serve_in_thread(upstream) as up:
        config = {
            "default_config": {
                "provider": "openai",
                "api_key": "sk-test",
                "custom_host": f"{up.url}/v1",
            },
            "telemetry": {"logs": {"level": "warning", "format": "json"}},
        }
        with running_gateway(tmp_path, config, {"TMPDIR": str(short_tmp)}, workers=2) as gw:
            yield gw


def send(gw: RunningServer, n: int) -> None:
    """``n`` chat requests from :data:`CLIENTS` concurrent clients, each on a fresh
    connection; every one must be answered 200."""

    def one(_: int) -> int:
        response = httpx.post(
            f"{gw.url}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            timeout=TIMEOUT_S,
        )
        return response.status_code

    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = list(pool.map(one, range(n)))
    assert statuses == [200] * n


def scrape(gw: RunningServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One ``/metrics`` scrape on a fresh connection: sample name and labels -> value."""
    response = httpx.get(f"{gw.url}/metrics", timeout=TIMEOUT_S)
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def requests_total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return sum(v for (name, _), v in samples.items() if name == REQUESTS)


def cumulative(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[Any, float]:
    """The samples that must never decrease: counters, histogram buckets and counts."""
    return {
        key: value
        for key, value in samples.items()
        if key[0].endswith(("_total", "_bucket", "_count"))
    }


def served_by_worker(directory: Path) -> dict[str, float]:
    """Requests each live worker has counted, from the snapshots they wrote last."""
    return {
        worker: sum(row[1] for row in snap["counter"].get(sc.M_REQUESTS, []))
        for worker, snap in read_snapshots(directory).items()
    }


def wait_for_workers(directory: Path, n: int) -> set[str]:
    """The ids of the ``n`` workers that have started (each writes a snapshot first thing);
    the gateway answers its health check as soon as one has."""
    deadline = time.monotonic() + TIMEOUT_S
    while len(live := set(read_snapshots(directory))) != n:
        if time.monotonic() > deadline:
            pytest.fail(f"{n} workers did not start: {live}")
        time.sleep(0.05)
    return live


def check_scrapes(gw: RunningServer, sent: int, previous: dict[Any, float], times: int) -> None:
    """``times`` scrapes each report ``sent`` requests, and no cumulative sample decreases
    (from ``previous`` on, which is updated)."""
    for _ in range(times):
        samples = scrape(gw)
        assert requests_total(samples) == sent
        assert samples[(sc.M_IN_FLIGHT, ())] == 0
        now = cumulative(samples)
        went_back = {k: (v, now.get(k)) for k, v in previous.items() if now.get(k, -1.0) < v}
        assert not went_back, f"samples decreased between scrapes: {went_back}"
        previous.update(now)


def test_every_scrape_of_a_two_worker_gateway_counts_every_request_exactly(
    gateway: RunningServer, short_tmp: Path
) -> None:
    [directory] = short_tmp.glob("relaygate-metrics-*")
    wait_for_workers(directory, 2)
    sent = 0
    for _ in range(5):  # until the kernel has handed connections to both workers
        send(gateway, BATCH)
        sent += BATCH
        scrape(gateway)  # has every worker write its snapshot
        if sum(1 for n in served_by_worker(directory).values() if n > 0) == 2:
            break
    counts = served_by_worker(directory)
    assert len(counts) == 2 and all(counts.values()), f"one worker served all: {counts}"
    assert sum(counts.values()) == sent

    previous: dict[Any, float] = {}
    check_scrapes(gateway, sent, previous, times=12)

    # A worker dies (its last snapshot is current: the scrapes above asked for it); uvicorn
    # starts another; the instance's counters keep everything the dead one counted.
    victim = next(iter(counts))
    os.kill(int(victim.split("-")[0]), signal.SIGKILL)
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        live = set(read_snapshots(directory))
        if victim not in live and len(live) == 2:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"no replacement worker: {live}\n{gateway.output()[-2000:]}")
        scrape(gateway)  # a scrape finds the dead worker and retires it
        time.sleep(0.1)
    check_scrapes(gateway, sent, previous, times=8)

    send(gateway, BATCH)
    sent += BATCH
    check_scrapes(gateway, sent, previous, times=8)


def test_the_shared_metrics_directory_is_removed_when_the_gateway_stops(
    tmp_path: Path, short_tmp: Path
) -> None:
    config = {"telemetry": {"logs": {"level": "warning"}}}
    with running_gateway(tmp_path, config, {"TMPDIR": str(short_tmp)}, workers=2) as gw:
        [directory] = short_tmp.glob("relaygate-metrics-*")
        assert requests_total(scrape(gw)) == 0
        wait_for_workers(directory, 2)
    assert not directory.exists()
