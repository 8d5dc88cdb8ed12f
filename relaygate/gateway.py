"""The gateway core shared by every edge: the ASGI app and the in-process httpx transport.

:class:`Gateway` builds the pipeline once (auth → config resolve → fallback → retry →
log → timeout → provider) from a :class:`~relaygate.config.server.ServerConfig` and injected
side effects, and turns raw request parts (operation, body bytes, headers) into an
:class:`EdgeResponse`: validated input, the request span, Portkey-compatible response
headers, the route story, and per-request telemetry when the answer (or its stream) ends.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

import orjson
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from relaygate.config.server import ServerConfig
from relaygate.errors import JSON_HEADERS, GatewayError, error_body, synthesized
from relaygate.exchange import (
    GATEWAY_SHUTTING_DOWN,
    ClientLink,
    GatewayRequest,
    GatewayResponse,
    Operation,
    RequestContext,
    ResponseStream,
)
from relaygate.exporters import semconv as sc
from relaygate.exporters.prometheus import status_class
from relaygate.middleware.auth import AuthLayer, authenticate
from relaygate.middleware.config_resolve import ConfigResolveLayer, ConfigSources
from relaygate.middleware.fallback import FallbackLayer
from relaygate.middleware.log import LogLayer
from relaygate.middleware.retry import RetryLayer
from relaygate.middleware.timeout import TimeoutLayer
from relaygate.nesting import may_be_too_deep, too_deep
from relaygate.pipeline import Handler, Layer, build
from relaygate.providers.client import UpstreamClient, default_upstream
from relaygate.providers.handler import ProviderHandler
from relaygate.providers.registry import ProviderRegistry, default_registry
from relaygate.route_story import ROUTE_SPAN_MAX_BYTES, cap_story, route_story
from relaygate.security.keys import KeyScope
from relaygate.sse import usage_of
from relaygate.strategies import Backoff
from relaygate.telemetry import Telemetry, build_telemetry, exemplar, trace_ids

ROUTES: Mapping[Operation, str] = {
    Operation.CHAT: "/v1/chat/completions",
    Operation.TEXT_COMPLETION: "/v1/completions",
    Operation.EMBEDDINGS: "/v1/embeddings",
}
"""The OpenAI-compatible route of each operation (the ``http.route`` span attribute)."""

_SPAN_NAMES = {op: f"POST {route}" for op, route in ROUTES.items()}

PASSTHROUGH_PREFIXES = ("x-ratelimit-", "retry-after", "openai-")
"""Upstream answer headers passed on to the client besides ``content-type``."""


@dataclass(slots=True)
class EdgeResponse:
    """What an edge sends back: status, header pairs, and a body or a byte stream."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    stream: ResponseStream | None = None


@dataclass
class GatewayDeps:
    """Side effects a gateway uses; every default is the production one.

    ``upstream`` is created lazily on first use when not given (so it binds to the running
    event loop); ``sleep``, ``rand``, ``wall`` are the retry layer's waits, jitter and wall
    clock (Retry-After dates); ``now`` is the loop clock (seconds, monotonic) the request's
    deadline is set and read against by the gateway and the fallback, retry and timeout
    layers, the running event loop's ``time()`` when ``None``.
    """

    upstream: UpstreamClient | None = None
    telemetry: Telemetry | None = None
    registry: ProviderRegistry = field(default_factory=default_registry)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rand: Callable[[], float] = random.random
    wall: Callable[[], float] = time.time
    now: Callable[[], float] | None = None


