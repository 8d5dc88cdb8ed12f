"""relaygate: an observability-first AI gateway.

Public names: :func:`create_app` (the ASGI app, standalone or mounted), :class:`AsyncTransport`
(the gateway in-process behind an ``httpx.AsyncClient``), :class:`Gateway` and
:class:`GatewayDeps` (the core and its injected side effects).

The names are imported on first use, so ``from relaygate import AsyncTransport`` (the
in-process edge) does not load Starlette, which only the ASGI app needs.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relaygate.app import create_app
    from relaygate.gateway import Gateway, GatewayDeps
    from relaygate.transport import AsyncTransport

__all__ = ["AsyncTransport", "Gateway", "GatewayDeps", "create_app"]

_HOMES = {
    "create_app": "relaygate.app",
    "Gateway": "relaygate.gateway",
    "GatewayDeps": "relaygate.gateway",
    "AsyncTransport": "relaygate.transport",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'relaygate' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value
