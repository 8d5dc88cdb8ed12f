"""Errors the gateway itself raises, always answered in OpenAI's error shape.

``{"error": {"message", "type", "param", "code"}}`` is what the openai SDK parses into
``e.body``; every refusal the gateway makes (bad input, auth, config, exhausted targets)
uses it, with a status that maps to the SDK's matching exception class.
"""

from __future__ import annotations

from typing import Any

import orjson

from relaygate.exchange import GatewayResponse

JSON_HEADERS = {"content-type": "application/json"}


class GatewayError(Exception):
    """A refusal by the gateway, carried to the edge and rendered as an OpenAI-shaped error.

    ``message`` is shown to the client verbatim: it must never contain a credential or any
    raw input value that could be one.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def to_response(self) -> GatewayResponse:
        """The error as a complete JSON response."""
        return GatewayResponse(
            status=self.status,
            headers={**JSON_HEADERS, **self.headers},
            body=error_body(self.message, type=self.type, code=self.code, param=self.param),
            failure=None,
        )


def error_body(
    message: str, *, type: str, code: str | None = None, param: str | None = None
) -> bytes:
    """Serialise an OpenAI-shaped error object."""
    payload: dict[str, Any] = {
        "error": {"message": message, "type": type, "param": param, "code": code}
    }
    return orjson.dumps(payload)


def synthesized(
    status: int,
    message: str,
    *,
    type: str,
    code: str,
    failure: str,
    upstream_status: int | None = None,
) -> GatewayResponse:
    """A response the gateway makes up in place of an upstream answer (timeout, network error).

    ``failure`` is the bounded reason recorded in telemetry and the route story;
    ``upstream_status`` the status line the upstream had sent, if it sent one (a garbage
    body, a stream that broke before its first chunk), recorded on the attempt as sent.
    """
    return GatewayResponse(
        status=status,
        headers=dict(JSON_HEADERS),
        body=error_body(message, type=type, code=code),
        failure=failure,
        upstream_status=upstream_status,
    )
