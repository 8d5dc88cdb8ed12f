"""`relaygate serve` with tail sampling exports the fallback's trace and drops clean successes
(``keep_ok_ratio: 0``), while metrics still count every request."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import MockFactory
from tests.servers import running_gateway, serve_in_thread
from tests.telemetry.test_otlp_export_e2e import otlp_env, receiver

CLEAN_REQUESTS = 5


def _target(name: str, url: str) -> dict[str, Any]:
    return {"name": name, "provider": "openai", "api_key": "sk-x", "custom_host": f"{url}/v1"}


def test_a_fallback_trace_is_exported_while_clean_successes_are_dropped(
    tmp_path: Path, mock_upstream: MockFactory
) -> None:
    down = mock_upstream(name="down", error_rate=1.0, error_status=503)
    healthy = mock_upstream(name="healthy")
    store: list[dict[str, Any]] = []
    config = {
        "default_config": "clean",
        "configs": {
            "clean": _target("healthy", healthy.url),
            "fallback": {
                "strategy": {"mode": "fallback"},
                "targets": [_target("primary", down.url), _target("backup", healthy.url)],
            },
        },
        "telemetry": {
            "service_name": "relaygate-tail",
            "traces": {"detail": "full", "tail_sampling": {"keep_ok_ratio": 0}},
        },
    }
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    with (
        serve_in_thread(receiver(store)) as collector,
        running_gateway(tmp_path, config, otlp_env(collector.url)) as gw,
    ):
        url = f"{gw.url}/v1/chat/completions"
        for _ in range(CLEAN_REQUESTS):
            assert httpx.post(url, json=body, timeout=30).status_code == 200
        fell_back = httpx.post(url, json=body, headers={"x-portkey-config": "fallback"}, timeout=30)
        assert fell_back.status_code == 200
        assert fell_back.headers["x-relaygate-route"].startswith("config.targets[0]:503")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(s["kind"] == 2 for s in store):
            time.sleep(0.1)
        metrics = httpx.get(f"{gw.url}/metrics", timeout=10).text
    # Spans leave in the order they were handed over: had the clean requests' spans been
    # kept, they would have arrived no later than the fallback's.
    (server,) = [s for s in store if s["kind"] == 2]  # SPAN_KIND_SERVER
    assert server["attributes"]["relaygate.sampling.reason"] == "fallback"
    assert {s["trace_id"] for s in store} == {server["trace_id"]}
    attempts = [s for s in store if s["kind"] == 3]  # SPAN_KIND_CLIENT
    assert [s["attributes"]["relaygate.target.name"] for s in attempts] == ["primary", "backup"]
    assert sample(
        metrics, "relaygate_traces_sampled_total", 'decision="dropped",reason="ratio"'
    ) == (CLEAN_REQUESTS)
    assert (
        sample(metrics, "relaygate_traces_sampled_total", 'decision="kept",reason="fallback"') == 1
    )
    assert sample(metrics, "relaygate_trace_spans_total", 'decision="kept"') == len(store)
    ok = 'config="clean",operation="chat",outcome="ok",status_class="2xx"'
    assert sample(metrics, "relaygate_requests_total", ok) == CLEAN_REQUESTS


def sample(exposition: str, name: str, labels: str) -> float:
    """The value of the sample ``name{labels}`` in a Prometheus text exposition (labels in
    the exposition's order: sorted by name)."""
    prefix = f"{name}{{{labels}}} "
    (line,) = [line for line in exposition.splitlines() if line.startswith(prefix)]
    return float(line[len(prefix) :].split()[0])
