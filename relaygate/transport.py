"""The in-process edge: an httpx transport that runs the gateway without a network hop.

``openai.AsyncOpenAI(base_url="http://relaygate/v1", api_key=...,
http_client=httpx.AsyncClient(transport=relaygate.AsyncTransport(config)))`` sends every
SDK call through the same pipeline (fallbacks, retries, timeouts, telemetry) as the server,
inside the caller's event loop. The host part of the URL is ignored; the path picks the
operation (``.../chat/completions``, ``.../completions``, ``.../embeddings``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson

from relaygate.config.server import ServerConfig
from relaygate.config.source import server_config_of
from relaygate.edge import EdgeResponse
from relaygate.errors import GatewayError
from relaygate.exchange import CLIENT_DISCONNECTED, ClientLink, Operation, ResponseStream
from relaygate.frontdoor.anthropic_door import AnthropicCountTokensDoor, AnthropicMessagesDoor
from relaygate.frontdoor.door import FrontDoor, refuse_at
from relaygate.gateway import Gateway, GatewayDeps

_SUFFIXES: tuple[tuple[str, Operation], ...] = (
    ("/chat/completions", Operation.CHAT),
    ("/completions", Operation.TEXT_COMPLETION),
    ("/embeddings", Operation.EMBEDDINGS),
    ("/messages", Operation.CHAT),
    ("/messages/count_tokens", Operation.COUNT_TOKENS),
    ("/responses", Operation.RESPONSES),
)

_DOORS: dict[str, FrontDoor] = {
    "/messages": AnthropicMessagesDoor(),
    "/messages/count_tokens": AnthropicCountTokensDoor(),
}
"""Path suffixes served in another vendor's API (:mod:`relaygate.frontdoor`)."""


class _EdgeStream(httpx.AsyncByteStream):
    """An answer's :class:`ResponseStream` as the byte stream an ``httpx.Response`` reads.

    A caller closing the response before the stream ended has hung up on it: the request's
    :class:`ClientLink` says so (``client_disconnected``) before the stream is released.
    """

    def __init__(self, inner: ResponseStream, link: ClientLink) -> None:
        self._inner = inner
        self._link = link

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._inner

    async def aclose(self) -> None:
        if not self._inner.ended and self._link.cut is None:
            self._link.cut = CLIENT_DISCONNECTED
        await self._inner.aclose()


class AsyncTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` answering OpenAI-compatible calls through relaygate.

    ``config`` is as for :func:`relaygate.create_app`; ``deps`` injects the upstream client,
    telemetry and clocks. ``GET .../models`` lists the configured models.
    """

    def __init__(
        self,
        config: ServerConfig | Mapping[str, Any] | str | Path | None = None,
        deps: GatewayDeps | None = None,
    ) -> None:
        self.gateway = Gateway(server_config_of(config), deps)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Run ``request`` through the gateway and answer with its response."""
        path = request.url.path.rstrip("/")
        if request.method == "GET" and path.endswith("/models"):
            body = orjson.dumps({"object": "list", "data": self.gateway.models()})
            return httpx.Response(200, headers={"content-type": "application/json"}, content=body)
        operation = next((op for suffix, op in _SUFFIXES if path.endswith(suffix)), None)
        headers = {k.lower(): v for k, v in request.headers.items()}
        door = next((d for suffix, d in _DOORS.items() if path.endswith(suffix)), None)
        if door is not None and operation is not None and request.method == "POST":
            return await self._through_door(door, operation, request, door.headers(headers))
        if operation is None or request.method != "POST":
            status = 404 if operation is None else 405
            message = "unknown route" if operation is None else "method not allowed; use POST"
            refusal = GatewayError(status, f"{message}: {request.method} {path}")
            extra = [("allow", "POST")] if status == 405 else []
            answer = refuse_at(
                self.gateway, door, operation, headers, refusal, method=request.method, extra=extra
            )
            return httpx.Response(status, headers=answer.headers, content=answer.body)
        content = await request.aread()
        link = ClientLink()
        return _response(await self.gateway.handle(operation, content, headers, link), link)

    async def _through_door(
        self,
        door: FrontDoor,
        operation: Operation,
        request: httpx.Request,
        headers: dict[str, str],
    ) -> httpx.Response:
        """A call in another vendor's API: translated in, through the pipeline, and back."""
        route = door.route
        try:
            parsed, body = door.request(await request.aread())
        except GatewayError as exc:
            answer = refuse_at(self.gateway, door, operation, headers, exc)
            return httpx.Response(answer.status, headers=answer.headers, content=answer.body)
        link = ClientLink()
        answer = await self.gateway.handle(
            operation, body, headers, link, route=route, parsed=parsed
        )
        return _response(door.answer(answer), link)

    async def aclose(self) -> None:
        """Close the gateway's own upstream client."""
        await self.gateway.aclose()


def _response(response: EdgeResponse, link: ClientLink) -> httpx.Response:
    """The ``httpx.Response`` of a gateway answer (a stream stays a stream)."""
    if response.stream is None:
        return httpx.Response(response.status, headers=response.headers, content=response.body)
    return httpx.Response(
        response.status, headers=response.headers, stream=_EdgeStream(response.stream, link)
    )
