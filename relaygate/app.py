"""The ASGI edge: OpenAI-compatible routes, ``/metrics``, health and readiness.

:func:`create_app` returns a Starlette app that runs standalone (``relaygate serve``) or
mounts into any Starlette/FastAPI app under a prefix (``Mount("/llm", app=...)``). Nothing
needs the host to forward lifespan events: the upstream client is created on the first
request, and the standalone server closes it at shutdown. The API routes are plain ASGI
callables (no ``BaseHTTPMiddleware``), so context variables (trace context, log context)
flow through untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from relaygate import collector
from relaygate.config.server import ServerConfig
from relaygate.config.source import server_config_of
from relaygate.drain import CLIENT_WATCH_KEY, EDGE_STATE_KEY, ClientWatch, Drain, EdgeState
from relaygate.errors import GatewayError, error_body
from relaygate.exchange import CLIENT_DISCONNECTED, GATEWAY_SHUTTING_DOWN, ClientLink, Operation
from relaygate.frontdoor.anthropic_door import (
    COUNT_TOKENS_ROUTE,
    AnthropicCountTokensDoor,
    AnthropicMessagesDoor,
)
from relaygate.frontdoor.door import FrontDoor, refuse_at
from relaygate.gateway import EdgeResponse, Gateway, GatewayDeps
from relaygate.middleware.auth import bearer, presented_key
from relaygate.openapi import openapi_document
from relaygate.reload import GatewayRef, Reloader, file_hash
from relaygate.security.keys import KeyScope, KeyStore
from relaygate.status import StatusBoard, status_routes

Endpoint = Callable[[Request], Awaitable[Response]]
"""A Starlette request/response endpoint."""

_ERROR_TYPES = {401: "authentication_error", 404: "not_found_error", 405: "invalid_request_error"}


class ApiEndpoint:
    """A raw ASGI endpoint for one OpenAI-compatible operation.

    With a ``door`` (:mod:`relaygate.frontdoor.door`), the endpoint serves another
    vendor's API over the same pipeline: headers, body and every answer pass through it.

    It reads the body (413 past ``limits.max_body_bytes``, 408 when it stalls for
    ``limits.body_idle_timeout_ms``), then answers while watching the connection: a client
    that goes away cancels the work at once, upstream call or stream included, and the
    request is recorded as ``client_disconnected``. Under relaygate's own server protocol
    the connection's :class:`~relaygate.drain.ClientWatch` (in the scope's extensions) does
    the watching; elsewhere a task per request waits for the ASGI disconnect message. When
    the app's :class:`Drain` ends, a request still running is cut: a stream ends with an
    in-band ``gateway_shutting_down`` error event, an unanswered request gets 503.
    """

    def __init__(
        self,
        gateway: Gateway | GatewayRef,
        operation: Operation,
        drain: Drain | None = None,
        door: FrontDoor | None = None,
    ) -> None:
        self._ref = gateway if isinstance(gateway, GatewayRef) else GatewayRef(gateway)
        self._operation = operation
        self._door = door
        if drain is None:
            drain = Drain(self._ref.current.server.shutdown.drain_timeout_ms / 1000)
        self._drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Read once: the whole request is served by this gateway, even if a config reload
        # swaps in another meanwhile.
        gateway = self._ref.current
        operation = self._operation
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        door = self._door
        if door is not None:
            headers = door.headers(headers)
        method: str = scope["method"]
        if method != "POST":
            refusal = GatewayError(405, "method not allowed; use POST", code="405")
            await send_edge(
                send,
                self._refuse(
                    gateway, operation, headers, refusal, method=method, extra=[("allow", "POST")]
                ),
            )
            return
        try:
            # Before a byte of the body is read: an unauthenticated caller costs nothing more.
            principal = gateway.authenticate(headers)
            declared = headers.get("content-length")
            if declared is not None and declared.isdigit():
                gateway.codec.check_size(int(declared))
        except GatewayError as exc:
            await send_edge(send, self._refuse(gateway, operation, headers, exc))
            return
        body = bytearray()
        more: bool | None = True
        watch = _client_watch(scope)
        idle_s = gateway.server.limits.body_idle_timeout_ms / 1000
        try:
            if watch is not None and watch.body_complete:
                # relaygate's protocol has the whole body: this read cannot stall.
                more = _take(await receive(), body, gateway)
            if more:
                loop = asyncio.get_running_loop()
                async with asyncio.timeout(None) as idle:
                    while more:
                        idle.reschedule(loop.time() + idle_s)
                        more = _take(await receive(), body, gateway)
            if more is None:
                return
        except GatewayError as exc:
            await send_edge(send, self._refuse(gateway, operation, headers, exc))
            return
        except TimeoutError:
            stalled = _body_stalled(idle_s)
            await send_edge(
                send,
                self._refuse(gateway, operation, headers, stalled, extra=[("connection", "close")]),
            )
            return
        await self._answer(gateway, bytes(body), headers, principal, receive, send, watch)

    async def _answer(
        self,
        gateway: Gateway,
        body: bytes,
        headers: dict[str, str],
        principal: KeyScope | None,
        receive: Receive,
        send: Send,
        watch: ClientWatch | None,
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        link = ClientLink()
        drain = self._drain
        drain.enter(task, link)
        # relaygate's own server protocol cuts the request when its connection is lost;
        # mounted in another server, a task waits for the ASGI disconnect message instead.
        watcher: asyncio.Task[None] | None = None
        if watch is not None:
            watch.hold(drain, task)
        else:
            watcher = asyncio.get_running_loop().create_task(_watch_client(receive, drain, task))
        response: EdgeResponse | None = None
        head_sent = False
        try:
            response = await self._handle(gateway, body, headers, link, principal)
            try:
                await send_head(send, response)
            except BaseException:
                await _discard(response)
                raise
            head_sent = True
            await send_rest(send, response)
        except asyncio.CancelledError:
            if link.cut is None or task.uncancel() > 0:
                raise
            if link.cut == GATEWAY_SHUTTING_DOWN:
                await _end_for_shutdown(send, response, head_sent)
        finally:
            drain.leave(task)
            if watcher is not None:
                watcher.cancel()
            elif watch is not None:
                watch.release(task)

    def _refuse(
        self,
        gateway: Gateway,
        operation: Operation,
        headers: dict[str, str],
        error: GatewayError,
        **kw: Any,
    ) -> EdgeResponse:
        """The gateway's refusal, in the door's shape (and on its route) when there is one."""
        return refuse_at(gateway, self._door, operation, headers, error, **kw)

    async def _handle(
        self,
        gateway: Gateway,
        body: bytes,
        headers: dict[str, str],
        link: ClientLink,
        principal: KeyScope | None,
    ) -> EdgeResponse:
        door = self._door
        if door is None:
            return await gateway.handle(self._operation, body, headers, link, principal)
        try:
            parsed, body = door.request(body)
        except GatewayError as exc:
            return self._refuse(gateway, self._operation, headers, exc)
        answer = await gateway.handle(
            self._operation, body, headers, link, principal, route=door.route, parsed=parsed
        )
        return door.answer(answer)


def _take(message: Mapping[str, Any], body: bytearray, gateway: Gateway) -> bool | None:
    """Add a body message to ``body`` (413 past the size limit); whether more follows,
    ``None`` when the client went away instead."""
    if message["type"] == "http.disconnect":
        return None
    body += message.get("body", b"")
    gateway.codec.check_size(len(body))
    more: bool = message.get("more_body", False)
    return more


def _client_watch(scope: Scope) -> ClientWatch | None:
    """The connection's :class:`ClientWatch` when relaygate's own protocol serves it."""
    extensions = scope.get("extensions")
    if not extensions:
        return None
    watch = extensions.get(CLIENT_WATCH_KEY, {}).get("watch")
    return watch if isinstance(watch, ClientWatch) else None


async def _watch_client(receive: Receive, drain: Drain, task: asyncio.Task[Any]) -> None:
    """Wait for the client to go away; then cut its request if it is still in flight.

    Once the body is read, an ASGI server's next ``receive`` waits for the disconnect (or
    the end of the response); one that answers anything else offers no watch.
    """
    if (await receive())["type"] == "http.disconnect":
        drain.cut(task, CLIENT_DISCONNECTED)


async def _discard(response: EdgeResponse) -> None:
    """Release an answer that will not be sent (its stream holds an upstream connection)."""
    if response.stream is not None:
        await response.stream.aclose()


_SHUTDOWN_MESSAGE = "the gateway is shutting down; retry the request"


def shutdown_event() -> bytes:
    """The SSE event that ends a stream still open when the shutdown drain ends."""
    body = error_body(_SHUTDOWN_MESSAGE, type="server_error", code=GATEWAY_SHUTTING_DOWN)
    return b"data: " + body + b"\n\n"


async def _end_for_shutdown(send: Send, response: EdgeResponse | None, head_sent: bool) -> None:
    if not head_sent:
        body = error_body(_SHUTDOWN_MESSAGE, type="server_error", code=GATEWAY_SHUTTING_DOWN)
        headers = [("content-type", "application/json"), ("connection", "close")]
        await send_edge(send, EdgeResponse(503, headers, body))
    elif response is not None and response.stream is not None:
        await send({"type": "http.response.body", "body": shutdown_event(), "more_body": False})


def _body_stalled(idle_s: float) -> GatewayError:
    ms = round(idle_s * 1000)
    return GatewayError(408, f"request body made no progress for {ms} ms", code="body_timeout")


def require_key(
    store: KeyStore,
    endpoint: Endpoint,
    *,
    what: str = "this operations endpoint needs an admin key (auth.admin_keys)",
    read: Callable[[Mapping[str, str]], str | None] = lambda h: bearer(h.get("authorization")),
) -> Endpoint:
    """``endpoint`` answering only requests presenting a key in ``store`` (``read`` finds it
    in the headers; ``Authorization: Bearer`` by default), 401 in OpenAI's error shape
    otherwise, saying ``what`` is needed; ``endpoint`` itself when ``store`` is empty."""
    if not store:
        return endpoint

    async def guarded(request: Request) -> Response:
        key = read(request.headers)
        if key is None or store.lookup(key) is None:
            body = error_body(
                f"{what} as Authorization: Bearer",
                type="authentication_error",
                code="invalid_api_key",
            )
            return Response(
                body,
                status_code=401,
                media_type="application/json",
                headers={"www-authenticate": "Bearer"},
            )
        return await endpoint(request)

    return guarded


async def send_edge(send: Send, response: EdgeResponse) -> None:
    """Write an :class:`EdgeResponse` to an ASGI ``send``; streams are forwarded chunk by chunk."""
    await send_head(send, response)
    await send_rest(send, response)


async def send_head(send: Send, response: EdgeResponse) -> None:
    """Send ``http.response.start`` for ``response``."""
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    if response.stream is None:
        headers.append((b"content-length", str(len(response.body)).encode()))
    else:
        headers.append((b"cache-control", b"no-cache"))
        headers.append((b"x-accel-buffering", b"no"))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})


async def send_rest(send: Send, response: EdgeResponse) -> None:
    """Send ``response``'s body after :func:`send_head`; a stream is closed however it ends."""
    stream = response.stream
    if stream is None:
        await send({"type": "http.response.body", "body": response.body})
        return
    try:
        async for chunk in stream:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        await stream.aclose()


