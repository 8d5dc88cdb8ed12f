"""The timeout series the dashboard and alerts read count every attempt the timeout cut.

``relaygate serve`` runs on uvloop, whose timers have millisecond granularity: this test runs
the gateway in-process on uvloop against an upstream that never answers, so every attempt is
cut by the target's ``request_timeout``. A timer that fires a fraction of a millisecond
before the attempt's deadline must still count as that attempt's timeout, not as a client
that went away.
"""

from __future__ import annotations

from typing import Any

import uvloop

from relaygate.telemetry import Telemetry
from tests.conftest import MockFactory
from tests.inprocess import asgi_client, gateway_app

REQUESTS = 12
"""Requests sent; each makes one attempt per target, every one cut by its timeout."""

TIMEOUTS_MS = (25, 30, 35, 45, 55)
"""``request_timeout`` of the targets of the fallback chain: several values, because whether
a millisecond timer fires a hair early depends on the sub-millisecond arithmetic."""


async def _send_all(app: Any) -> list[int]:
    statuses: list[int] = []
    async with asgi_client(app, "http://gateway") as client:
        for _ in range(REQUESTS):
            response = await client.post(
                "/v1/chat/completions",
                json={"model": "any", "messages": [{"role": "user", "content": "hi"}]},
            )
            statuses.append(response.status_code)
    await app.state.gateway.aclose()
    return statuses


def test_every_attempt_cut_by_request_timeout_is_counted_as_a_timeout_on_uvloop(
    mock_upstream: MockFactory, telemetry: Telemetry
) -> None:
    """60 attempts cut at ``request_timeout`` read 60 timeouts and no cancelled attempt."""
    hang = mock_upstream(name="hang", script="hang", loop_script=True)
    targets = [
        {
            "name": f"t{ms}",
            "provider": "openai",
            "api_key": "test-key",
            "custom_host": f"{hang.url}/v1",
            "request_timeout": ms,
        }
        for ms in TIMEOUTS_MS
    ]
    config = {"default_config": {"strategy": {"mode": "fallback"}, "targets": targets}}
    app = gateway_app(config, telemetry)
    statuses = uvloop.run(_send_all(app))
    assert statuses == [408] * REQUESTS
    registry = telemetry.metrics.registry
    counted: dict[str, dict[str, float | None]] = {}
    for ms in TIMEOUTS_MS:
        target = {"config": "default", "target": f"t{ms}", "provider": "openai", "model": "other"}
        attempts = "relaygate_upstream_attempts_total"
        counted[f"t{ms}"] = {
            "timeout": registry.get_sample_value(
                attempts, {**target, "status_class": "none", "reason": "timeout"}
            ),
            "cancelled": registry.get_sample_value(
                attempts, {**target, "status_class": "none", "reason": "cancelled"}
            ),
            "timeouts_total": registry.get_sample_value("relaygate_timeouts_total", target),
        }
    expected = {"timeout": REQUESTS, "cancelled": None, "timeouts_total": REQUESTS}
    assert counted == {f"t{ms}": expected for ms in TIMEOUTS_MS}
