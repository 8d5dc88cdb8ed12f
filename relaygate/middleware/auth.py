"""Gateway authentication: the caller must present one of the configured gateway keys.

The key is read from ``x-portkey-api-key`` (what the Portkey SDK sends) or, failing that,
``Authorization: Bearer`` (what the openai SDK sends), and looked up by its SHA-256 digest in
a :class:`~relaygate.security.keys.KeyStore`. Its :class:`~relaygate.security.keys.KeyScope`
is put on the request context for config resolution to enforce. The ASGI edge runs
:func:`authenticate` before it reads the body; the layer then only records the outcome.
With no keys configured the layer is left out of the stack entirely.
"""

from __future__ import annotations

from collections.abc import Mapping

from relaygate.errors import GatewayError
from relaygate.exchange import GatewayRequest, GatewayResponse
from relaygate.exporters import semconv as sc
from relaygate.pipeline import Handler
from relaygate.security.keys import KeyScope, KeyStore
from relaygate.telemetry import Telemetry


def bearer(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value, if that is its form."""
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The gateway key a request presents: ``x-portkey-api-key``, else the bearer token."""
    return headers.get("x-portkey-api-key") or bearer(headers.get("authorization"))


def authenticate(store: KeyStore, headers: Mapping[str, str]) -> KeyScope:
    """The scope of the key these (lower-case) headers present; 401 when it is unknown."""
    key = presented_key(headers)
    scope = store.lookup(key) if key is not None else None
    if scope is None:
        raise GatewayError(
            401,
            "missing or invalid gateway API key: send it as x-portkey-api-key "
            "or Authorization: Bearer",
            type="authentication_error",
            code="invalid_api_key",
            # RFC 6750: a 401 names the scheme the client should authenticate with.
            headers={"www-authenticate": "Bearer"},
        )
    return scope


class AuthLayer:
    """Refuses requests without a valid gateway key with 401 ``authentication_error``."""

    def __init__(self, store: KeyStore, telemetry: Telemetry) -> None:
        self._store = store
        self._tel = telemetry

    def __call__(self, inner: Handler) -> Handler:
        store = self._store
        tel = self._tel

        async def auth(request: GatewayRequest) -> GatewayResponse:
            with tel.layer_span(sc.SPAN_AUTH):
                ctx = request.ctx
                if ctx.principal is None:
                    ctx.principal = authenticate(store, request.headers)
            return await inner(request)

        return auth
