"""The circuit breaker state machine as decision tables, on an injected clock."""

from __future__ import annotations

from dataclasses import replace

import pytest

from relaygate.config.model import BreakerSettings, Secret
from relaygate.strategies.breaker import (
    Admission,
    Circuit,
    CircuitState,
    Outcome,
    circuit_key,
    outcome_of,
)
from tests.fakes import target

COUNT = BreakerSettings(failure_threshold=3, cooldown_interval_ms=10_000, window_ms=60_000)
RATE = BreakerSettings(
    failure_threshold_percentage=50, minimum_requests=4, cooldown_interval_ms=10_000
)
TWO_PROBES = replace(COUNT, half_open_probes=2)

F, S, N = Outcome.FAILURE, Outcome.SUCCESS, Outcome.NEUTRAL
CLOSED, HALF, OPEN = CircuitState.CLOSED, CircuitState.HALF_OPEN, CircuitState.OPEN

# Each step: (time in s, event, expected admission or None, expected state after).
# Events: "F"/"S"/"N" report an ordinary attempt's outcome, "admit" asks to send one,
# "pF"/"pS"/"pN" report a probe's outcome.
Step = tuple[float, str, Admission | None, CircuitState]

TABLE: list[tuple[str, BreakerSettings, list[Step]]] = [
    (
        "failures below the threshold keep it closed",
        COUNT,
        [(0, "F", None, CLOSED), (1, "F", None, CLOSED), (2, "admit", Admission.ALLOW, CLOSED)],
    ),
    (
        "the threshold-th failure in the window opens it; attempts are refused",
        COUNT,
        [
            (0, "F", None, CLOSED),
            (1, "S", None, CLOSED),
            (2, "F", None, CLOSED),
            (3, "F", None, OPEN),
            (4, "admit", Admission.REFUSE, OPEN),
            (12.9, "admit", Admission.REFUSE, OPEN),
        ],
    ),
    (
        "failures that left the sliding window do not count",
        COUNT,
        [
            (0, "F", None, CLOSED),
            (1, "F", None, CLOSED),
            (70, "F", None, CLOSED),
            (71, "F", None, CLOSED),
            (72, "F", None, OPEN),
        ],
    ),
    (
        "after the cooldown one probe goes; its success closes the circuit",
        COUNT,
        [
            (0, "F", None, CLOSED),
            (0, "F", None, CLOSED),
            (0, "F", None, OPEN),
            (10, "admit", Admission.PROBE, HALF),
            (10, "admit", Admission.REFUSE, HALF),
            (11, "pS", None, CLOSED),
            (11, "admit", Admission.ALLOW, CLOSED),
        ],
    ),
    (
        "a failed probe opens it again for a new cooldown",
        COUNT,
        [
            (0, "F", None, CLOSED),
            (0, "F", None, CLOSED),
            (0, "F", None, OPEN),
            (10, "admit", Admission.PROBE, HALF),
            (11, "pF", None, OPEN),
            (20, "admit", Admission.REFUSE, OPEN),
            (21, "admit", Admission.PROBE, HALF),
        ],
    ),
    (
        "two probes must both succeed; a third is refused while they run",
        TWO_PROBES,
        [
            (0, "F", None, CLOSED),
            (0, "F", None, CLOSED),
            (0, "F", None, OPEN),
            (10, "admit", Admission.PROBE, HALF),
            (10, "admit", Admission.PROBE, HALF),
            (10, "admit", Admission.REFUSE, HALF),
            (11, "pS", None, HALF),
            (11, "admit", Admission.REFUSE, HALF),
            (12, "pS", None, CLOSED),
        ],
    ),
    (
        "a neutral probe frees its slot without deciding",
        COUNT,
        [
            (0, "F", None, CLOSED),
            (0, "F", None, CLOSED),
            (0, "F", None, OPEN),
            (10, "admit", Admission.PROBE, HALF),
            (10, "pN", None, HALF),
            (10, "admit", Admission.PROBE, HALF),
        ],
    ),
    (
        "late reports of attempts admitted before it opened change nothing",
        COUNT,
        [
            (0, "F", None, CLOSED),
            (0, "F", None, CLOSED),
            (0, "F", None, OPEN),
            (1, "S", None, OPEN),
            (10, "admit", Admission.PROBE, HALF),
            (10, "F", None, HALF),
            (10, "S", None, HALF),
        ],
    ),
    (
        "the failure rate counts once the window holds minimum_requests outcomes",
        RATE,
        [
            (0, "F", None, CLOSED),
            (0, "F", None, CLOSED),
            (0, "S", None, CLOSED),
            (0, "F", None, OPEN),
        ],
    ),
    (
        "a rate under the percentage keeps it closed",
        RATE,
        [
            (0, "S", None, CLOSED),
            (0, "S", None, CLOSED),
            (0, "F", None, CLOSED),
            (0, "S", None, CLOSED),
            (0, "S", None, CLOSED),
            (0, "F", None, CLOSED),
        ],
    ),
    (
        "neutral outcomes are not counted",
        COUNT,
        [(0, "F", None, CLOSED), (0, "N", None, CLOSED), (0, "F", None, CLOSED)],
    ),
    (
        "a closed circuit starts a fresh window",
        COUNT,
        [
            (0, "F", None, CLOSED),
            (0, "F", None, CLOSED),
            (0, "F", None, OPEN),
            (10, "admit", Admission.PROBE, HALF),
            (10, "pS", None, CLOSED),
            (11, "F", None, CLOSED),
            (11, "F", None, CLOSED),
            (11, "F", None, OPEN),
        ],
    ),
]


