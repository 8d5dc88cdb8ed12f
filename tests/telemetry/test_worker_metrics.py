"""Several worker processes answer ``/metrics`` as one: snapshots, their merge, and the
shared-directory protocol (workers asked at scrape, ended workers retired, late ones read
from their last snapshot).

The protocol tests run several :class:`WorkerMetrics` in one event loop, each with its own
``GatewayMetrics`` and registry, as separate processes would; the real 2-worker
``relaygate serve`` is tested in ``tests/e2e/test_workers_metrics_e2e.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import prometheus_client
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics import exposition as openmetrics

from relaygate.exporters import semconv as sc
from relaygate.exporters import snapshot
from relaygate.exporters.prometheus import FamilyCollector, GatewayMetrics
from relaygate.exporters.workers import (
    WorkerMetrics,
    check_directory,
    read_snapshots,
    snapshot_path,
    socket_path,
)
from relaygate.telemetry import Telemetry
from tests.telemetry.test_metric_series import NOW, record

REQUESTS = sc.M_REQUESTS + "_total"
CHAT_2XX = {"config": "default", "operation": "chat", "status_class": "2xx", "outcome": "ok"}


def exported(families: Any) -> CollectorRegistry:
    """A registry exporting ``families``."""
    registry = CollectorRegistry()
    registry.register(FamilyCollector(families))
    return registry


def roundtrip(snap: snapshot.Snapshot) -> snapshot.Snapshot:
    """``snap`` as written to and read from a file."""
    loaded: snapshot.Snapshot = orjson.loads(orjson.dumps(snap))
    return loaded


# -- snapshots and their merge ------------------------------------------------------------------


def test_one_snapshot_merged_alone_exports_exactly_what_its_families_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every sample survives the file: values, +Inf and NaN sums, ``_created``, exemplars."""
    monkeypatch.setattr(time, "time", lambda: NOW)
    metrics = GatewayMetrics(CollectorRegistry())
    record(metrics)
    defs = metrics.collector.families
    merged = snapshot.families(defs, snapshot.combine([roundtrip(snapshot.take(defs))]))
    for encode in (prometheus_client.generate_latest, openmetrics.generate_latest):
        assert encode(exported(merged)) == encode(metrics.registry)


def _masked(text: bytes) -> list[str]:
    """Exposition lines with ``_created`` values and exemplar timestamps masked."""
    lines = []
    for line in text.decode().splitlines():
        if re.split(r"[{ ]", line, maxsplit=1)[0].endswith("_created"):
            line = line.rsplit(" ", 1)[0]
        lines.append(re.sub(r"(# \{[^}]*\} \S+) \S+$", r"\1", line))
    return lines


def test_recordings_split_over_workers_merge_to_what_one_process_would_hold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Counters, buckets, sums and the gauge add up; the newest exemplar wins per bucket;
    ``_created`` is the earliest."""
    ticks = itertools.count(NOW)
    monkeypatch.setattr(time, "time", lambda: float(next(ticks)))
    workers = [GatewayMetrics(CollectorRegistry()) for _ in range(3)]
    single = GatewayMetrics(CollectorRegistry())
    rng = random.Random(3)
    configs, targets = ("default", "named"), ("primary", "backup")
    for i in range(600):
        config, target = rng.choice(configs), rng.choice(targets)
        status, outcome = rng.choice((("2xx", "ok"), ("2xx", "stream_error"), ("5xx", "timeout")))
        trace = {"trace_id": f"{i:032x}"} if rng.random() < 0.3 else None
        value = rng.randint(0, 1 << 17) / 1024  # sums exact in any order of addition
        for m in (rng.choice(workers), single):
            m.requests.labels(config, "chat", status, outcome).inc(1, trace)
            m.request_duration.labels(config, "chat").observe(value, trace)
            m.upstream_duration.labels(config, target, "openai", "other").observe(value)
            m.in_flight.inc()
    merged = snapshot.families(
        single.collector.families,
        snapshot.combine(roundtrip(snapshot.take(m.collector.families)) for m in workers),
    )
    for encode in (prometheus_client.generate_latest, openmetrics.generate_latest):
        assert _masked(encode(exported(merged))) == _masked(encode(single.registry))
    first = min(
        w.registry.get_sample_value(sc.M_REQUESTS + "_created", CHAT_2XX) or float("inf")
        for w in workers
    )
    assert exported(merged).get_sample_value(sc.M_REQUESTS + "_created", CHAT_2XX) == first
    assert exported(merged).get_sample_value(sc.M_IN_FLIGHT) == 600


def test_a_retired_snapshot_keeps_its_counters_and_drops_its_gauge() -> None:
    metrics = GatewayMetrics(CollectorRegistry())
    metrics.requests.labels("default", "chat", "2xx", "ok").inc(7)
    metrics.in_flight.set(3)
    kept = snapshot.without_gauges(snapshot.take(metrics.collector.families))
    merged = exported(snapshot.families(metrics.collector.families, snapshot.combine([kept])))
    assert merged.get_sample_value(REQUESTS, CHAT_2XX) == 7
    assert merged.get_sample_value(sc.M_IN_FLIGHT) == 0


def test_circuit_states_sum_over_workers_and_leave_with_a_retired_one() -> None:
    """``relaygate_circuit_state`` counts the workers in each state; an ended worker's
    reading leaves the sum, as the in-flight gauge's does."""
    labels = ("default", "primary", "openai", "gpt-4o")
    workers = [GatewayMetrics(CollectorRegistry()) for _ in range(3)]
    for m, state in zip(workers, ("open", "open", "closed"), strict=True):
        for each in ("closed", "half_open", "open"):
            m.circuit_state.labels(*labels, each).set(1.0 if each == state else 0.0)
    defs = workers[0].collector.families
    snaps = [roundtrip(snapshot.take(m.collector.families)) for m in workers]
    merged = exported(snapshot.families(defs, snapshot.combine(snaps)))
    names = dict(zip(("config", "target", "provider", "model"), labels, strict=True))
    assert merged.get_sample_value(sc.M_CIRCUIT_STATE, {**names, "state": "open"}) == 2
    assert merged.get_sample_value(sc.M_CIRCUIT_STATE, {**names, "state": "closed"}) == 1
    retired = [*snaps[:2], snapshot.without_gauges(snaps[2])]
    merged = exported(snapshot.families(defs, snapshot.combine(retired)))
    assert merged.get_sample_value(sc.M_CIRCUIT_STATE, {**names, "state": "closed"}) == 0


