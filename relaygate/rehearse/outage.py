"""The outage check: what a rehearsal of a primary outage says about the circuit breaker.

:func:`outage_summary` reads a :class:`~relaygate.rehearse.results.Report` of a scenario in
which the first target is down until ``recover_at_ms`` (the built-in ``primary-outage``)
and answers the questions of a breaker's acceptance: how many upstream attempts the dead
target still got, whether every request during the outage was answered by another
target, and how long after the recovery traffic came back. ``benchmarks/breaker_outage.py``
prints it; the tests assert on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from relaygate.rehearse.results import Report

__all__ = ["OutageSummary", "outage_summary"]


@dataclass(frozen=True)
class OutageSummary:
    """The outage in numbers (times in scenario seconds).

    ``attempts_while_down`` counts the upstream attempts the primary got before it
    recovered (skips are not attempts); ``requests_while_down`` and ``rescued`` the requests
    sent then and those answered 2xx by another target; ``back_at_s`` is the time of the
    first request the primary served after recovering (``None``: never); ``transitions``
    the primary circuit's changes as ``(t, from, to)``.
    """

    recovered_at_s: float
    requests_while_down: int
    rescued: int
    attempts_while_down: int
    back_at_s: float | None
    transitions: tuple[tuple[float, str, str], ...]
    slowest_s: float = 0.0
    waited_s: float = 0.0
    """Backoff the gateway decided on for those requests (production time; a rehearsal
    cuts each wait short)."""

    @property
    def back_after_s(self) -> float | None:
        """Seconds from the recovery to the first request the primary served again."""
        return None if self.back_at_s is None else self.back_at_s - self.recovered_at_s

    def lines(self) -> list[str]:
        """The summary as text lines."""
        back = "never" if self.back_at_s is None else f"t={self.back_at_s:g} s"
        after = self.back_after_s
        return [
            f"primary down until t={self.recovered_at_s:g} s",
            f"requests while down: {self.requests_while_down}, answered by another target: "
            f"{self.rescued} (slowest {self.slowest_s * 1000:.0f} ms; backoff decided "
            f"{self.waited_s:.1f} s in all)",
            f"upstream attempts on the primary while down: {self.attempts_while_down}",
            f"primary serving again from {back}"
            + ("" if after is None else f" ({after:g} s after it recovered)"),
            "primary circuit: " + ", ".join(f"t={t:g} s {a}->{b}" for t, a, b in self.transitions),
        ]


def outage_summary(report: Report) -> OutageSummary:
    """Summarise ``report`` (a scenario with ``interval_ms`` and a first target that has
    ``recover_at_ms``). Raises ``ValueError`` for another kind of scenario."""
    faults = report.faults[0] if report.faults else None
    interval_s = report.scenario.interval_ms / 1000
    if faults is None or faults.recover_at_ms is None or not interval_s:
        raise ValueError("not an outage scenario: needs interval_ms and a recover_at_ms")
    recovered = faults.recover_at_ms / 1000
    primary = report.config.targets[0]
    down = rescued = attempts = 0
    back: float | None = None
    slowest = waited = 0.0
    for result in report.requests:
        at = (result.number - 1) * interval_s
        if at < recovered:
            down += 1
            attempts += sum(
                1
                for a in result.attempts
                if a.target.path == primary.path and a.reason != "circuit_open"
            )
            if result.ok and result.served_by not in (None, primary.path):
                rescued += 1
            slowest = max(slowest, result.latency_s)
            waited += result.waited_s
        elif back is None and result.ok and result.served_by == primary.path:
            back = at
    transitions = tuple(
        (e.at_s, e.from_state, e.to_state) for e in report.circuits if primary.label in e.targets
    )
    return OutageSummary(recovered, down, rescued, attempts, back, transitions, slowest, waited)
