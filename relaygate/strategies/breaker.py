"""The circuit breaker of one upstream endpoint: a small state machine over a sliding window.

States (:class:`CircuitState`): ``closed`` lets every attempt through and counts outcomes;
``open`` refuses attempts until its cooldown has passed; ``half_open`` lets at most
``half_open_probes`` probe attempts through, closes once that many have succeeded and opens
again (a new cooldown) on the first that fails::

    closed --(threshold reached in the window)--> open
    open --(cooldown passed, next admission)--> half_open
    half_open --(all probes succeeded)--> closed      half_open --(a probe failed)--> open

The window is ``window_ms`` long and kept as :data:`WINDOW_BUCKETS` buckets, so memory is
fixed however busy the endpoint is, and an outcome leaves the window between 0.9 and 1.0
window lengths after it happened. Outcomes reported while the circuit is not closed and
that are not probes (attempts admitted before it opened) change nothing.

Nothing here reads a clock: every call takes ``now`` in seconds (any monotonic clock), so
the machine is tested as a table of events. :func:`outcome_of` is the policy saying which
attempt results are failures.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import NamedTuple

from relaygate.config.model import BreakerSettings, Target
from relaygate.strategies.reasons import Reason

__all__ = [
    "WINDOW_BUCKETS",
    "Admission",
    "Circuit",
    "CircuitKey",
    "CircuitState",
    "Outcome",
    "Transition",
    "circuit_key",
    "outcome_of",
]

WINDOW_BUCKETS = 10
"""Buckets the sliding window is kept in."""


class CircuitState(StrEnum):
    """The state of one circuit; the values are the ``state`` label of the metrics."""

    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


class Admission(StrEnum):
    """Whether an attempt may go: as usual, as a half-open probe, or not at all."""

    ALLOW = "allow"
    PROBE = "probe"
    REFUSE = "refuse"


class Outcome(StrEnum):
    """What an attempt's result says about the endpoint."""

    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"
    """Nothing either way (the request's deadline, the client going away): a probe so
    ended frees its slot without deciding."""


_TRANSPORT_FAILURES = frozenset(
    {
        Reason.TIMEOUT.value,
        Reason.CONNECT_ERROR.value,
        Reason.INVALID_RESPONSE.value,
        Reason.STREAM_ERROR.value,
    }
)
_ANSWERED = frozenset(
    {
        Reason.OK.value,
        Reason.STATUS_429.value,
        Reason.STATUS_4XX.value,
        Reason.STATUS_5XX.value,
    }
)


def outcome_of(settings: BreakerSettings, status: int, reason: str) -> Outcome:
    """The breaker's reading of an attempt that ended with ``status`` and ``reason``.

    A timeout, connection error, invalid response or broken stream is a failure whatever
    ``failure_status_codes`` says. An upstream answer is a failure when its status is in
    ``failure_status_codes`` (``None``: any 5xx), else a success (the endpoint answered).
    Anything else (the request's deadline, a client that went away, a shutdown, a refusal
    by the breaker itself) is neutral.
    """
    if reason in _TRANSPORT_FAILURES:
        return Outcome.FAILURE
    if reason not in _ANSWERED:
        return Outcome.NEUTRAL
    codes = settings.failure_status_codes
    failed = status >= 500 if codes is None else status in codes
    return Outcome.FAILURE if failed else Outcome.SUCCESS


class CircuitKey(NamedTuple):
    """What a circuit stands for: one endpoint as called with one credential.

    ``base_url`` is the target's ``custom_host`` (empty: the provider's own endpoint) and
    ``endpoint`` its provider-specific address parts (Azure's resource and deployment);
    ``credential`` is a digest of the API key (the same in every process, so replicas
    sharing state name the same circuit), so a caller's bad key cannot open the operator's
    circuit. The key itself never leaves the process.
    """

    provider: str
    base_url: str
    endpoint: str
    model: str
    credential: int

    def describe(self) -> str:
        """A readable, secret-free name: ``provider model @ base URL``."""
        where = self.base_url or self.endpoint
        text = f"{self.provider} {self.model}".rstrip()
        return f"{text} @ {where}" if where else text


def circuit_key(target: Target, requested_model: str | None) -> CircuitKey:
    """The :class:`CircuitKey` of calling ``target`` for a request asking ``requested_model``
    (used when the target pins no model)."""
    options = target.provider_options
    endpoint = (
        "/".join(
            str(options[name]) for name in ("resource_name", "deployment_id") if name in options
        )
        if options
        else ""
    )
    key = target.api_key
    return CircuitKey(
        target.provider,
        target.custom_host or "",
        endpoint,
        target.model or requested_model or "",
        _digest(key.reveal()) if key else 0,
    )


def _digest(secret: str) -> int:
    """A stable 64-bit digest of ``secret`` (not Python's per-process ``hash``)."""
    return int.from_bytes(hashlib.blake2b(secret.encode(), digest_size=8).digest(), "big")


Transition = tuple[CircuitState, CircuitState]
"""A change of state: ``(from, to)``."""


