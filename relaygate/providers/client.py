"""The one module that does network I/O to upstream providers.

:class:`UpstreamClient` is the small interface the pipeline depends on. The production
default, :func:`default_upstream`, is :class:`AiohttpUpstream` (the cheapest wire client
measured for this job; see ``benchmarks/``), while a user's own ``httpx.AsyncClient`` (or
one on ``httpx.MockTransport`` in tests) plugs in unchanged through :class:`HttpxUpstream`.

Failures never escape as exceptions: a network error becomes :class:`UpstreamFailure`, which
the caller turns into a synthesized answer with a bounded reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import httpx

from relaygate.exchange import STREAM_BROKE as STREAM_BROKE
from relaygate.exchange import ByteSource, ResponseStream
from relaygate.exchange import StreamInterrupted as StreamInterrupted
from relaygate.exchange import StreamStalled as StreamStalled
from relaygate.providers.base import UpstreamRequest
from relaygate.security.egress import EgressDenied, GuardedResolver


@dataclass(slots=True)
class UpstreamResponse:
    """The upstream's answer: status, lower-case headers, and a complete body or a stream."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    stream: UpstreamStream | None = None


class UpstreamFailure(Exception):
    """The upstream could not be reached or dropped the connection before answering."""


class EgressRefused(UpstreamFailure):
    """The egress policy refused the destination; nothing was sent. The message says why."""


def check_egress(request: UpstreamRequest) -> None:
    """Raise :class:`EgressRefused` when ``request`` has an egress policy its URL breaks."""
    if request.egress is not None:
        why = request.egress.check_url(request.url)
        if why is not None:
            raise EgressRefused(f"refused by the egress policy: {why}")


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


class UpstreamStream:
    """Raw bytes of a streamed answer, as the wire client reads them: what a
    :class:`~relaygate.exchange.ResponseStream` reads directly, one frame per chunk.

    ``read`` answers the next chunk (``b""`` at the end, as aiohttp's ``readany`` does);
    ``close`` releases the connection; ``errors`` are the wire client's exception types
    meaning the connection broke (the stream's ``drops``); ``idle_timeout_s`` is the
    request's bound on the gaps between chunks (``None``: unbounded), which the response
    stream's idle watchdog applies. :meth:`relay` makes that stream.
    """

    __slots__ = ("_close", "errors", "idle_timeout_s", "read")

    def __init__(
        self,
        read: Callable[[], Awaitable[bytes]],
        close: Callable[[], Awaitable[None]],
        errors: tuple[type[Exception], ...],
        idle_timeout_s: float | None = None,
    ) -> None:
        self.read = read
        self._close = close
        self.errors = errors
        self.idle_timeout_s = idle_timeout_s

    @classmethod
    def of(
        cls,
        chunks: AsyncIterator[bytes],
        close: Callable[[], Awaitable[None]],
        errors: tuple[type[Exception], ...],
        idle_timeout_s: float | None = None,
    ) -> UpstreamStream:
        """The stream reading ``chunks``, an async iterator that yields no empty chunk."""
        return cls(chunks.__anext__, close, errors, idle_timeout_s)

    @property
    def __anext__(self) -> Callable[[], Awaitable[bytes]]:
        """The raw read itself (the next chunk, ``b""`` at the end), so that a reader that
        binds ``source.__anext__`` once (a :class:`~relaygate.exchange.ByteSource`'s reader)
        calls the wire client's read with no frame of relaygate's in between. Not an
        iterator for ``async for``: :meth:`relay` makes the stream to iterate."""
        return self.read

    def relay(
        self,
        source: ByteSource | None = None,
        *,
        breaks: tuple[type[Exception], ...] = (),
        break_event: Callable[[str], bytes] | None = None,
    ) -> ResponseStream:
        """The pipeline's :class:`~relaygate.exchange.ResponseStream` over this stream (or
        over ``source``, a reader of it such as a translation), with its drops and idle
        bound."""
        return ResponseStream(
            self if source is None else source,
            breaks=breaks,
            break_event=break_event,
            drops=self.errors,
            idle_timeout_s=self.idle_timeout_s,
        )

    async def aclose(self) -> None:
        """Release the connection without reading the rest (harmless once released)."""
        await self._close()


def _is_stream(request: UpstreamRequest, status: int, headers: dict[str, str]) -> bool:
    """Whether to hand the answer on as a stream: a streaming request answered 2xx SSE (or
    one of the request's ``stream_content_types``)."""
    if not request.stream or status >= 300:
        return False
    kind = headers.get("content-type", "")
    return "event-stream" in kind or any(t in kind for t in request.stream_content_types)


