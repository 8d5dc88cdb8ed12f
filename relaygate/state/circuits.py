"""Circuit-breaker decisions shared by the replicas of a gateway through the state backend.

Each process keeps running its own breakers (:mod:`relaygate.circuits`: no round trip on an
attempt's path); what is shared is each circuit's last decision, as a record
``{"state": "open"|"closed", "by": <process id>}`` under ``cb:<circuit digest>``:

- A process whose circuit opens (its own failures tripped it, or its half-open probe
  failed) writes ``open``; one whose probe succeeded writes ``closed``.
- Every ``interval_s`` each process reads the records of the circuits it knows (one
  pipelined round trip, at most :data:`MAX_SYNCED` circuits, most recently used first) and
  adopts the others' decisions: a circuit another process opened opens here too, and while
  that record stands its cooldown is restarted at every read, so only the process that
  opened it sends the half-open probes (``half_open_probes`` in total, not per replica); a
  ``closed`` record closes it here.

So failures seen by one replica open the circuit for all within ``interval_s``. Each
process still counts its own window (failures spread over replicas, none of which sees
enough, open nothing). An ``open`` record lives twice the cooldown: if the process that
opened it stops probing (it went away, or gets no traffic for that target), the others
half-open on their own after that. A process adopts only circuits it has called before; a
replica behind the same load balancer as the others has.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import uuid

from relaygate.circuits import CircuitEntry, CircuitRegistry
from relaygate.state.backend import Get, Op, Set, StateBackend
from relaygate.strategies.breaker import CircuitState
from relaygate.telemetry import Telemetry

__all__ = ["MAX_SYNCED", "CircuitSync", "record_key"]

MAX_SYNCED = 1000
"""Circuits read per sync round (the most recently used)."""


def record_key(entry: CircuitEntry) -> str:
    """The state key of ``entry``'s shared record: a digest of its circuit key."""
    digest = hashlib.blake2b(repr(tuple(entry.key)).encode(), digest_size=12).hexdigest()
    return f"cb:{digest}"


class CircuitSync:
    """Shares ``registry``'s decisions through ``backend`` (see the module docstring)."""

    def __init__(
        self,
        registry: CircuitRegistry,
        backend: StateBackend,
        telemetry: Telemetry,
        *,
        interval_s: float = 0.5,
    ) -> None:
        self.registry = registry
        self._backend = backend
        self._tel = telemetry
        self.interval_s = interval_s
        self.me = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        """This process's id in the records it writes."""
        self._adopting = False
        self._task: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[object]] = set()
        registry.listen(self._heard)

    @property
    def started(self) -> bool:
        """Whether the sync loop runs."""
        return self._task is not None

    def start(self) -> None:
        """Start the sync loop in the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def flush(self) -> None:
        """Wait for the records written so far."""
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    async def aclose(self) -> None:
        """Stop the loop and stop listening."""
        self.registry.unlisten(self._heard)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _heard(self, entry: CircuitEntry, old: CircuitState, new: CircuitState) -> None:
        """A local transition: publish this process's own decisions (not adopted ones)."""
        if self._adopting:
            return
        if new is CircuitState.OPEN:
            ttl = 2 * entry.settings.cooldown_interval_ms / 1000
            self._publish(entry, "open", ttl)
        elif new is CircuitState.CLOSED and old is CircuitState.HALF_OPEN:
            self._publish(entry, "closed", entry.settings.window_ms / 1000)

    def _publish(self, entry: CircuitEntry, state: str, ttl_s: float) -> None:
        value = json.dumps({"state": state, "by": self.me}).encode()
        op = Set(record_key(entry), value, max(1, math.ceil(ttl_s)))
        try:
            task = asyncio.get_running_loop().create_task(self._backend.run([op]))
        except RuntimeError:  # no running loop: nothing to share with
            return
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.sync_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop outlives any error
                self._tel.errors += 1

    async def sync_once(self) -> None:
        """Read the records of the known circuits and adopt the other processes' decisions."""
        entries = list(self.registry)[-MAX_SYNCED:]
        if not entries:
            return
        ops: list[Op] = [Get(record_key(entry)) for entry in entries]
        results = await self._backend.run(ops)
        for entry, raw in zip(entries, results, strict=True):
            record = _parse(raw)
            if record is None or record.get("by") == self.me:
                continue
            wanted = record.get("state")
            if wanted == "open":
                self._adopt(entry, CircuitState.OPEN)
            elif wanted == "closed" and entry.circuit.state is not CircuitState.CLOSED:
                self._adopt(entry, CircuitState.CLOSED)

    def _adopt(self, entry: CircuitEntry, state: CircuitState) -> None:
        registry = self.registry
        self._adopting = True
        try:
            registry.announce(entry, registry.adopt(entry, state))
        finally:
            self._adopting = False


def _parse(raw: object) -> dict[str, object] | None:
    if not isinstance(raw, bytes):
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None
