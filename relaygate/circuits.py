"""The gateway's circuits: breaker state per endpoint, shared by every config.

A :class:`CircuitRegistry` belongs to a gateway (``GatewayDeps.circuits``), not to a compiled
config, so a config sent inline with each request shares the circuits of the server's own
configs, and a reloaded config finds the state of the endpoints it still calls. Circuits are
keyed by :class:`~relaygate.strategies.breaker.CircuitKey` (provider, base URL, model,
credential); the state machine is :class:`~relaygate.strategies.breaker.Circuit`.

Each circuit remembers the telemetry label sets (config, target, provider, model) it has
been reached under, at most :data:`MAX_BINDINGS`, so its state gauge and transition counter
are reported per target as the rest of the per-target metrics are. The registry holds at
most ``max_circuits`` circuits; past that, the least recently used closed one is dropped.
Listeners (:meth:`CircuitRegistry.listen`) hear every transition.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from relaygate.config.model import BreakerSettings, Target
from relaygate.strategies.breaker import (
    Admission,
    Circuit,
    CircuitKey,
    CircuitState,
    Outcome,
    Transition,
    circuit_key,
)

__all__ = [
    "DEFAULT_BREAKER",
    "MAX_BINDINGS",
    "CircuitEntry",
    "CircuitRegistry",
    "Origin",
    "TransitionListener",
]

DEFAULT_BREAKER = BreakerSettings(
    failure_threshold_percentage=90,
    minimum_requests=5,
    cooldown_interval_ms=30_000,
    window_ms=60_000,
)
"""The server's default breaker (``breaker`` section): opens on a target that failed at
least 90% of at least 5 attempts within a minute, skips it for 30 s, then probes once."""

MAX_BINDINGS = 32
"""Telemetry label sets remembered per circuit."""

Binding = tuple[str, str, str, str]
"""``(config, target, provider, model)`` label values a circuit is reported under."""

Origin = tuple[str, bool, Target, str | None, str]
"""Where a circuit was first reached: ``(config id, caller supplied, target, requested
model, operation)``, from which its labels are made when it changes before it was bound."""

TransitionListener = Callable[["CircuitEntry", CircuitState, CircuitState], None]
"""Called with the circuit, the state it left and the state it entered."""


@dataclass(slots=True)
class CircuitEntry:
    """One circuit in the registry: its key, state machine, the settings last used with it,
    the label sets it was reached under, and when it last changed state (wall clock)."""

    key: CircuitKey
    circuit: Circuit = field(default_factory=Circuit)
    settings: BreakerSettings = DEFAULT_BREAKER
    bindings: dict[Binding, None] = field(default_factory=dict)
    changed_at: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)
    """Display names: ``target`` paths/names it was reached as (for the status page)."""
    origin: Origin | None = None
    """Its first attempt's config and target (see :data:`Origin`)."""

    def state(self, now: float) -> CircuitState:
        """The state an attempt at ``now`` would see."""
        return self.circuit.current(self.settings, now)


