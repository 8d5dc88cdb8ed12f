"""The bounded vocabulary of attempt outcomes.

Every upstream attempt ends in exactly one :class:`Reason`. The values are stable strings used
as metric label values and in the route story, so the set must stay small and closed.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why an attempt ended: success, an upstream status class, or a transport failure."""

    OK = "ok"
    STATUS_429 = "status_429"
    STATUS_4XX = "status_4xx"
    STATUS_5XX = "status_5xx"
    TIMEOUT = "timeout"
    CONNECT_ERROR = "connect_error"
    INVALID_RESPONSE = "invalid_response"
    STREAM_ERROR = "stream_error"
    STREAM_IDLE = "stream_idle"
    """A stream handed to the client went silent longer than its ``stream_idle_timeout``."""
    DEADLINE = "deadline"
    NO_ROUTE = "no_route"
    CIRCUIT_OPEN = "circuit_open"
    """The target's circuit breaker was open: no upstream attempt was made."""
    RATE_LIMITED = "rate_limited"
    """The target was skipped, not called: it is over its own rate limit or budget."""


def classify(status: int, failure: Reason | None = None) -> Reason:
    """The :class:`Reason` for an attempt that ended with ``status`` and optional ``failure``.

    ``failure`` is set by the transport when no usable upstream answer exists (timeout,
    connect error, invalid response, stream error, deadline) and always wins over ``status``.
    Otherwise: 2xx → ``OK``, 429 → ``STATUS_429``, 500 and above → ``STATUS_5XX``, and every
    other status (4xx, but also 1xx/3xx and a missing ``0``) → ``STATUS_4XX``.
    """
    if failure is not None:
        return failure
    if 200 <= status < 300:
        return Reason.OK
    if status == 429:
        return Reason.STATUS_429
    if status >= 500:
        return Reason.STATUS_5XX
    return Reason.STATUS_4XX


STATUS_REASONS = frozenset({Reason.STATUS_429, Reason.STATUS_4XX, Reason.STATUS_5XX})
"""The reasons of an upstream's own error status (its code says what went wrong)."""


def error_type(reason: str, status: int | None) -> str | None:
    """The OpenTelemetry ``error.type`` of an attempt that ended with ``reason`` after the
    upstream sent ``status`` (``None``: nothing was answered), the one value spans, metrics
    (``error_type``) and logs carry.

    ``None`` for ``ok`` (the convention sets no ``error.type`` on success); the status code as
    a string for an upstream's error status (``"503"``, ``"429"``: HTTP's own identifiers);
    else the reason itself, a fixed low-cardinality name: ``timeout``, ``connect_error``,
    ``invalid_response``, ``stream_error``, ``deadline``, ``client_disconnected``,
    ``cancelled``, ``gateway_shutting_down``, ``internal_error``.
    """
    if reason == Reason.OK:
        return None
    if reason in STATUS_REASONS and status is not None:
        return str(status)
    return reason
