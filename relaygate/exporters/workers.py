"""One ``/metrics`` answer for all the worker processes of an instance.

``relaygate serve --workers N`` runs N processes behind one port; each records into its own
lock-free families (:mod:`relaygate.exporters.prometheus`), and a scrape reaches whichever
process accepted the connection. :class:`WorkerMetrics` makes every scrape answer for the
whole instance, with no cost on the request path, through a directory the workers share
(created empty per run by ``relaygate serve``, named in ``$RELAYGATE_METRICS_DIR``):

* each worker writes a snapshot of its families (:mod:`relaygate.exporters.snapshot`) to
  ``w-<id>.json`` (written whole, then renamed into place) every :data:`SNAPSHOT_INTERVAL_S`,
  when asked, and at shutdown, and listens on ``w-<id>.sock``, a Unix socket that asks it to
  write one now;
* a scrape asks every other worker, over its socket, to write its snapshot (waiting at most
  :data:`FLUSH_TIMEOUT_S`; a worker that does not answer in time counts with the snapshot it
  wrote last), then merges its own live families, every worker's file and the families of
  workers that have ended (``retired.json``): counters, histogram buckets and sums and the
  in-flight gauge summed, ``_created`` the earliest, exemplars the most recent;
* a worker whose socket refuses connections has ended (a crash or a restart): its counters
  and histograms are folded into ``retired.json`` and its files removed, so the instance's
  counters never go back while the instance runs; its gauge is dropped. A worker that shuts
  down cleanly folds its own final snapshot in the same way.

Each value a scrape reports for a worker is one that worker had written to its file when the
scrape read it (its own values are written before they are reported), and files only ever
move forward, so counters never decrease from one scrape to the next, whichever worker
answers. Moving a snapshot into ``retired.json`` and reading the directory are serialised by
an ``flock`` on ``lock`` (exclusive and shared), and ``retired.json`` lists the workers it
holds, so no worker is counted twice or missed. A worker's snapshot file exists only while
its socket listens (it is written first after the socket is listening), so a snapshot file
whose socket is gone belongs to a worker that ended.

Recording is untouched: snapshots are taken from the families as they are, on the worker's
event loop. Everything here is guarded; a failure is logged and counted in
``relaygate_telemetry_errors_total``, and the scrape answers with what it could read.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.core import Metric

from relaygate.exporters import snapshot
from relaygate.exporters.prometheus import Family, FamilyCollector
from relaygate.telemetry import Telemetry

METRICS_DIR_ENV = "RELAYGATE_METRICS_DIR"
"""Environment variable naming the directory the workers of one instance share; set by
``relaygate serve`` for more than one worker."""

SNAPSHOT_INTERVAL_S = 5.0
"""How often a worker writes its snapshot unasked: bounds what a crash loses and how old the
values of a worker too busy to answer a scrape can be."""

FLUSH_TIMEOUT_S = 2.0
"""How long a scrape waits for the other workers to write their snapshots (well inside
Prometheus' default 10 s scrape timeout)."""

MAX_SOCKET_PATH = 100
"""Longest Unix socket path used, in bytes (the system limit is 104 on macOS, 108 on Linux)."""

_RETIRED = "retired.json"
_LOCK = "lock"
_FLUSH = b"flush\n"
_DONE = b"ok\n"


def socket_path(directory: Path, worker: str) -> Path:
    """The socket through which ``worker`` is asked to write its snapshot."""
    return directory / f"w-{worker}.sock"


def snapshot_path(directory: Path, worker: str) -> Path:
    """The file holding ``worker``'s latest snapshot."""
    return directory / f"w-{worker}.json"


def new_worker_id() -> str:
    """A worker id unique within a directory: the pid (readable) and a random part (a
    restarted worker may get an old pid)."""
    return f"{os.getpid()}-{secrets.token_hex(4)}"


def check_directory(directory: Path) -> None:
    """Raise ``ValueError`` when the sockets of workers in ``directory`` would have paths too
    long for a Unix socket."""
    longest = socket_path(directory, f"{2**22}-{'0' * 8}")
    if len(os.fsencode(longest)) > MAX_SOCKET_PATH:
        raise ValueError(
            f"the metrics directory {directory} is too long a path for the workers' Unix "
            f"sockets (at most {MAX_SOCKET_PATH - 25} bytes); set TMPDIR to a shorter one"
        )


def worker_ids(directory: Path) -> list[str]:
    """The ids of the workers with a snapshot file in ``directory``, sorted."""
    return sorted(path.name[2:-5] for path in directory.glob("w-*.json"))


def read_snapshots(directory: Path) -> dict[str, snapshot.Snapshot]:
    """Every worker snapshot file in ``directory`` by worker id (vanished ones left out)."""
    out: dict[str, snapshot.Snapshot] = {}
    for worker in worker_ids(directory):
        data = _read(snapshot_path(directory, worker))
        if data is not None:
            out[worker] = data
    return out


def _read(path: Path) -> Any:
    """The JSON in ``path``; ``None`` when there is no such file. Raises ``ValueError`` for
    a file that is not JSON (the directory is relaygate's own: someone else wrote it)."""
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None


def _write(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as JSON in one step (readers see the old or the new)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(orjson.dumps(data))
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(directory: Path, exclusive: bool) -> Iterator[None]:
    fd = os.open(directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


class WorkerMetrics:
    """This worker's part in its instance's merged ``/metrics`` (see the module docstring).

    Constructed in each worker with the shared ``directory`` and the worker's ``telemetry``;
    it replaces the families' collector in ``telemetry.metrics.registry``, so collecting the
    registry yields the instance's merged families. :meth:`start` (at app startup) opens the
    socket and the periodic snapshot, :meth:`refresh` (before each scrape) has the other
    workers write theirs, :meth:`aclose` (at shutdown) hands this worker's final values over
    to ``retired.json``.
    """

    def __init__(
        self,
        directory: Path,
        telemetry: Telemetry,
        *,
        interval_s: float = SNAPSHOT_INTERVAL_S,
        flush_timeout_s: float = FLUSH_TIMEOUT_S,
        worker_id: str | None = None,
    ) -> None:
        check_directory(directory)
        self.directory = directory
        """The directory the instance's workers share."""
        self.id = worker_id or new_worker_id()
        """This worker's id, unique within ``directory``."""
        self._tel = telemetry
        self._interval_s = interval_s
        self._flush_timeout_s = flush_timeout_s
        self._snapshot = snapshot_path(directory, self.id)
        self._socket = socket_path(directory, self.id)
        self._lock = threading.Lock()  # orders this worker's own snapshot writes
        self._listening = False
        self._closed = False
        self._server: asyncio.AbstractServer | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._starting: asyncio.Lock | None = None
        registry = telemetry.metrics.registry
        registry.unregister(telemetry.metrics.collector)
        registry.register(self)

    def _families(self) -> tuple[Family, ...]:
        return self._tel.metrics.collector.families

    # -- the registry's view ------------------------------------------------------------------
    def describe(self) -> list[Metric]:
        """The families without samples, so registering does not collect."""
        return self._tel.metrics.collector.describe()

    def collect(self) -> Iterator[Metric]:
        """The instance's merged families; this worker's own alone if the directory cannot
        be read."""
        try:
            merged = self.merged()
        except Exception:  # telemetry never fails: answer with this worker's values
            self._failed("metrics_merge_failed")
            merged = list(self._families())
        yield from FamilyCollector(merged).collect()

    def merged(self) -> list[Family]:
        """This worker's families merged with every other worker's snapshot and the retired
        workers' values, as of now (this worker's snapshot is written first)."""
        own = self.write()
        others: list[snapshot.Snapshot] = []
        with _locked(self.directory, exclusive=False):
            retired = _read(self.directory / _RETIRED) or {}
            gone = set(retired.get("workers", ()))
            for worker in worker_ids(self.directory):
                if worker != self.id and worker not in gone:
                    data = _read(snapshot_path(self.directory, worker))
                    if data is not None:
                        others.append(data)
        data = snapshot.combine([own, retired.get("metrics", {}), *others])
        return snapshot.families(self._families(), data)

    # -- this worker's snapshot ----------------------------------------------------------------
    def write(self) -> snapshot.Snapshot:
        """Take this worker's snapshot and, while its socket listens, write it to its file;
        returns the snapshot."""
        with self._lock:
            data = snapshot.take(self._families())
            if self._listening and not self._closed:
                try:
                    _write(self._snapshot, data)
                except OSError:  # a full disk, say: the next write tries again
                    self._failed("metrics_snapshot_failed")
        return data

    async def start(self) -> None:
        """Listen on this worker's socket, write its first snapshot, and write one every
        ``interval_s`` from then on. Idempotent."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._server is not None or self._closed:
                return
            self._server = await asyncio.start_unix_server(self._answer, path=str(self._socket))
            os.chmod(self._socket, 0o600)
            self._listening = True
            self.write()
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                self.write()
            except Exception:  # telemetry never fails; the next tick tries again
                self._failed("metrics_snapshot_failed")

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Another worker is scraped: write this worker's snapshot, then say so."""
        try:
            async with asyncio.timeout(self._flush_timeout_s):
                if await reader.readline() == _FLUSH:
                    self.write()
                    writer.write(_DONE)
                    await writer.drain()
        except Exception:  # the asking worker reads the last snapshot instead
            self._failed("metrics_snapshot_failed")
        finally:
            writer.close()

    async def aclose(self) -> None:
        """Write the final snapshot, stop listening, and fold this worker's values into
        ``retired.json`` (they stay in the instance's counters). Idempotent."""
        if self._closed:
            return
        if self._ticker is not None:
            self._ticker.cancel()
        try:
            with self._lock:
                if self._listening:
                    _write(self._snapshot, snapshot.take(self._families()))
                self._closed = True
        except Exception:
            self._closed = True
            self._failed("metrics_snapshot_failed")
        if self._server is not None:
            self._server.close()
            try:
                self._retire(self.id)
            except Exception:  # the other workers retire it when they find it gone
                self._failed("metrics_retire_failed", worker=self.id)

    # -- the other workers ---------------------------------------------------------------------
    def _others(self) -> list[str]:
        """The ids of the other workers with a snapshot file (a worker writes its first only
        once its socket listens)."""
        return [w for w in worker_ids(self.directory) if w != self.id]

    async def refresh(self) -> None:
        """Have every other worker write its snapshot now (waiting at most
        ``flush_timeout_s``), and retire the workers that have ended. Never raises: the
        scrape then reads the snapshots as they are."""
        try:
            await self._refresh()
        except Exception:
            self._failed("metrics_refresh_failed")

    async def _refresh(self) -> None:
        if self._server is None and not self._closed:
            await self.start()
        others = self._others()
        if not others:
            return
        answers = await asyncio.gather(*(self._ring(w) for w in others))
        for worker, answer in zip(others, answers, strict=True):
            if answer == "ended":
                try:
                    self._retire(worker)
                except Exception:
                    self._failed("metrics_retire_failed", worker=worker)
            elif answer == "late":
                self._tel.guard(self._tel.logger.warning, "metrics_worker_late", worker=worker)

    async def _ring(self, worker: str) -> str:
        """``"ok"`` once ``worker`` wrote its snapshot, ``"ended"`` when its socket refuses
        (nothing listens: the process is gone), ``"late"`` when it did not answer in time."""
        try:
            async with asyncio.timeout(self._flush_timeout_s):
                reader, writer = await asyncio.open_unix_connection(
                    str(socket_path(self.directory, worker))
                )
                try:
                    writer.write(_FLUSH)
                    await writer.drain()
                    answer = await reader.readline()
                finally:
                    writer.close()
        except (ConnectionRefusedError, FileNotFoundError):
            return "ended"
        except (TimeoutError, OSError):
            return "late"
        return "ok" if answer == _DONE else "late"

    def _retire(self, worker: str) -> None:
        """Fold ``worker``'s last snapshot (less its gauges) into ``retired.json`` and remove
        its files, once."""
        retired_path = self.directory / _RETIRED
        with _locked(self.directory, exclusive=True):
            retired = _read(retired_path) or {"workers": [], "metrics": snapshot.empty()}
            path = snapshot_path(self.directory, worker)
            if worker not in retired["workers"]:
                last = _read(path)
                if last is not None:
                    workers = [*retired["workers"], worker]
                    merged = snapshot.combine([retired["metrics"], snapshot.without_gauges(last)])
                    _write(retired_path, {"workers": workers, "metrics": merged})
            path.unlink(missing_ok=True)
            socket_path(self.directory, worker).unlink(missing_ok=True)

    def _failed(self, event: str, **fields: Any) -> None:
        self._tel.errors += 1
        self._tel.guard(self._tel.logger.warning, event, exc_info=True, **fields)
