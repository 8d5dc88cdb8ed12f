"""Log lines: JSON or console, level and format from config or environment, trace ids joined."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider

from relaygate.exporters.logging import RelaygateLogger, configure_logging


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_json_lines_carry_the_current_trace_and_span_id(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json", env={})
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("request") as span:
        structlog.get_logger("relaygate").info("request", status=200)
    line = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])
    ctx = span.get_span_context()
    assert line["event"] == "request" and line["status"] == 200 and line["level"] == "info"
    assert line["trace_id"] == format(ctx.trace_id, "032x")
    assert line["span_id"] == format(ctx.span_id, "016x")


def test_environment_overrides_the_configured_level_and_format(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(
        "info", "json", env={"RELAYGATE_LOG_LEVEL": "warning", "RELAYGATE_LOG_FORMAT": "console"}
    )
    log = structlog.get_logger("relaygate")
    log.info("hidden")
    log.warning("shown", target="a")
    out = capsys.readouterr().out
    assert "hidden" not in out
    assert "shown" in out and "target" in out and not out.lstrip().startswith("{")


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("loud", "json", env={})


def test_timestamps_have_structlogs_iso_utc_format_and_follow_the_clock() -> None:
    import datetime as dt
    import re

    from relaygate.exporters.logging import IsoUtcTimestamp

    stamp = IsoUtcTimestamp()
    reference = structlog.processors.TimeStamper(fmt="iso", utc=True)
    ours = stamp(None, "info", {})["timestamp"]
    theirs = reference(None, "info", {})["timestamp"]
    pattern = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"
    assert re.fullmatch(pattern, ours) and re.fullmatch(pattern, theirs)
    parse = dt.datetime.fromisoformat
    assert abs((parse(theirs) - parse(ours)).total_seconds()) < 1
    later = [stamp(None, "info", {})["timestamp"] for _ in range(1000)]
    assert later == sorted(later) and later[0] >= ours


def test_relaygates_own_lines_are_the_lines_structlog_writes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Written without structlog's logger machinery, a line is the same line: same fields,
    same order, credentials masked, the configured level honoured."""
    configure_logging("info", "json", env={})
    fields: dict[str, Any] = {
        "status": 200,
        "route": "config.targets[0]:200",
        "attempts": [{"target_path": "config.targets[0]", "status": 200}],
        "key": None,
        "api_key": "sk-never-logged",
    }
    RelaygateLogger("debug", "json", {}).info("request", **fields)
    structlog.get_logger("relaygate").info("request", **fields)
    RelaygateLogger("debug", "json", {}).debug("below_the_configured_level")
    out = capsys.readouterr().out
    direct, via = (orjson.loads(line) for line in out.strip().splitlines())
    assert direct.pop("timestamp") and via.pop("timestamp")
    assert list(direct.items()) == list(via.items())
    assert direct["api_key"] == "***" and "sk-never-logged" not in out
    assert "below_the_configured_level" not in out