def _http_error(ref: GatewayRef) -> Callable[[Request, Exception], Awaitable[Response]]:
    """Starlette's 404/405 (and other HTTP errors) as observed refusals in OpenAI's shape."""

    async def http_error(request: Request, exc: Exception) -> Response:
        gateway = ref.current
        assert isinstance(exc, HTTPException)
        message = "unknown route" if exc.status_code == 404 else str(exc.detail)
        refusal = GatewayError(
            exc.status_code,
            f"{message}: {request.method} {request.url.path}",
            type=_ERROR_TYPES.get(exc.status_code, "invalid_request_error"),
            code=str(exc.status_code),
            headers=dict(exc.headers or {}),
        )
        headers = {k.lower(): v for k, v in request.headers.items()}
        answer = gateway.refuse(None, headers, refusal, method=request.method)
        return Response(answer.body, status_code=answer.status, headers=dict(answer.headers))

    return http_error


def create_app(
    config: ServerConfig | Mapping[str, Any] | str | Path | None = None,
    deps: GatewayDeps | None = None,
    *,
    metrics_dir: str | Path | None = None,
    reload_from: str | Path | None = None,
) -> Starlette:
    """An ASGI app serving relaygate for ``config``.

    ``config`` is a :class:`ServerConfig`, a dict in the server-config format, or a path to a
    YAML/JSON server-config file; ``None`` means an empty config (requests then carry their
    own config in headers). ``deps`` injects the upstream client, telemetry and clocks. The
    :class:`Gateway` is reachable as ``app.state.gateway`` and the live status page's
    :class:`StatusBoard` as ``app.state.status``; the page is ``GET /status``. The API's
    OpenAPI description (:mod:`relaygate.openapi`) is ``GET /openapi.json``.
    ``metrics_dir`` is the directory that the worker processes of one instance share, so
    that ``/metrics`` in any of them answers for all (:mod:`relaygate.exporters.workers`);
    ``None`` (one process) serves this process's metrics alone.
    ``reload_from`` is the server-config file to reload on SIGHUP and when it changes
    (:mod:`relaygate.reload`; ``relaygate serve`` passes its ``--config``); the
    :class:`~relaygate.reload.Reloader` is ``app.state.reloader``, ``None`` without one.
    When a server runs the app's lifespan (``relaygate serve`` does), its start-up ends with
    :func:`relaygate.collector.settle`: the objects made so far are left out of later
    garbage collections, and young collections run less often.
    """
    server = server_config_of(config)
    gateway = Gateway(server, deps)
    ref = GatewayRef(gateway)

    def _on_swap(new: Gateway) -> None:
        app.state.gateway = new

    reloader: Reloader | None = None
    if reload_from is not None:
        path = Path(reload_from)
        with contextlib.suppress(OSError):
            ref.hash = file_hash(path.read_bytes())
        reloader = Reloader(path, ref, gateway.deps.registry.names, on_swap=_on_swap)
    metrics_on = server.telemetry.metrics.enabled
    board = StatusBoard(circuit=gateway.circuit_state)
    gateway.telemetry.request_hooks.append(board.record)

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(_: Request) -> Response:
        configs = ref.current.configs.config_ids()
        answer: dict[str, Any] = {"status": "ready", "configs": configs}
        if reloader is not None:
            answer["config_generation"] = ref.generation
            answer["config_hash"] = ref.hash
        return JSONResponse(answer)

    async def model_list(_: Request) -> Response:
        return JSONResponse({"object": "list", "data": ref.current.models()})

    async def models(request: Request) -> Response:
        keys = ref.current.keys  # the gateway keys of the config in force
        return await require_key(keys, model_list, what="a gateway key", read=presented_key)(
            request
        )

    spec = orjson.dumps(openapi_document(metrics=metrics_on))

    async def openapi(_: Request) -> Response:
        return Response(spec, media_type="application/json")

    workers = None
    if metrics_dir is not None and metrics_on:
        from relaygate.exporters.workers import WorkerMetrics  # Unix only (sockets, flock)

        workers = WorkerMetrics(Path(metrics_dir), gateway.telemetry)

    async def metrics(request: Request) -> Response:
        if workers is not None:
            await workers.refresh()
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(gateway.telemetry.metrics.registry), media_type=content_type)

    drain = Drain(server.shutdown.drain_timeout_ms / 1000)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[dict[str, Any]]:
        if workers is not None:
            await workers.start()
        if reloader is not None:
            reloader.start(server.reload.watch_interval_ms / 1000)
        # What start-up made (modules, the compiled configs, the telemetry families) lives
        # as long as the process: out of the collector's view, a collection scans only what
        # requests make, and less often (benchmarks/README.md).
        collector.settle()
        yield {EDGE_STATE_KEY: EdgeState(server.limits, drain)}
        if reloader is not None:
            await reloader.stop()
        drain.cut_all()
        await gateway.aclose()
        if workers is not None:
            await workers.aclose()

    admin = server.auth.admin_store()
    guarded = [
        Route(route.path, require_key(admin, route.endpoint), methods=route.methods)
        for route in status_routes(board, lambda: ref.current.configs.known_configs())
    ]
    api = {
        "/v1/chat/completions": ApiEndpoint(ref, Operation.CHAT, drain),
        "/v1/completions": ApiEndpoint(ref, Operation.TEXT_COMPLETION, drain),
        "/v1/embeddings": ApiEndpoint(ref, Operation.EMBEDDINGS, drain),
        "/v1/messages": ApiEndpoint(ref, Operation.CHAT, drain, AnthropicMessagesDoor()),
        COUNT_TOKENS_ROUTE: ApiEndpoint(
            ref, Operation.COUNT_TOKENS, drain, AnthropicCountTokensDoor()
        ),
        "/v1/responses": ApiEndpoint(ref, Operation.RESPONSES, drain),
    }
    routes = [
        *(Route(path, endpoint) for path, endpoint in api.items()),
        Route("/v1/models", models, methods=["GET"]),
        *([Route("/metrics", require_key(admin, metrics), methods=["GET"])] if metrics_on else []),
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        *guarded,
    ]
    app = _GatewayApp(
        api,
        routes=routes,
        exception_handlers={HTTPException: _http_error(ref)},
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    app.state.status = board
    app.state.reloader = reloader
    return app


class _GatewayApp(Starlette):
    """Starlette, with the API routes dispatched by exact path ahead of its middleware
    stack and router while no middleware was added (they handle their own errors; this
    saves ~6% of a request's CPU). Once ``app.add_middleware(...)`` (or ``middleware=``)
    adds any, every request, API routes included, goes through Starlette's stack as usual,
    so added middleware wraps every route."""

    def __init__(self, api: dict[str, ApiEndpoint], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.user_middleware:
            endpoint = self._api.get(_route_path(scope))
            if endpoint is not None:
                scope["app"] = self
                await endpoint(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The request path below the app's mount point (``root_path``), as Starlette routes it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] == "/":
        return path[len(root) :]
    return path