# -- the shared directory ------------------------------------------------------------------------


@pytest.fixture
def shared() -> Iterator[Path]:
    """A fresh shared directory with a short path (Unix socket paths are short)."""
    path = Path(tempfile.mkdtemp(prefix="rg-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Events:
    """A logger that keeps the events it is given."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        def log(event: str, **fields: Any) -> None:
            self.events.append((event, fields))

        return log


def worker(directory: Path, **kw: Any) -> WorkerMetrics:
    """A worker's metrics in ``directory``: its own registry, families and telemetry."""
    tel = Telemetry(metrics=GatewayMetrics(CollectorRegistry()), logger=Events())
    return WorkerMetrics(directory, tel, interval_s=kw.pop("interval_s", 3600), **kw)


@pytest.fixture
async def pair(shared: Path) -> AsyncIterator[tuple[WorkerMetrics, WorkerMetrics]]:
    """Two started workers sharing ``shared``; their periodic snapshots never come."""
    a, b = worker(shared), worker(shared)
    await a.start()
    await b.start()
    yield a, b
    await a.aclose()
    await b.aclose()


def metrics_of(w: WorkerMetrics) -> GatewayMetrics:
    return w._tel.metrics


def served(w: WorkerMetrics, n: int) -> None:
    """``w`` answers ``n`` chat requests."""
    metrics_of(w).requests.labels("default", "chat", "2xx", "ok").inc(n)


async def scrape(w: WorkerMetrics) -> CollectorRegistry:
    """What ``/metrics`` on ``w``'s worker reads: the others asked first, then its registry
    (each read of the registry merges anew)."""
    await w.refresh()
    return metrics_of(w).registry


def total(registry: CollectorRegistry) -> float:
    return registry.get_sample_value(REQUESTS, CHAT_2XX) or 0.0


async def test_a_scrape_answers_for_every_worker_with_what_each_recorded_until_now(
    pair: tuple[WorkerMetrics, WorkerMetrics],
) -> None:
    a, b = pair
    served(a, 3)
    served(b, 5)
    assert total(await scrape(a)) == 8
    assert total(await scrape(b)) == 8
    served(b, 4)  # after b's last snapshot: a scrape on a must ask b for it
    assert total(await scrape(a)) == 12


async def test_the_in_flight_gauge_is_the_sum_over_live_workers(
    pair: tuple[WorkerMetrics, WorkerMetrics],
) -> None:
    a, b = pair
    metrics_of(a).in_flight.inc(2)
    metrics_of(b).in_flight.inc(3)
    assert (await scrape(a)).get_sample_value(sc.M_IN_FLIGHT) == 5


async def test_an_ended_worker_keeps_its_counters_loses_its_gauge_and_its_files(
    shared: Path, pair: tuple[WorkerMetrics, WorkerMetrics]
) -> None:
    a, b = pair
    served(a, 2)
    served(b, 7)
    metrics_of(b).in_flight.inc(4)
    assert total(await scrape(a)) == 9
    # b dies without a word: its socket stops listening, its last snapshot stays behind.
    assert b._server is not None
    b._server.close()
    await b._server.wait_closed()
    served(b, 100)  # recorded after its last snapshot: lost with the process
    for _ in range(3):
        after = await scrape(a)
        assert total(after) == 9
        assert after.get_sample_value(sc.M_IN_FLIGHT) == 0
    assert not snapshot_path(shared, b.id).exists()
    assert not socket_path(shared, b.id).exists()
    # A worker that starts later counts the ended one's history too.
    c = worker(shared)
    await c.start()
    served(c, 1)
    assert total(await scrape(c)) == 10
    # Even were its process to write again, a retired worker is never counted twice.
    await b.aclose()
    assert total(await scrape(c)) == 10
    await a.aclose()
    await c.aclose()


async def test_a_worker_that_shuts_down_hands_its_final_values_over(
    shared: Path, pair: tuple[WorkerMetrics, WorkerMetrics]
) -> None:
    a, b = pair
    served(a, 1)
    served(b, 2)
    metrics_of(b).in_flight.inc(1)
    served(b, 3)  # after its last snapshot, before shutdown: the final snapshot carries it
    await b.aclose()
    after = await scrape(a)
    assert total(after) == 6
    assert after.get_sample_value(sc.M_IN_FLIGHT) == 0
    assert set(read_snapshots(shared)) == {a.id}
    await a.aclose()


async def test_a_worker_that_does_not_answer_counts_with_its_last_snapshot(
    shared: Path,
) -> None:
    a = worker(shared, flush_timeout_s=0.2)
    await a.start()
    served(a, 1)
    # A worker whose event loop is stuck: its socket accepts, nobody answers.
    stuck = GatewayMetrics(CollectorRegistry())
    stuck.requests.labels("default", "chat", "2xx", "ok").inc(5)
    snapshot_path(shared, "stuck").write_bytes(
        orjson.dumps(snapshot.take(stuck.collector.families))
    )
    hold = asyncio.Event()

    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await hold.wait()
        writer.close()

    server = await asyncio.start_unix_server(never, path=str(socket_path(shared, "stuck")))
    assert total(await scrape(a)) == 6
    assert snapshot_path(shared, "stuck").exists()  # late is not ended
    events = a._tel.logger.events
    assert ("metrics_worker_late", {"worker": "stuck"}) in events
    hold.set()
    server.close()
    await server.wait_closed()
    await a.aclose()


async def test_counters_never_decrease_across_scrapes_of_any_worker_while_workers_come_and_go(
    shared: Path,
) -> None:
    """Scrapes alternate between workers while workers record, end and start."""
    rng = random.Random(11)
    live = [worker(shared) for _ in range(3)]
    for w in live:
        await w.start()
    sent = 0
    last = 0.0
    ended: list[WorkerMetrics] = []
    for step in range(40):
        for w in live:
            n = rng.randint(0, 3)
            served(w, n)
            sent += n
        if step % 7 == 3:  # one ends without a word; what it recorded since then is lost
            gone = live.pop(rng.randrange(len(live)))
            ended.append(gone)
            unsnapshotted = total(await scrape(live[0]))
            assert gone._server is not None
            gone._server.close()
            await gone._server.wait_closed()
            served(gone, rng.randint(1, 3))  # never counted: not in ``sent``
            assert total(await scrape(live[0])) == unsnapshotted
            fresh = worker(shared)
            await fresh.start()
            live.append(fresh)
        now = total(await scrape(rng.choice(live)))
        assert now >= last
        assert now == sent
        last = now
    for w in live + ended:
        await w.aclose()


async def test_the_periodic_snapshot_is_written_unasked(shared: Path) -> None:
    w = worker(shared, interval_s=0.01)
    await w.start()
    served(w, 4)
    for _ in range(500):
        written = read_snapshots(shared).get(w.id, {})
        rows = written.get("counter", {}).get(sc.M_REQUESTS, [])
        if rows and rows[0][1] == 4:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("no periodic snapshot carried the new count")
    await w.aclose()


def test_a_directory_too_long_for_unix_sockets_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="TMPDIR"):
        check_directory(tmp_path / ("d" * 120))


def test_serve_with_workers_refuses_a_temp_dir_too_long_for_their_sockets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit status 2 and the fix, before any worker starts; nothing is left behind."""
    from relaygate.cli import main

    long = tmp_path / ("d" * 90)
    long.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long))
    assert main(["serve", "--workers", "2", "--port", "1"]) == 2
    assert "TMPDIR" in capsys.readouterr().err
    assert list(long.iterdir()) == []
