"""Breaker decisions shared by two processes' registries through one state backend."""

from __future__ import annotations

from relaygate.circuits import CircuitEntry, CircuitRegistry
from relaygate.config.model import BreakerSettings
from relaygate.state.backend import MemoryBackend
from relaygate.state.circuits import CircuitSync
from relaygate.strategies.breaker import Admission, CircuitState, Outcome
from relaygate.telemetry import Telemetry
from tests.fakes import target

SETTINGS = BreakerSettings(failure_threshold=2, cooldown_interval_ms=10_000, half_open_probes=1)
TARGET = target(api_key="sk-op", override_params={"model": "m"})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Replica:
    """One process: its own clock, registry and sync, on the shared ``backend``."""

    def __init__(self, backend: MemoryBackend, telemetry: Telemetry) -> None:
        self.clock = Clock()
        self.registry = CircuitRegistry(now=self.clock)
        self.sync = CircuitSync(self.registry, backend, telemetry)
        self.entry: CircuitEntry = self.registry.entry(TARGET, None)

    def attempt(self, outcome: Outcome) -> Admission:
        admission, moved = self.registry.admit(self.entry, SETTINGS)
        self.registry.announce(self.entry, moved)
        if admission is not Admission.REFUSE:
            probe = admission is Admission.PROBE
            moved = self.registry.report(self.entry, SETTINGS, outcome, probe)
            self.registry.announce(self.entry, moved)
        return admission

    @property
    def state(self) -> CircuitState:
        return self.entry.state(self.clock())


async def test_one_replicas_failures_open_the_circuit_for_the_other_and_only_it_probes(
    telemetry: Telemetry,
) -> None:
    backend = MemoryBackend()
    one, two = Replica(backend, telemetry), Replica(backend, telemetry)
    assert one.entry.key == two.entry.key  # the same endpoint and key in both processes

    one.attempt(Outcome.FAILURE)
    one.attempt(Outcome.FAILURE)
    assert one.state is CircuitState.OPEN
    await one.sync.flush()
    assert two.state is CircuitState.CLOSED
    await two.sync.sync_once()
    assert two.state is CircuitState.OPEN
    assert two.attempt(Outcome.SUCCESS) is Admission.REFUSE

    # Past the cooldown, the replica that opened the circuit probes; the other, reading
    # the standing record, keeps its own circuit open rather than probe as well.
    one.clock.now += 11
    two.clock.now += 11
    await two.sync.sync_once()
    assert two.attempt(Outcome.SUCCESS) is Admission.REFUSE
    assert one.attempt(Outcome.SUCCESS) is Admission.PROBE
    assert one.state is CircuitState.CLOSED
    await one.sync.flush()

    await two.sync.sync_once()
    assert two.state is CircuitState.CLOSED
    assert two.attempt(Outcome.SUCCESS) is Admission.ALLOW


async def test_a_failed_probe_keeps_every_replica_open(telemetry: Telemetry) -> None:
    backend = MemoryBackend()
    one, two = Replica(backend, telemetry), Replica(backend, telemetry)
    one.attempt(Outcome.FAILURE)
    one.attempt(Outcome.FAILURE)
    await one.sync.flush()
    await two.sync.sync_once()
    one.clock.now += 11
    assert one.attempt(Outcome.FAILURE) is Admission.PROBE
    assert one.state is CircuitState.OPEN
    await one.sync.flush()
    two.clock.now += 11
    await two.sync.sync_once()
    assert two.state is CircuitState.OPEN


async def test_without_records_each_replica_keeps_its_own_breaker(telemetry: Telemetry) -> None:
    backend = MemoryBackend()
    one, two = Replica(backend, telemetry), Replica(backend, telemetry)
    one.attempt(Outcome.FAILURE)
    two.attempt(Outcome.FAILURE)
    await one.sync.sync_once()
    await two.sync.sync_once()
    # One failure each: neither reached the threshold of two, and nothing is shared.
    assert one.state is two.state is CircuitState.CLOSED
