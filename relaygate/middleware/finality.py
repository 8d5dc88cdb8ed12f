"""Recording a retry or fallback that a final upstream error stopped, shared by the fallback
and retry layers.

The decision is :func:`~relaygate.strategies.finality.final_code`; this only reads the
answer for it and records it.
"""

from __future__ import annotations

from typing import Literal

from opentelemetry.trace import get_current_span

from relaygate.exchange import GatewayRequest, GatewayResponse
from relaygate.exporters import semconv as sc
from relaygate.strategies.finality import FINAL_STATUSES, error_facts, final_code
from relaygate.telemetry import Telemetry


def answer_final_code(response: GatewayResponse, on_error_codes: frozenset[str]) -> str | None:
    """The code making ``response`` final under ``on_error_codes``, else ``None``.

    The body is read only for a status that can be final (:data:`FINAL_STATUSES`), so
    successes and other failures cost a set lookup.
    """
    if response.failure or response.status not in FINAL_STATUSES or response.body is None:
        return None
    return final_code(response.status, None, error_facts(response.body), on_error_codes)


def record_final(
    tel: Telemetry,
    request: GatewayRequest,
    code: str,
    stopped: Literal["retry", "fallback"],
    at: str,
) -> None:
    """A span event on the current span, a debug line and a ``relaygate_final_errors_total``
    sample: the final error ``code`` of the answer from ``at`` stopped a retry or fallback."""
    config = request.config
    config_id = config.id if config else ""
    tel.guard(lambda: tel.metrics.final_errors.labels(config_id, code, stopped).inc())
    current = get_current_span()
    if current.is_recording():
        tel.guard(
            current.add_event,
            sc.EVENT_FINAL_ERROR,
            {"code": code, "stopped": stopped, sc.TARGET_PATH: at},
        )
    tel.guard(
        tel.logger.debug, "final_error", config_id=config_id, code=code, stopped=stopped, at=at
    )
