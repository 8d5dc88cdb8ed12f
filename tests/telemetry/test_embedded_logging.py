"""Embedded relaygate honours ``telemetry.logs`` for its own logger and leaves the host's
logging alone; ``relaygate serve`` routes standard-library warnings into its JSON lines."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import structlog
from structlog.testing import capture_logs

import relaygate
from relaygate.exporters.logging import STDLIB_LOGGERS, configure_logging
from tests.conftest import MockFactory

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(autouse=True)
def _unconfigured() -> Iterator[None]:
    """Each test starts, and leaves, structlog and the stdlib loggers unconfigured."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
    for name in STDLIB_LOGGERS:
        stdlib = logging.getLogger(name)
        stdlib.handlers.clear()
        stdlib.propagate = True
        stdlib.setLevel(logging.NOTSET)


def server(upstream: str, **logs: Any) -> dict[str, Any]:
    return {
        "default_config": {"provider": "openai", "api_key": "sk-x", "custom_host": upstream},
        "telemetry": {"logs": logs},
    }


async def one_request(config: dict[str, Any]) -> int:
    transport = relaygate.AsyncTransport(config)
    async with httpx.AsyncClient(transport=transport, base_url="http://relaygate") as client:
        response = await client.post("/v1/chat/completions", json=CHAT)
    await transport.aclose()
    return response.status_code


async def test_embedded_info_json_writes_one_request_line_and_no_debug(
    mock_upstream: MockFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    up = mock_upstream()
    assert await one_request(server(f"{up.url}/v1", level="info", format="json")) == 200
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["event"], line["level"]) for line in lines] == [("request", "info")]
    assert not structlog.is_configured(), "the host's structlog configuration was changed"


async def test_embedded_level_warning_writes_nothing_for_a_good_request(
    mock_upstream: MockFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    up = mock_upstream()
    assert await one_request(server(f"{up.url}/v1", level="warning", format="console")) == 200
    assert capsys.readouterr().out == ""


async def test_a_host_that_configured_structlog_receives_relaygates_lines_at_its_level(
    mock_upstream: MockFactory,
) -> None:
    up = mock_upstream()
    with capture_logs() as logs:
        assert await one_request(server(f"{up.url}/v1", level="info")) == 200
    assert [entry["event"] for entry in logs] == ["request"]


def test_exceptions_are_plain_tracebacks_without_local_variables(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The logger an embedded gateway gets, with structlog unconfigured (whose default
    # renderer would print every frame's local variables).
    config = {"telemetry": {"logs": {"level": "info", "format": "console"}}}
    logger = relaygate.AsyncTransport(config).gateway.telemetry.logger

    def fail(secret: str) -> None:
        raise RuntimeError("boom")

    canary = "-".join(["sk", "local", "canary"])  # in a local variable, not in the source
    try:
        fail(canary)
    except RuntimeError:
        logger.exception("internal_error")
    out = capsys.readouterr().out
    assert "RuntimeError: boom" in out and "Traceback" in out
    assert canary not in out


def test_serve_routes_stdlib_warnings_into_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json", env={})
    logging.getLogger("relaygate.exporters.otlp_http").warning("export failed: %s", "refused")
    logging.getLogger("opentelemetry.sdk.trace").warning("queue full")
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["event"], line["logger"], line["level"]) for line in lines] == [
        ("export failed: refused", "relaygate.exporters.otlp_http", "warning"),
        ("queue full", "opentelemetry.sdk.trace", "warning"),
    ]
    assert capsys.readouterr().err == ""
