"""The one module that does network I/O to upstream providers.

:class:`UpstreamClient` is the small interface the pipeline depends on. The production
default, :func:`default_upstream`, is httpx's API over the aiohttp transport (the fastest
wire client measured for this job; see ``benchmarks/``), while a user's own
``httpx.AsyncClient`` (or one on ``httpx.MockTransport`` in tests) plugs in unchanged.

Failures never escape as exceptions: a network error becomes :class:`UpstreamFailure`, which
the caller turns into a synthesized answer with a bounded reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

import httpx
from httpx_aiohttp import AiohttpTransport

from relaygate.providers.base import UpstreamRequest


@dataclass(slots=True)
class UpstreamResponse:
    """The upstream's answer: status, lower-case headers, and a complete body or a stream."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    stream: UpstreamStream | None = None


class UpstreamFailure(Exception):
    """The upstream could not be reached or dropped the connection before answering."""


class StreamInterrupted(Exception):
    """A stream ended abnormally after it had started (connection cut or idle timeout)."""


class UpstreamClient(Protocol):
    """Sends :class:`UpstreamRequest` objects; the pipeline's only route to the network."""

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """Send ``request``; raise :class:`UpstreamFailure` on a network error.

        For a streaming request the body is not read: ``stream`` iterates it.
        """
        ...

    async def aclose(self) -> None:
        """Close pooled connections."""
        ...


@dataclass(slots=True)
class UpstreamStream:
    """Raw bytes of a streamed answer, as they arrive.

    Iteration raises :class:`StreamInterrupted` if the connection breaks or no chunk arrives
    within ``idle_timeout_s``; ``aclose`` releases the connection early.
    """

    response: httpx.Response
    idle_timeout_s: float | None = None
    _iter: AsyncIterator[bytes] | None = field(default=None, init=False)

    def __aiter__(self) -> UpstreamStream:
        return self

    async def __anext__(self) -> bytes:
        if self._iter is None:
            self._iter = self.response.aiter_raw()
        try:
            while True:
                if self.idle_timeout_s is None:
                    chunk = await self._iter.__anext__()
                else:
                    async with asyncio.timeout(self.idle_timeout_s):
                        chunk = await self._iter.__anext__()
                if chunk:
                    return chunk
        except StopAsyncIteration:
            await self.response.aclose()
            raise
        except TimeoutError as exc:
            await self.response.aclose()
            raise StreamInterrupted(f"no data from upstream for {self.idle_timeout_s:g}s") from exc
        except httpx.HTTPError as exc:
            await self.response.aclose()
            raise StreamInterrupted(f"upstream stream broke: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        """Release the connection without reading the rest."""
        await self.response.aclose()


class HttpxUpstream:
    """:class:`UpstreamClient` over an ``httpx.AsyncClient`` (any transport)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """See :meth:`UpstreamClient.send`."""
        built = self._client.build_request(
            request.method, request.url, headers=request.headers, content=request.content
        )
        try:
            response = await self._client.send(built, stream=True)
        except httpx.HTTPError as exc:
            raise UpstreamFailure(f"{type(exc).__name__} calling upstream") from exc
        headers = {k.lower(): v for k, v in response.headers.items()}
        content_type = headers.get("content-type", "")
        if request.stream and response.status_code < 300 and "event-stream" in content_type:
            return UpstreamResponse(
                status=response.status_code,
                headers=headers,
                stream=UpstreamStream(response, request.idle_timeout_s),
            )
        try:
            body = await response.aread()
        except httpx.HTTPError as exc:
            raise UpstreamFailure(f"{type(exc).__name__} reading upstream answer") from exc
        finally:
            await response.aclose()
        return UpstreamResponse(status=response.status_code, headers=headers, body=body)

    async def aclose(self) -> None:
        """See :meth:`UpstreamClient.aclose`."""
        await self._client.aclose()


POOL_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
"""Connection pool bounds of the default client."""


def default_upstream() -> HttpxUpstream:
    """The production client: httpx's API on the aiohttp transport, one shared pool.

    Per-attempt timeouts are enforced by the timeout layer and the request deadline, so the
    client itself sets none.
    """
    return HttpxUpstream(
        httpx.AsyncClient(
            transport=AiohttpTransport(limits=POOL_LIMITS), timeout=None, limits=POOL_LIMITS
        )
    )
