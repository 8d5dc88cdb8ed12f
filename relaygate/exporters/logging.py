"""Structured logs: structlog processors and the one place they are configured.

JSON lines (rendered with orjson) for machines, coloured key/value lines for a terminal.
Every line carries the current trace and span id, so a log line, its trace and its metric
exemplars join. A redaction processor masks any field whose name marks a credential, as a
last guard behind the rule that credentials are never logged in the first place.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping, MutableMapping
from typing import Any

import orjson
import structlog
from opentelemetry import trace

from relaygate.exchange import AttemptRecord
from relaygate.strategies.reasons import error_type
from relaygate.telemetry import trace_ids

SECRET_FIELDS = frozenset(
    {"api_key", "apikey", "authorization", "x-portkey-api-key", "api-key", "password", "token"}
)
"""Field names whose values are replaced by ``***`` in every log line."""

EventDict = MutableMapping[str, Any]


def add_trace_ids(_: Any, __: str, event: EventDict) -> EventDict:
    """Add ``trace_id``/``span_id`` of the current span, unless the line already has them."""
    if "trace_id" not in event:
        ids = trace_ids(trace.get_current_span())
        if ids is not None:
            event["trace_id"], event["span_id"] = ids
    return event


def joins(request_id: str, config: str | None, span: trace.Span) -> dict[str, Any]:
    """The fields every line about a request starts with: ``request_id``, ``trace_id``,
    ``span_id`` (of ``span``, the span the line is about: an attempt's CLIENT span, the span
    carrying a fallback or retry event; ``None`` when it has no valid context) and
    ``config`` (the config id, as the request line and the metrics' ``config`` label)."""
    ids = trace_ids(span)
    return {
        "request_id": request_id,
        "trace_id": ids[0] if ids else None,
        "span_id": ids[1] if ids else None,
        "config": config,
    }


def attempt_fields(record: AttemptRecord) -> dict[str, Any]:
    """One upstream attempt as every log line names it, the same in its ``upstream_attempt``
    line and in its request line's ``attempts``: ``target`` (the target's name, else its
    path: the metrics' ``target`` label) and ``target_path``, ``provider``, ``attempt``,
    ``status`` (as the upstream sent it; ``None``: nothing answered), ``reason``,
    ``error_type`` (:func:`~relaygate.strategies.reasons.error_type`), ``ms`` (the whole
    attempt, a stream's until it ended), ``ttfc_ms`` (a stream's first chunk, else ``None``),
    ``backoff_ms`` (the wait before it) and ``span_id`` (its CLIENT span)."""
    target = record.target
    ttfc = record.ttfc_s
    return {
        "target": target.label,
        "target_path": target.path,
        "provider": target.provider,
        "attempt": record.attempt,
        "status": record.status,
        "reason": record.reason,
        "error_type": error_type(record.reason, record.status),
        "ms": round(record.duration_s * 1000, 3),
        "ttfc_ms": round(ttfc * 1000, 3) if ttfc is not None else None,
        "backoff_ms": round(record.backoff_s * 1000, 3),
        "span_id": record.span_id,
    }


def redact(_: Any, __: str, event: EventDict) -> EventDict:
    """Mask fields named like credentials (see :data:`SECRET_FIELDS`)."""
    for key in event.keys() & SECRET_FIELDS:
        event[key] = "***"
    return event


def _orjson_bytes(obj: Any, default: Any = None) -> bytes:
    return orjson.dumps(obj, default=default or str)


class IsoUtcTimestamp:
    """Adds ``timestamp``: ISO 8601 UTC with microseconds (``2026-01-02T03:04:05.678901Z``),
    the format of structlog's ``TimeStamper(fmt="iso", utc=True)`` at a fraction of its cost
    (the date and time of day are formatted once per second)."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, _: Any, __: str, event: EventDict) -> EventDict:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        event["timestamp"] = f"{self._prefix}.{int((now - second) * 1_000_000):06d}Z"
        return event


def processors(fmt: str) -> list[Any]:
    """The processor chain for ``fmt`` (``json`` or ``console``)."""
    chain: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        IsoUtcTimestamp(),
        add_trace_ids,
        redact,
        structlog.processors.format_exc_info,
    ]
    if fmt == "console":
        chain.append(structlog.dev.ConsoleRenderer())
    else:
        chain.append(structlog.processors.JSONRenderer(serializer=_orjson_bytes))
    return chain


LEVEL_ENV = "RELAYGATE_LOG_LEVEL"
FORMAT_ENV = "RELAYGATE_LOG_FORMAT"


def configure_logging(
    level: str = "info", fmt: str = "auto", env: Mapping[str, str] | None = None
) -> None:
    """Configure structlog globally for a relaygate process (``relaygate serve``).

    ``RELAYGATE_LOG_LEVEL`` and ``RELAYGATE_LOG_FORMAT`` in ``env`` (default: the process
    environment) override the arguments. ``fmt`` ``auto`` picks ``console`` on a terminal and
    ``json`` otherwise. Library users who configure structlog themselves need not call this.
    """
    env = os.environ if env is None else env
    level = env.get(LEVEL_ENV, level).strip().lower()
    fmt = env.get(FORMAT_ENV, fmt).strip().lower()
    if level.upper() not in logging.getLevelNamesMapping():
        raise ValueError(f"unknown log level {level!r}")
    if fmt not in ("json", "console", "auto"):
        raise ValueError(f"unknown log format {fmt!r}; use json, console or auto")
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    # JSON lines are rendered to bytes and written to stdout's buffer, skipping a decode and
    # print() per line; both loggers flush every line.
    factory: Any = (
        structlog.PrintLoggerFactory(sys.stdout)
        if fmt == "console"
        else structlog.BytesLoggerFactory(sys.stdout.buffer)
    )
    structlog.configure(
        processors=processors(fmt),
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
