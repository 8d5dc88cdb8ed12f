"""Gateway authentication: the caller must present one of the configured gateway keys.

The key is read from ``x-portkey-api-key`` (what the Portkey SDK sends) or, failing that,
``Authorization: Bearer`` (what the openai SDK sends). With no keys configured the layer is
left out of the stack entirely.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection

from relaygate.errors import GatewayError
from relaygate.exchange import GatewayRequest, GatewayResponse
from relaygate.exporters import semconv as sc
from relaygate.pipeline import Handler
from relaygate.telemetry import Telemetry


def bearer(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value, if that is its form."""
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class AuthLayer:
    """Refuses requests without a valid gateway key with 401 ``authentication_error``."""

    def __init__(self, keys: Collection[str], telemetry: Telemetry) -> None:
        self._keys = tuple(k.encode() for k in keys)
        self._tel = telemetry

    def __call__(self, inner: Handler) -> Handler:
        keys = self._keys
        tel = self._tel

        async def auth(request: GatewayRequest) -> GatewayResponse:
            with tel.layer_span(sc.SPAN_AUTH):
                key = request.headers.get("x-portkey-api-key") or bearer(
                    request.headers.get("authorization")
                )
                if key is None or not _known(key.encode(), keys):
                    raise GatewayError(
                        401,
                        "missing or invalid gateway API key: send it as x-portkey-api-key "
                        "or Authorization: Bearer",
                        type="authentication_error",
                        code="invalid_api_key",
                    )
            return await inner(request)

        return auth


def _known(key: bytes, keys: tuple[bytes, ...]) -> bool:
    found = False
    for candidate in keys:
        found |= hmac.compare_digest(key, candidate)
    return found