class Gateway:
    """One configured gateway: the pipeline plus edge-independent request handling."""

    def __init__(self, server: ServerConfig, deps: GatewayDeps | None = None) -> None:
        deps = deps or GatewayDeps()
        self.server = server
        self.deps = deps
        self.telemetry = deps.telemetry or build_telemetry(
            server.telemetry, flush_timeout_s=server.shutdown.telemetry_flush_timeout_ms / 1000
        )
        self._upstream = deps.upstream
        self._owns_upstream = deps.upstream is None
        upstream = _LazyUpstream(self)
        # With spans off nothing is made current, so there is no trace context to forward.
        egress = server.security.egress.policy()
        self.egress = egress
        self.keys = server.auth.store()
        self._provider = (
            ProviderHandler(deps.registry, upstream, propagate.inject, egress=egress)
            if self.telemetry.spans_for_attempts
            else ProviderHandler(deps.registry, upstream, egress=egress)
        )
        limits = server.limits
        sources = ConfigSources(
            named=server.raw_configs(),
            default=server.raw_default(),
            default_id=server.default_id(),
            inherited=server.inherited(),
            max_header_bytes=limits.max_config_header_bytes,
            gateway_keys=self.keys,
            egress=egress,
            forward_sensitive=frozenset(server.security.forward_sensitive_headers),
            max_targets=limits.max_targets_per_config,
        )
        self.configs = ConfigResolveLayer(sources, deps.registry, self.telemetry)
        # The server config's names and models are label values as they are; a caller's
        # are admitted within the label budget.
        self.telemetry.metrics.trust(self.configs.known_configs())
        backoff = Backoff(
            initial_s=server.retry.initial_backoff_ms / 1000,
            multiplier=server.retry.multiplier,
            max_s=server.retry.max_backoff_ms / 1000,
            jitter=server.retry.jitter,
            max_retry_after_s=server.retry.max_retry_after_ms / 1000,
        )
        now = deps.now or _loop_time
        self._now = now
        # Timeout innermost: it bounds one attempt, so the log layer records a cut attempt as
        # the ordinary 408/504 answer it is; retry and fallback outside act on that answer.
        layers: list[Layer] = []
        if self.keys:
            layers.append(AuthLayer(self.keys, self.telemetry))
        layers += [
            self.configs,
            FallbackLayer(self.telemetry, rand=deps.rand, now=now),
            RetryLayer(
                self.telemetry,
                backoff,
                max_attempts=limits.max_retry_attempts,
                sleep=deps.sleep,
                rand=deps.rand,
                wall=deps.wall,
                now=now,
            ),
            LogLayer(self.telemetry),
            TimeoutLayer(self.telemetry, now=now),
        ]
        self.handler: Handler = build(layers, self._provider)
        self._deadline_s = limits.request_deadline_ms / 1000
        self._max_body = limits.max_body_bytes
        self._max_depth = limits.max_json_depth
        self._max_attempts = limits.max_attempts_per_request
        self._max_route_header = limits.max_route_header_bytes

    def upstream(self) -> UpstreamClient:
        """The upstream client, created on first use when none was injected."""
        if self._upstream is None:
            self._upstream = default_upstream()
        return self._upstream

    def authenticate(self, headers: Mapping[str, str]) -> KeyScope | None:
        """The scope of the gateway key in these (lower-case) headers, ``None`` when gateway
        auth is off; raises a 401 :class:`GatewayError` for a missing or unknown key.

        Edges call it before reading the request body and pass the result to :meth:`handle`.
        """
        return authenticate(self.keys, headers) if self.keys else None

    async def aclose(self) -> None:
        """Close the upstream client if the gateway created it, and flush telemetry."""
        if self._upstream is not None and self._owns_upstream:
            await self._upstream.aclose()
            self._upstream = None
        self.telemetry.guard(self.telemetry.shutdown)

    def models(self) -> list[dict[str, Any]]:
        """``/v1/models`` entries: every model the configured targets pin, with its provider."""
        seen: dict[str, dict[str, Any]] = {}
        for config in self.configs.known_configs():
            for target in config.targets:
                model = target.model
                if model and model not in seen:
                    seen[model] = {
                        "id": model,
                        "object": "model",
                        "created": 0,
                        "owned_by": target.provider,
                    }
        return list(seen.values())

    async def handle(
        self,
        operation: Operation,
        body: bytes,
        headers: Mapping[str, str],
        client: ClientLink | None = None,
        principal: KeyScope | None = None,
    ) -> EdgeResponse:
        """Answer one API request; ``headers`` must have lower-case names.

        Never raises for bad input or upstream trouble: every refusal is an OpenAI-shaped
        error response. ``client`` is the edge's :class:`ClientLink`: an edge that cancels
        the call sets its ``cut`` first, and the request is recorded with that outcome
        (status 499 for a client that went away, 503 for a shutdown) before the
        cancellation propagates. ``principal`` is the caller's key scope when the edge
        already authenticated it (:meth:`authenticate`); otherwise the auth layer does.
        """
        tel = self.telemetry
        metrics = tel.metrics
        start = tel.clock()
        tel.guard(metrics.in_flight.inc)
        request_id = f"{_random_bits(96):024x}"
        portkey_trace = headers.get("x-portkey-trace-id")
        trace_id = portkey_trace[:128] if portkey_trace else request_id
        span: Span = _NOOP_SPAN
        if tel.spans_for_attempts:
            parent = propagate.extract(headers) if "traceparent" in headers else None
            span = tel.tracer.start_span(
                _SPAN_NAMES[operation],
                context=parent,
                kind=SpanKind.SERVER,
                attributes={
                    sc.HTTP_REQUEST_METHOD: "POST",
                    sc.HTTP_ROUTE: ROUTES[operation],
                    sc.GEN_AI_OPERATION_NAME: operation.value,
                    sc.REQUEST_ID: request_id,
                },
            )
            if portkey_trace:
                span.set_attribute(sc.PORTKEY_TRACE_ID, trace_id)
        ctx = RequestContext(
            request_id=request_id,
            trace_id=trace_id,
            metadata={},
            client=client,
            principal=principal,
            max_attempts=self._max_attempts,
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        request: GatewayRequest | None = None
        try:
            request = self._parse(operation, body, headers, ctx)
            ctx.deadline = self._now() + self._deadline_s
            response = await self.handler(request)
        except GatewayError as exc:
            response = exc.to_response()
        except asyncio.CancelledError:
            cut = client.cut if client is not None else None
            status = 503 if cut == GATEWAY_SHUTTING_DOWN else 499
            response = synthesized(
                status,
                "request cut short",
                type="server_error",
                code=cut or "cancelled",
                failure=cut or "cancelled",
            )
            story = route_story(ctx.attempts) if ctx.attempts else ""
            cut_finish = _Finisher(
                self, operation, request, ctx, span, response, start, tel.clock(), story
            )
            cut_finish(None)
            raise
        except Exception:
            tel.guard(tel.logger.exception, "internal_error", request_id=request_id)
            response = GatewayResponse(
                status=500,
                headers=dict(JSON_HEADERS),
                body=error_body(
                    f"internal gateway error (request id {request_id})",
                    type="server_error",
                    code="internal_error",
                ),
            )
        finally:
            otel_context.detach(token)
        returned = tel.clock()
        story = route_story(ctx.attempts) if ctx.attempts else ""
        out_headers = self._headers(response, ctx, story)
        finish = _Finisher(self, operation, request, ctx, span, response, start, returned, story)
        if response.stream is None:
            finish(None)
            return EdgeResponse(response.status, out_headers, response.body or b"")
        response.stream.on_end(finish)
        return EdgeResponse(response.status, out_headers, stream=response.stream)

    def _parse(
        self,
        operation: Operation,
        body: bytes,
        headers: Mapping[str, str],
        ctx: RequestContext,
    ) -> GatewayRequest:
        if len(body) > self._max_body:
            raise GatewayError(
                413,
                f"request body is {len(body)} bytes; the limit is {self._max_body}",
                code="request_too_large",
            )
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            if _DECODER_DEPTH_ERROR in str(exc):
                self._too_deep("request body", None)
            raise GatewayError(400, "request body is not valid JSON", code="invalid_json") from None
        if not isinstance(parsed, dict):
            raise GatewayError(400, "request body must be a JSON object", code="invalid_body")
        self._check_depth(body, parsed, "request body", None)
        stream = parsed.get("stream", False)
        if stream is None:
            stream = False
        if not isinstance(stream, bool):
            raise GatewayError(
                400, "'stream' must be a boolean", code="invalid_type", param="stream"
            )
        model = parsed.get("model")
        if model is not None and not isinstance(model, str):
            raise GatewayError(400, "'model' must be a string", code="invalid_type", param="model")
        if stream and operation is Operation.EMBEDDINGS:
            raise GatewayError(400, "embeddings cannot be streamed", param="stream")
        raw_meta = headers.get("x-portkey-metadata")
        if raw_meta is not None:
            try:
                meta = orjson.loads(raw_meta)
            except orjson.JSONDecodeError as exc:
                if _DECODER_DEPTH_ERROR in str(exc):
                    self._too_deep("x-portkey-metadata", "x-portkey-metadata")
                meta = None
            if not isinstance(meta, dict):
                raise GatewayError(
                    400,
                    "x-portkey-metadata must be a JSON object",
                    code="invalid_header",
                    param="x-portkey-metadata",
                )
            self._check_depth(raw_meta, meta, "x-portkey-metadata", "x-portkey-metadata")
            ctx.metadata = meta
        return GatewayRequest(
            operation=operation,
            body=parsed,
            raw_body=body,
            headers=headers,
            ctx=ctx,
            stream=stream,
        )

    def _check_depth(self, raw: bytes | str, value: Any, what: str, param: str | None) -> None:
        """Refuse ``value`` (decoded from ``raw``) nesting deeper than ``limits.max_json_depth``.

        The bound keeps recursive code downstream (merging ``override_params``, encoding the
        body again, condition evaluation) far from Python's and the encoder's limits.
        """
        limit = self._max_depth
        if may_be_too_deep(raw, limit) and too_deep(value, limit) is not None:
            self._too_deep(what, param)

    def _too_deep(self, what: str, param: str | None) -> NoReturn:
        raise GatewayError(
            400,
            f"{what} nests more than {self._max_depth} levels of objects and lists",
            code="nesting_too_deep",
            param=param,
        )

    def _headers(
        self, response: GatewayResponse, ctx: RequestContext, story: str
    ) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for name, value in response.headers.items():
            if name == "content-type" or name.startswith(PASSTHROUGH_PREFIXES):
                out.append((name, value))
        if not any(name == "content-type" for name, _ in out):
            out.append(("content-type", "application/json"))
        out.append(("x-request-id", ctx.request_id))
        out.append(("x-portkey-trace-id", ctx.trace_id))
        target = response.target
        if target is not None:
            out.append(("x-portkey-last-used-option-index", target.path))
            out.append(("x-portkey-provider", target.provider))
            retries = sum(1 for a in ctx.attempts if a.target is target) - 1
            out.append(("x-portkey-retry-attempt-count", str(max(retries, 0))))
        if ctx.attempts:
            out.append(("x-relaygate-route", cap_story(story, self._max_route_header)))
        return out


_DECODER_DEPTH_ERROR = "depth limit exceeded"
"""How orjson says a document nests past its own (1,024-level) limit."""

_NOOP_SPAN: Span = trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)