class HttpxUpstream:
    """:class:`UpstreamClient` over an ``httpx.AsyncClient`` (any transport).

    Redirects are never followed. For a caller-chosen destination the URL is checked against
    the egress policy (scheme, port, host pattern, literal addresses); name resolution is the
    injected client's own, so the connect-time address check of :class:`AiohttpUpstream`
    does not apply.
    """

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """See :meth:`UpstreamClient.send`."""
        check_egress(request)
        # Header values go out as UTF-8, as aiohttp sends them (httpx would refuse non-ASCII).
        wire_headers = [(name.encode(), value.encode()) for name, value in request.headers.items()]
        built = self._client.build_request(
            request.method, request.url, headers=wire_headers, content=request.content
        )
        try:
            response = await self._client.send(built, stream=True, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise UpstreamFailure(f"{type(exc).__name__} calling upstream") from exc
        headers = {k.lower(): v for k, v in response.headers.items()}
        if _is_stream(request, response.status_code, headers):
            # httpx yields no empty chunk (its chunker drops them).
            stream = UpstreamStream.of(
                response.aiter_raw(), response.aclose, (httpx.HTTPError,), request.idle_timeout_s
            )
            return UpstreamResponse(status=response.status_code, headers=headers, stream=stream)
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


class AiohttpUpstream:
    """:class:`UpstreamClient` on aiohttp: the production default, the cheapest wire client.

    One pooled ``ClientSession`` (created on first use, in the running event loop) serves
    every operator-chosen host with keep-alive. Caller-chosen destinations (requests with an
    ``egress`` policy) go through a second session whose resolver drops every address the
    policy refuses (:class:`~relaygate.security.egress.GuardedResolver`), so the check
    holds at connect time, after DNS. Bodies are passed through as received: no
    decompression, no redirects, no client-side timeouts (the timeout layer and the request
    deadline bound every attempt). ``resolver`` replaces aiohttp's default name resolver
    (an ``aiohttp.abc.AbstractResolver``) under the guard. ``limit`` caps the open upstream
    connections of one session: high enough that one process holds thousands of concurrent
    streams (each holds its connection to the end), below which the open-files limit bounds.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        limit: int = 10_000,
        resolver: Any = None,
    ) -> None:
        self._session = session
        self._guarded: aiohttp.ClientSession | None = None
        self._limit = limit
        self._resolver = resolver

    def _new_session(self, resolver: Any = None) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=300, resolver=resolver)
        return aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None),
            skip_auto_headers=("User-Agent",),
        )

    def _open(self, request: UpstreamRequest) -> aiohttp.ClientSession:
        if request.egress is not None:
            guarded = self._guarded
            if guarded is None or guarded.closed:
                resolver = GuardedResolver(request.egress, self._resolver)
                guarded = self._guarded = self._new_session(resolver)
            return guarded
        session = self._session
        if session is None or session.closed:
            session = self._session = self._new_session()
        return session

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """See :meth:`UpstreamClient.send`."""
        check_egress(request)
        session = self._open(request)
        try:
            response = await session.request(
                request.method,
                request.url,
                data=request.content,
                headers=request.headers,
                allow_redirects=False,
            )
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, EgressDenied):
                raise EgressRefused(str(exc.os_error)) from exc
            raise UpstreamFailure(f"{type(exc).__name__} calling upstream") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamFailure(f"{type(exc).__name__} calling upstream") from exc
        headers = {k.lower(): v for k, v in response.headers.items()}
        status = response.status
        if _is_stream(request, status, headers):
            stream = UpstreamStream(
                response.content.readany,
                _releaser(response),
                (aiohttp.ClientError, OSError),
                request.idle_timeout_s,
            )
            return UpstreamResponse(status=status, headers=headers, stream=stream)
        try:
            body = await response.read()
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamFailure(f"{type(exc).__name__} reading upstream answer") from exc
        finally:
            response.release()
        return UpstreamResponse(status=status, headers=headers, body=body)

    async def aclose(self) -> None:
        """See :meth:`UpstreamClient.aclose`."""
        for session in (self._session, self._guarded):
            if session is not None:
                await session.close()
        self._session = self._guarded = None


def _releaser(response: aiohttp.ClientResponse) -> Callable[[], Awaitable[None]]:
    async def release() -> None:
        response.release()

    return release


def default_upstream() -> UpstreamClient:
    """The production client: :class:`AiohttpUpstream`.

    Users who want httpx (their own transport, proxies, mTLS) inject
    ``HttpxUpstream(httpx.AsyncClient(...))`` through ``GatewayDeps(upstream=...)``.
    """
    return AiohttpUpstream()
