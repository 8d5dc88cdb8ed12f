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


def logs_at(logger: Any, level: int) -> bool:
    """Whether ``logger`` logs events at ``level`` (a :mod:`logging` level): its
    ``is_enabled_for`` when it has one (:class:`RelaygateLogger`, structlog's filtering
    loggers), else ``True``. Lines that would be dropped are then not even built."""
    enabled = getattr(logger, "is_enabled_for", None)
    return enabled is None or bool(enabled(level))


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
    """The processor chain for ``fmt`` (``json`` or ``console``).

    Exceptions are rendered as plain tracebacks, never with local variables (which could
    hold request content or credentials) and without rich's cost.
    """
    chain: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        IsoUtcTimestamp(),
        add_trace_ids,
        redact,
        structlog.processors.format_exc_info,
    ]
    if fmt == "console":
        chain.append(
            structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
        )
    else:
        chain.append(structlog.processors.JSONRenderer(serializer=_orjson_bytes))
    return chain


LEVEL_ENV = "RELAYGATE_LOG_LEVEL"
FORMAT_ENV = "RELAYGATE_LOG_FORMAT"


def resolve_settings(level: str, fmt: str, env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """The numeric level and the concrete format (``json`` or ``console``) for ``level`` and
    ``fmt`` after ``RELAYGATE_LOG_LEVEL``/``RELAYGATE_LOG_FORMAT`` in ``env`` (default: the
    process environment); ``auto`` is ``console`` on a terminal, else ``json``.
    Raises ``ValueError`` for an unknown level or format."""
    env = os.environ if env is None else env
    level = env.get(LEVEL_ENV, level).strip().lower()
    fmt = env.get(FORMAT_ENV, fmt).strip().lower()
    levels = logging.getLevelNamesMapping()
    if level.upper() not in levels:
        raise ValueError(f"unknown log level {level!r}")
    if fmt not in ("json", "console", "auto"):
        raise ValueError(f"unknown log format {fmt!r}; use json, console or auto")
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    return levels[level.upper()], fmt


class _Stdout:
    """The output of relaygate's own logger: each rendered line to the *current*
    ``sys.stdout`` (bytes to its buffer), flushed."""

    __slots__ = ()

    def msg(self, message: str | bytes) -> None:
        out = sys.stdout
        if isinstance(message, bytes):
            buffer = getattr(out, "buffer", None)
            if buffer is not None:
                out.flush()
                buffer.write(message + b"\n")
                buffer.flush()
                return
            message = message.decode()
        out.write(message + "\n")
        out.flush()

    debug = info = warning = warn = error = critical = exception = fatal = msg


class _OwnJsonLines:
    """relaygate's own JSON lines as :func:`configure_logging` set structlog up, written
    without structlog's logger machinery: the same processors, in the same order, on the
    same event dict, to the same stream (about a fifth of a line's cost is saved).

    In force only while structlog's processors are still the ones configured (a host or
    ``structlog.testing.capture_logs`` that reconfigures it gets its own way)."""

    __slots__ = ("level", "processors", "stream")

    def __init__(self, processors: list[Any], stream: Any, level: int) -> None:
        self.processors = processors
        self.stream = stream
        self.level = level

    def in_force(self) -> bool:
        """Whether structlog still runs the configured processors."""
        return structlog.is_configured() and structlog.get_config()["processors"] is (
            self.processors
        )

    def write(self, method: str, event: str, fields: dict[str, Any]) -> None:
        """Render and write one line (``fields`` becomes the event dict, as structlog's
        bound logger makes it: the fields, then ``event``)."""
        event_dict: Any = fields
        event_dict["event"] = event
        try:
            for processor in self.processors:
                event_dict = processor(None, method, event_dict)
        except structlog.DropEvent:
            return
        self.stream.write(event_dict + b"\n")
        self.stream.flush()


_own_lines: _OwnJsonLines | None = None
"""Set by :func:`configure_logging` for the JSON format."""


class RelaygateLogger:
    """The logger relaygate's own events go to, honouring ``telemetry.logs`` without ever
    changing the host application's logging.

    Events below ``level`` are dropped. The rest go, at each call:

    * through the host's structlog configuration, when structlog has been configured
      (``structlog.configure``: by the host application, by ``relaygate serve`` through
      :func:`configure_logging`, or by ``structlog.testing.capture_logs``): the host's
      processors, renderer and output apply, under the logger name ``relaygate``;
    * otherwise through relaygate's own processors in ``fmt`` (:func:`processors`), written
      to standard output. structlog's global configuration is left untouched.
    """

    __slots__ = ("_host", "_level", "_own")

    def __init__(
        self, level: str = "info", fmt: str = "auto", env: Mapping[str, str] | None = None
    ):
        self._level, concrete = resolve_settings(level, fmt, env)
        self._own: Any = structlog.wrap_logger(
            _Stdout(),
            processors=processors(concrete),
            wrapper_class=structlog.make_filtering_bound_logger(self._level),
            cache_logger_on_first_use=True,
        )
        self._host: Any = structlog.get_logger("relaygate")

    def _sink(self) -> Any:
        return self._host if structlog.is_configured() else self._own

    def is_enabled_for(self, level: int) -> bool:
        """Whether an event at ``level`` (a :mod:`logging` level) would be logged, so a
        caller can skip building a line that would be dropped."""
        return self._level <= level

    def _emit(self, method: str, level: int, event: str, fields: dict[str, Any]) -> None:
        own = _own_lines
        if own is not None and own.in_force():
            if own.level <= level:
                own.write(method, event, fields)
            return
        getattr(self._sink(), method)(event, **fields)

    def debug(self, event: str, **fields: Any) -> None:
        """Log ``event`` at debug level."""
        if self._level <= logging.DEBUG:
            self._emit("debug", logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        """Log ``event`` at info level."""
        if self._level <= logging.INFO:
            self._emit("info", logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        """Log ``event`` at warning level."""
        if self._level <= logging.WARNING:
            self._emit("warning", logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        """Log ``event`` at error level."""
        if self._level <= logging.ERROR:
            self._emit("error", logging.ERROR, event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """Log ``event`` at error level with the exception being handled."""
        if self._level <= logging.ERROR:
            self._sink().exception(event, **fields)


def configure_logging(
    level: str = "info", fmt: str = "auto", env: Mapping[str, str] | None = None
) -> None:
    """Configure structlog globally for a relaygate process (``relaygate serve``).

    ``RELAYGATE_LOG_LEVEL`` and ``RELAYGATE_LOG_FORMAT`` in ``env`` (default: the process
    environment) override the arguments. ``fmt`` ``auto`` picks ``console`` on a terminal and
    ``json`` otherwise. Library users who configure structlog themselves need not call this.
    """
    global _own_lines
    levelno, fmt = resolve_settings(level, fmt, env)
    # JSON lines are rendered to bytes and written to stdout's buffer, skipping a decode and
    # print() per line; both loggers flush every line.
    factory: Any = (
        structlog.PrintLoggerFactory(sys.stdout)
        if fmt == "console"
        else structlog.BytesLoggerFactory(sys.stdout.buffer)
    )
    chain = processors(fmt)
    # relaygate's own lines skip structlog's logger machinery while this stays in force.
    _own_lines = None if fmt == "console" else _OwnJsonLines(chain, sys.stdout.buffer, levelno)
    structlog.configure(
        processors=chain,
        wrapper_class=structlog.make_filtering_bound_logger(levelno),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    for name in STDLIB_LOGGERS:
        stdlib = logging.getLogger(name)
        for handler in [h for h in stdlib.handlers if isinstance(h, StructlogHandler)]:
            stdlib.removeHandler(handler)
        stdlib.addHandler(StructlogHandler())
        stdlib.setLevel(levelno)
        stdlib.propagate = False


STDLIB_LOGGERS = ("relaygate", "opentelemetry")
"""Standard-library loggers whose records :func:`configure_logging` routes into the
structured log (the OTLP exporters' warnings, for instance), instead of plain text."""


class StructlogHandler(logging.Handler):
    """A ``logging`` handler that writes each record as a structured line: the message as
    ``event``, the stdlib logger's name as ``logger``, an exception as ``exception``."""

    def emit(self, record: logging.LogRecord) -> None:
        """Forward ``record`` to the ``relaygate`` structlog logger at its level."""
        try:
            fields: dict[str, Any] = {"logger": record.name}
            if record.exc_info:
                fields["exc_info"] = record.exc_info
            structlog.get_logger("relaygate").log(record.levelno, record.getMessage(), **fields)
        except Exception:
            self.handleError(record)
