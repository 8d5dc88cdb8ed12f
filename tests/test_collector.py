"""The collector settings a served start-up applies (:mod:`relaygate.collector`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

import relaygate
from relaygate import collector

CONFIG = {"telemetry": {"logs": {"level": "error"}}}


@pytest.fixture
def thresholds() -> Iterator[None]:
    """Restore the process's collector thresholds (and unfreeze) after the test."""
    saved = gc.get_threshold()
    try:
        yield
    finally:
        gc.set_threshold(*saved)
        gc.unfreeze()


def test_settle_raises_the_default_young_threshold(thresholds: None) -> None:
    gc.set_threshold(collector.DEFAULT_YOUNG_THRESHOLD, 11, 12)
    collector.settle()
    assert gc.get_threshold() == (collector.YOUNG_THRESHOLD, 11, 12)
    assert gc.get_freeze_count() > 0


def test_settle_keeps_a_threshold_the_process_chose(thresholds: None) -> None:
    gc.set_threshold(1234, 10, 10)
    collector.settle()
    assert gc.get_threshold() == (1234, 10, 10)


def test_a_served_start_up_settles_the_collector(thresholds: None) -> None:
    gc.set_threshold(collector.DEFAULT_YOUNG_THRESHOLD, 10, 10)
    with TestClient(relaygate.create_app(CONFIG)) as client:
        assert client.get("/health").status_code == 200
        assert gc.get_threshold()[0] == collector.YOUNG_THRESHOLD
