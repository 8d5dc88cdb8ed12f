"""Recording a stop on the request's attempt budget, shared by the fallback and retry layers.

The decision is :func:`~relaygate.strategies.budget.attempt_allowed`; this only records it.
"""

from __future__ import annotations

from opentelemetry.trace import get_current_span
from opentelemetry.util.types import AttributeValue

from relaygate.config.model import Node
from relaygate.exporters import semconv as sc
from relaygate.telemetry import Telemetry


def record_budget_spent(tel: Telemetry, spent: int, skipped: Node) -> None:
    """A span event on the current span: the attempt budget (``spent`` attempts started)
    stopped a fallback or retry that would have gone to ``skipped`` (named by path, and by
    name when it has one)."""
    current = get_current_span()
    if current.is_recording():
        attrs: dict[str, AttributeValue] = {
            sc.ATTEMPTS: spent,
            sc.ATTEMPT_BUDGET_SKIPPED_PATH: skipped.path,
        }
        if skipped.name:
            attrs[sc.ATTEMPT_BUDGET_SKIPPED_NAME] = skipped.name
        tel.guard(current.add_event, sc.EVENT_ATTEMPT_BUDGET_SPENT, attrs)
