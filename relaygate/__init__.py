"""relaygate: an observability-first AI gateway.

Public names: :func:`create_app` (the ASGI app, standalone or mounted), :class:`AsyncTransport`
(the gateway in-process behind an ``httpx.AsyncClient``), :class:`Gateway` and
:class:`GatewayDeps` (the core and its injected side effects).
"""

from relaygate.app import create_app
from relaygate.gateway import Gateway, GatewayDeps
from relaygate.transport import AsyncTransport

__all__ = ["AsyncTransport", "Gateway", "GatewayDeps", "create_app"]
