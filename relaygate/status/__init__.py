"""The built-in live status page: per-config target health, latency and fallbacks.

:class:`StatusBoard` records finished requests (register :meth:`StatusBoard.record` as a
``Telemetry.request_hooks`` entry); :func:`status_routes` serves ``GET /status`` (the page)
and ``GET /status.json`` (the board's snapshot) from it.
"""

from relaygate.status.board import StatusBoard, health
from relaygate.status.page import status_routes

__all__ = ["StatusBoard", "health", "status_routes"]
