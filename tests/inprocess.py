"""The gateway in-process: its ASGI app over a fake upstream, and an HTTP client of it.

Nothing here opens a socket: requests go through ``httpx.ASGITransport`` to the app, and the
app's upstream calls to an ``httpx.MockTransport`` (or another fake upstream client).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.types import ASGIApp

from relaygate.app import create_app
from relaygate.gateway import GatewayDeps
from relaygate.providers.client import UpstreamClient
from relaygate.telemetry import Telemetry
from tests.fakes import RecordingTransport


def gateway_app(
    config: Mapping[str, Any],
    telemetry: Telemetry,
    upstream: RecordingTransport | UpstreamClient | None = None,
    **deps: Any,
) -> Starlette:
    """relaygate's ASGI app for ``config`` recording into ``telemetry``, calling ``upstream``
    (a :class:`RecordingTransport` through its client; the production client when ``None``);
    ``deps`` are further :class:`GatewayDeps` fields (``sleep``, ``now``...)."""
    client = upstream.client() if isinstance(upstream, RecordingTransport) else upstream
    return create_app(config, GatewayDeps(upstream=client, telemetry=telemetry, **deps))


def asgi_client(app: ASGIApp, base_url: str = "http://relaygate") -> httpx.AsyncClient:
    """An HTTP client whose requests go to ``app`` in this event loop."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)