class CircuitRegistry:
    """Breaker state of every endpoint a gateway calls (see the module docstring).

    ``now`` is the monotonic clock (seconds) the circuits run on; ``wall`` the clock their
    last change is reported in. Both are injectable for tests.
    """

    def __init__(
        self,
        *,
        now: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        max_circuits: int = 10_000,
    ) -> None:
        self._now = now
        self._wall = wall
        self._max = max_circuits
        self._entries: OrderedDict[CircuitKey, CircuitEntry] = OrderedDict()
        # (id(target), model) -> (target, entry): a compiled target is reused request after
        # request, so its circuit is found without building and hashing its key.
        self._known: dict[tuple[int, str | None], tuple[Target, CircuitEntry]] = {}
        self._listeners: list[TransitionListener] = []
        self.unhealthy = 0
        """Circuits not closed: while 0, no target can be skipped (the routing fast path)."""

    def now(self) -> float:
        """The registry's clock."""
        return self._now()

    def listen(self, listener: TransitionListener) -> None:
        """Call ``listener`` on every transition from now on."""
        self._listeners.append(listener)

    def unlisten(self, listener: TransitionListener) -> None:
        """Stop calling ``listener`` (a gateway that closes, its registry living on)."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def entry(self, target: Target, requested_model: str | None) -> CircuitEntry:
        """The circuit of calling ``target`` for a request asking ``requested_model``,
        created closed on first use."""
        known = self._known.get((id(target), requested_model))
        if known is not None and known[0] is target:
            return known[1]
        key = circuit_key(target, requested_model)
        entries = self._entries
        found = entries.get(key)
        if found is None:
            found = CircuitEntry(key=key, changed_at=self._wall())
            entries[key] = found
            if len(entries) > self._max:
                self._evict()
        else:
            entries.move_to_end(key)
        if len(self._known) >= self._max:
            self._known.clear()
        self._known[(id(target), requested_model)] = (target, found)
        return found

    def find(self, target: Target, requested_model: str | None) -> CircuitEntry | None:
        """The circuit of calling ``target`` for ``requested_model``, if it exists (no side
        effect)."""
        known = self._known.get((id(target), requested_model))
        if known is not None and known[0] is target:
            return known[1]
        return self._entries.get(circuit_key(target, requested_model))

    def last_for(self, target: Target) -> CircuitEntry | None:
        """The most recently used circuit of ``target``'s endpoint, whatever the model."""
        key = circuit_key(target, None)
        for entry in reversed(self._entries.values()):
            other = entry.key
            if (other.provider, other.base_url, other.endpoint, other.credential) == (
                key.provider,
                key.base_url,
                key.endpoint,
                key.credential,
            ):
                return entry
        return None

    def _evict(self) -> None:
        self._known.clear()
        for key, entry in self._entries.items():
            if entry.circuit.state is CircuitState.CLOSED:
                del self._entries[key]
                return
        _, dropped = self._entries.popitem(last=False)
        if dropped.circuit.state is not CircuitState.CLOSED:
            self.unhealthy -= 1

    def bind(self, entry: CircuitEntry, binding: Binding, label: str) -> bool:
        """Remember that ``entry`` is reached under ``binding``; ``True`` when new."""
        if binding in entry.bindings or len(entry.bindings) >= MAX_BINDINGS:
            return False
        entry.bindings[binding] = None
        entry.labels.setdefault(label, label)
        return True

    def admits(self, entry: CircuitEntry, settings: BreakerSettings) -> bool:
        """Whether an attempt now would be let through (no side effect)."""
        return entry.circuit.would_admit(settings, self._now())

    def admit(
        self, entry: CircuitEntry, settings: BreakerSettings
    ) -> tuple[Admission, list[Transition]]:
        """Ask to send an attempt now (see :meth:`Circuit.admit`); the caller passes the
        transitions to :meth:`announce`."""
        entry.settings = settings
        return entry.circuit.admit(settings, self._now())

    def report(
        self, entry: CircuitEntry, settings: BreakerSettings, outcome: Outcome, probe: bool
    ) -> list[Transition]:
        """Report how an admitted attempt ended (see :meth:`Circuit.report`); the caller
        passes the transitions to :meth:`announce`."""
        return entry.circuit.report(settings, self._now(), outcome, probe)

    def adopt(self, entry: CircuitEntry, state: CircuitState) -> list[Transition]:
        """Take ``state`` from another process (see :meth:`Circuit.adopt`); the caller
        passes the transitions to :meth:`announce`."""
        return entry.circuit.adopt(state, self._now())

    def announce(self, entry: CircuitEntry, moved: list[Transition]) -> None:
        """Account ``moved`` (transitions of ``entry``) and tell the listeners."""
        if not moved:
            return
        entry.changed_at = self._wall()
        for old, new in moved:
            if old is CircuitState.CLOSED:
                self.unhealthy += 1
            elif new is CircuitState.CLOSED:
                self.unhealthy -= 1
            for listener in self._listeners:
                listener(entry, old, new)

    def __iter__(self) -> Iterator[CircuitEntry]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)