# Request ids need to be unique, not secret: the process's PRNG (seeded from the OS, and
# reseeded in a forked child) avoids a system call per request.
_random_bits = random.getrandbits


def _loop_time() -> float:
    """The running event loop's clock: the default ``GatewayDeps.now``."""
    return asyncio.get_running_loop().time()


class _LazyUpstream:
    """Defers creating the gateway's upstream client to the first request's event loop."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    async def send(self, request: Any) -> Any:
        return await self._gateway.upstream().send(request)

    async def aclose(self) -> None:
        await self._gateway.aclose()


class _Finisher:
    """Records the per-request telemetry once the answer has been fully delivered.

    Called with ``None`` for a complete answer, and registered as the end callback of a
    streamed one (so it runs once the stream ends, breaks or is closed).
    """

    __slots__ = (
        "ctx",
        "gw",
        "operation",
        "request",
        "response",
        "returned",
        "span",
        "start",
        "story",
    )

    def __init__(
        self,
        gw: Gateway,
        operation: Operation,
        request: GatewayRequest | None,
        ctx: RequestContext,
        span: Span,
        response: GatewayResponse,
        start: float,
        returned: float,
        story: str,
    ) -> None:
        self.story = story
        self.gw = gw
        self.operation = operation
        self.request = request
        self.ctx = ctx
        self.span = span
        self.response = response
        self.start = start
        self.returned = returned

    def __call__(self, stream: ResponseStream | None) -> None:
        tel = self.gw.telemetry
        try:
            self._record(tel, stream)
        except Exception:  # telemetry never fails a request
            tel.errors += 1
        finally:
            tel.guard(tel.metrics.in_flight.dec)
            tel.guard(self.span.end)

    def _record(self, tel: Telemetry, stream: ResponseStream | None) -> None:
        metrics = tel.metrics
        ctx = self.ctx
        response = self.response
        total = tel.clock() - self.start
        upstream = sum(a.duration_s + a.backoff_s for a in ctx.attempts)
        overhead = max(self.returned - self.start - upstream, 0.0)
        config = ctx.config
        config_id = config.id if config is not None else "none"
        status = response.status
        cut = ctx.client.cut if ctx.client is not None else None
        failure = cut or (stream.failure if stream is not None else None)
        ex = exemplar(self.span)
        op = self.operation.value
        series = metrics.request_series(config_id, op)
        metrics.request_counter(series, config_id, op, status_class(status)).inc()
        series.duration.observe(total, ex)
        series.overhead.observe(overhead)
        if ctx.attempts:
            series.attempts_per_request.observe(len(ctx.attempts))
        exhausted = bool(ctx.attempts) and not response.ok and response.target is not None
        if exhausted:
            metrics.exhausted.labels(config_id, ctx.attempts[-1].reason).inc(1, ex)
        span = self.span
        # A stream's story can change after the headers left (an attempt that broke mid-way).
        story = route_story(ctx.attempts) if stream is not None and ctx.attempts else self.story
        if span.is_recording():
            attrs: dict[str, Any] = {
                sc.HTTP_RESPONSE_STATUS_CODE: status,
                sc.CONFIG_ID: config_id,
                sc.ATTEMPTS: len(ctx.attempts),
            }
            if story:
                attrs[sc.ROUTE] = cap_story(story, ROUTE_SPAN_MAX_BYTES)
            if response.target is not None:
                attrs[sc.SERVED_BY] = response.target.path
            span.set_attributes(attrs)
            if exhausted:
                span.add_event(sc.EVENT_EXHAUSTED, {sc.OUTCOME: ctx.attempts[-1].reason})
            if status >= 500 or failure:
                span.set_attribute(sc.ERROR_TYPE, failure or str(status))
                span.set_status(Status(StatusCode.ERROR))
            if cut:
                span.set_attribute(sc.OUTCOME, cut)
        usage = stream.usage if stream is not None else usage_of(response.payload)
        for hook in tel.request_hooks:
            tel.guard(hook, ctx, status)
        ids = trace_ids(span)
        tel.logger.info(
            "request",
            request_id=ctx.request_id,
            trace_id=ids[0] if ids else None,
            span_id=ids[1] if ids else None,
            portkey_trace_id=ctx.trace_id,
            key=ctx.principal.name if ctx.principal is not None else None,
            config=config_id,
            operation=self.operation.value,
            stream=bool(self.request and self.request.stream),
            status=status,
            outcome=failure or ("ok" if response.ok else "error"),
            served_by=response.target.path if response.target is not None else None,
            attempts=[
                {
                    "target": a.target.path,
                    "provider": a.target.provider,
                    "attempt": a.attempt,
                    "status": a.status,
                    "reason": a.reason,
                    "ms": round(a.duration_s * 1000, 3),
                    "backoff_ms": round(a.backoff_s * 1000, 3),
                }
                for a in ctx.attempts
            ],
            route=story,
            fallbacks=ctx.fallbacks,
            tokens_in=usage[0] if usage else None,
            tokens_out=usage[1] if usage else None,
            duration_ms=round(total * 1000, 3),
            overhead_ms=round(overhead * 1000, 3),
        )