@pytest.mark.parametrize(
    ("settings", "steps"), [(s, t) for _, s, t in TABLE], ids=[n for n, _, _ in TABLE]
)
def test_transitions(settings: BreakerSettings, steps: list[Step]) -> None:
    circuit = Circuit()
    for now, event, admission, state in steps:
        if event == "admit":
            got, _ = circuit.admit(settings, now)
            assert got is admission, (now, event)
        else:
            probe = event.startswith("p")
            circuit.report(settings, now, _OUTCOMES[event[-1]], probe)
        assert circuit.state is state, (now, event)


_OUTCOMES = {"F": F, "S": S, "N": N}


def test_transitions_are_reported_in_order() -> None:
    circuit = Circuit()
    moved = []
    for _ in range(3):
        moved += circuit.report(COUNT, 0, F, False)
    admission, half = circuit.admit(COUNT, 10)
    moved += half
    moved += circuit.report(COUNT, 10, S, admission is Admission.PROBE)
    assert moved == [(CLOSED, OPEN), (OPEN, HALF), (HALF, CLOSED)]


def test_would_admit_and_current_change_nothing() -> None:
    circuit = Circuit()
    for _ in range(3):
        circuit.report(COUNT, 0, F, False)
    assert not circuit.would_admit(COUNT, 5)
    assert circuit.would_admit(COUNT, 10)
    assert circuit.current(COUNT, 10) is HALF
    assert circuit.state is OPEN


@pytest.mark.parametrize(
    ("codes", "status", "reason", "expected"),
    [
        (None, 200, "ok", S),
        (None, 503, "status_5xx", F),
        (None, 500, "status_5xx", F),
        (None, 429, "status_429", S),
        (None, 400, "status_4xx", S),
        (None, 408, "timeout", F),
        (None, 502, "connect_error", F),
        (None, 502, "invalid_response", F),
        (None, 200, "stream_error", F),
        (None, 504, "deadline", N),
        (None, 499, "client_disconnected", N),
        (None, 499, "cancelled", N),
        (None, 503, "circuit_open", N),
        (frozenset({429}), 429, "status_429", F),
        (frozenset({429}), 503, "status_5xx", S),
        (frozenset({429}), 408, "timeout", F),
    ],
)
def test_outcome_of(
    codes: frozenset[int] | None, status: int, reason: str, expected: Outcome
) -> None:
    settings = BreakerSettings(failure_threshold=1, failure_status_codes=codes)
    assert outcome_of(settings, status, reason) is expected


def test_circuit_key_names_the_endpoint_not_the_config_path() -> None:
    a = target("config.targets[0]", override_params={"model": "gpt-4o"})
    b = target("config.targets[3].targets[1]", name="other", override_params={"model": "gpt-4o"})
    assert circuit_key(a, None) == circuit_key(b, "ignored")
    assert circuit_key(a, None) != circuit_key(replace(a, custom_host="http://h:1/v1"), None)
    assert circuit_key(a, None) != circuit_key(replace(a, override_params={"model": "x"}), None)
    assert circuit_key(a, None) != circuit_key(replace(a, api_key=Secret("other")), None)
    unpinned = replace(a, override_params={})
    assert circuit_key(unpinned, "m1") != circuit_key(unpinned, "m2")


def test_circuit_key_description_holds_no_secret() -> None:
    a = replace(
        target("config.targets[0]", override_params={"model": "gpt-4o"}),
        api_key=Secret("sk-canary"),
    )
    assert "sk-canary" not in circuit_key(a, None).describe()
    assert "sk-canary" not in repr(circuit_key(a, None))
