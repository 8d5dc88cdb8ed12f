"""Shared fixtures: fault-simulator upstreams on loopback, fresh telemetry sinks."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, settings
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from relaygate.exporters.prometheus import GatewayMetrics
from relaygate.exporters.spans import LeanTracer
from relaygate.mock import MockSettings, create_mock_app, parse_faults
from relaygate.telemetry import Telemetry
from tests.servers import RunningServer, serve_in_thread
from tests.tools import track

MockFactory = Callable[..., RunningServer]

# Property tests: "ci" (the default) draws the same examples on every run, so a failure
# reproduces; HYPOTHESIS_PROFILE=explore draws new, more numerous ones each run.
_PROPERTY_SETTINGS = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("ci", max_examples=200, derandomize=True, **_PROPERTY_SETTINGS)
settings.register_profile("explore", max_examples=1000, **_PROPERTY_SETTINGS)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Note the test being run, so ``tests.tools.require_tool`` can check its markers."""
    track(item)


@pytest.fixture
def mock_upstream() -> Iterator[MockFactory]:
    """Start fault-simulator upstreams: ``mock_upstream(name="a", script="503,200")``."""
    with ExitStack() as stack:

        def start(name: str = "mock", script: str = "", **kw: Any) -> RunningServer:
            settings = MockSettings(name=name, script=parse_faults(script), **kw)
            return stack.enter_context(serve_in_thread(create_mock_app(settings)))

        yield start


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """An in-memory span sink."""
    return InMemorySpanExporter()


@pytest.fixture
def telemetry(spans: InMemorySpanExporter) -> Iterator[Telemetry]:
    """Telemetry writing spans to ``spans`` (through the production tracer) and metrics to a
    fresh registry."""
    provider = TracerProvider()
    processor = SimpleSpanProcessor(spans)
    provider.add_span_processor(processor)
    yield Telemetry(
        tracer=LeanTracer.of(provider, processor),
        metrics=GatewayMetrics(CollectorRegistry()),
        logger=structlog.get_logger("relaygate"),
        detail="full",
    )
    provider.shutdown()
