"""Which client request headers a config may forward upstream (``forward_headers``).

Hop-by-hop and framing headers (``host``, ``content-length``, ``transfer-encoding``,
``connection``...) are never forwarded: relaygate frames the upstream request itself, and a
forwarded ``content-length`` would truncate or stall the body. relaygate's own ``x-portkey-*``
headers carry gateway keys and configs and are never forwarded either. Credential headers
(``authorization``, ``cookie``, ``x-api-key``...) are forwarded only from configs the operator
wrote, or from a caller's config when the server config lists them in
``security.forward_sensitive_headers``.
"""

from __future__ import annotations

from typing import Final

NEVER_FORWARDED: Final = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "content-encoding",
        "accept-encoding",
        "http2-settings",
    }
)
"""Hop-by-hop and framing headers (RFC 9110 section 7.6.1 and the body's own framing)."""

NEVER_FORWARDED_PREFIXES: Final = ("x-portkey-", ":")
"""relaygate's own request headers, and HTTP/2 pseudo-headers."""

SENSITIVE: Final = frozenset(
    {"authorization", "cookie", "x-api-key", "api-key", "x-goog-api-key", "set-cookie"}
)
"""Credential headers: forwarded from a caller's config only when the operator allows it."""


def never_forwarded(name: str) -> bool:
    """Whether header ``name`` (lower-case) is refused in any ``forward_headers``."""
    return name in NEVER_FORWARDED or name.startswith(NEVER_FORWARDED_PREFIXES)


def forwarding_issue(name: str) -> str | None:
    """Why ``name`` may never be forwarded, or ``None``."""
    if name.startswith(NEVER_FORWARDED_PREFIXES):
        return f"'{name}' is relaygate's own header and is never forwarded"
    if name in NEVER_FORWARDED:
        return f"'{name}' is a hop-by-hop or framing header and is never forwarded"
    return None