class Circuit:
    """The state of one circuit (see the module docstring); not thread-safe, loop-only.

    Every method takes the :class:`~relaygate.config.model.BreakerSettings` in force for the
    call, so one circuit serves every config calling the same endpoint.
    """

    __slots__ = (
        "_buckets",
        "opened_at",
        "probe_successes",
        "probes_in_flight",
        "state",
    )

    def __init__(self) -> None:
        self.state = CircuitState.CLOSED
        """The current state (as of the last call)."""
        self.opened_at = 0.0
        """When the circuit last opened."""
        self.probes_in_flight = 0
        """Half-open probes admitted and not yet reported."""
        self.probe_successes = 0
        """Half-open probes that succeeded since the circuit half-opened."""
        self._buckets: list[list[float]] = []
        """``[bucket start, outcomes, failures]``, oldest first."""

    # -- the window ---------------------------------------------------------------------

    def _trim(self, settings: BreakerSettings, now: float) -> None:
        oldest = now - settings.window_ms / 1000
        buckets = self._buckets
        while buckets and buckets[0][0] + _width(settings) <= oldest:
            buckets.pop(0)

    def counts(self, settings: BreakerSettings, now: float) -> tuple[int, int]:
        """``(outcomes, failures)`` in the window ending at ``now``."""
        self._trim(settings, now)
        return (
            int(sum(b[1] for b in self._buckets)),
            int(sum(b[2] for b in self._buckets)),
        )

    def _count(self, settings: BreakerSettings, now: float, failed: bool) -> None:
        buckets = self._buckets
        width = _width(settings)
        if buckets and now < buckets[-1][0] + width:
            bucket = buckets[-1]  # the current bucket (the common case): nothing to trim
            bucket[1] += 1
            if failed:
                bucket[2] += 1
            return
        self._trim(settings, now)
        if not buckets or now >= buckets[-1][0] + width:
            start = now - (now % width) if width > 0 else now
            buckets.append([start, 0.0, 0.0])
            del buckets[: -WINDOW_BUCKETS - 1]
        bucket = buckets[-1]
        bucket[1] += 1
        if failed:
            bucket[2] += 1

    def _tripped(self, settings: BreakerSettings, now: float) -> bool:
        total, failures = self.counts(settings, now)
        threshold = settings.failure_threshold
        if threshold is not None and failures >= threshold:
            return True
        percentage = settings.failure_threshold_percentage
        return (
            percentage is not None
            and total >= settings.minimum_requests
            and failures * 100 >= percentage * total
        )

    # -- transitions ---------------------------------------------------------------------

    def _move(self, to: CircuitState, now: float, out: list[Transition]) -> None:
        out.append((self.state, to))
        self.state = to
        self.probes_in_flight = 0
        self.probe_successes = 0
        if to is CircuitState.OPEN:
            self.opened_at = now
        else:
            self._buckets.clear()

    def current(self, settings: BreakerSettings, now: float) -> CircuitState:
        """The state an admission at ``now`` would see (``open`` past its cooldown reads
        ``half_open``), without changing anything."""
        if self.state is CircuitState.OPEN and self._cooled(settings, now):
            return CircuitState.HALF_OPEN
        return self.state

    def would_admit(self, settings: BreakerSettings, now: float) -> bool:
        """Whether :meth:`admit` at ``now`` would let an attempt through (no side effect)."""
        state = self.current(settings, now)
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.OPEN:
            return False
        if self.state is CircuitState.OPEN:
            return True
        return self.probes_in_flight + self.probe_successes < settings.half_open_probes

    def _cooled(self, settings: BreakerSettings, now: float) -> bool:
        return now - self.opened_at >= settings.cooldown_interval_ms / 1000

    def admit(self, settings: BreakerSettings, now: float) -> tuple[Admission, list[Transition]]:
        """Ask to send an attempt at ``now``: the answer and the transitions it caused.

        An open circuit past its cooldown half-opens here. A ``PROBE`` admission holds a
        probe slot until :meth:`report` is called with ``probe=True``.
        """
        if self.state is CircuitState.CLOSED:
            return Admission.ALLOW, []
        moved: list[Transition] = []
        if self.state is CircuitState.OPEN:
            if not self._cooled(settings, now):
                return Admission.REFUSE, moved
            self._move(CircuitState.HALF_OPEN, now, moved)
        if self.probes_in_flight + self.probe_successes >= settings.half_open_probes:
            return Admission.REFUSE, moved
        self.probes_in_flight += 1
        return Admission.PROBE, moved

    def adopt(self, state: CircuitState, now: float) -> list[Transition]:
        """Take ``state`` as decided by another process sharing this circuit (see
        :mod:`relaygate.state.circuits`): ``open`` (re)starts the cooldown at ``now``, so this
        process does not probe while the other one does; ``closed`` ends an open or
        half-open phase. Returns the transitions made."""
        moved: list[Transition] = []
        if state is CircuitState.OPEN:
            if self.state is CircuitState.OPEN:
                self.opened_at = now
            else:
                self._move(CircuitState.OPEN, now, moved)
        elif state is CircuitState.CLOSED and self.state is not CircuitState.CLOSED:
            self._move(CircuitState.CLOSED, now, moved)
        return moved

    def report(
        self, settings: BreakerSettings, now: float, outcome: Outcome, probe: bool
    ) -> list[Transition]:
        """Report how an admitted attempt ended; returns the transitions it caused."""
        moved: list[Transition] = []
        if probe:
            if self.state is not CircuitState.HALF_OPEN:
                return moved  # the probe's half-open phase already ended
            self.probes_in_flight = max(self.probes_in_flight - 1, 0)
            if outcome is Outcome.FAILURE:
                self._move(CircuitState.OPEN, now, moved)
            elif outcome is Outcome.SUCCESS:
                self.probe_successes += 1
                if self.probe_successes >= settings.half_open_probes:
                    self._move(CircuitState.CLOSED, now, moved)
            return moved
        if self.state is not CircuitState.CLOSED or outcome is Outcome.NEUTRAL:
            return moved
        self._count(settings, now, outcome is Outcome.FAILURE)
        if outcome is Outcome.FAILURE and self._tripped(settings, now):
            self._move(CircuitState.OPEN, now, moved)
        return moved


def _width(settings: BreakerSettings) -> float:
    """The length of one window bucket, in seconds."""
    return settings.window_ms / 1000 / WINDOW_BUCKETS
