"""Recording a stop on the request's attempt budget, shared by the fallback and retry layers.

The decision is :func:`~relaygate.strategies.budget.attempt_allowed`; this only records it.
"""

from __future__ import annotations

from opentelemetry.trace import get_current_span

from relaygate.exporters import semconv as sc
from relaygate.telemetry import Telemetry


def record_budget_spent(tel: Telemetry, spent: int, skipped_path: str) -> None:
    """A span event on the current span: the attempt budget (``spent`` attempts started)
    stopped a fallback or retry that would have gone to ``skipped_path``."""
    current = get_current_span()
    if current.is_recording():
        tel.guard(
            current.add_event,
            sc.EVENT_ATTEMPT_BUDGET_SPENT,
            {sc.ATTEMPTS: spent, sc.ATTEMPT_BUDGET_SKIPPED_PATH: skipped_path},
        )
