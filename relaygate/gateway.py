"""The gateway core shared by every edge: the ASGI app and the in-process httpx transport.

:class:`Gateway` assembles: it builds the pipeline once (auth → config resolve → fallback
→ retry → circuit → log → timeout → provider) from a
:class:`~relaygate.config.server.ServerConfig` and injected side effects, and hands each
request off: the observe layer (:mod:`relaygate.middleware.observe`) opens and records it,
the edge codec (:mod:`relaygate.edge`) parses its input and renders its headers, the
pipeline answers it.
"""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from relaygate.circuits import CircuitRegistry
from relaygate.config.server import ServerConfig
from relaygate.edge import PASSTHROUGH_PREFIXES, ROUTES, EdgeCodec, EdgeResponse
from relaygate.errors import JSON_HEADERS, GatewayError, error_body, synthesized
from relaygate.exchange import (
    GATEWAY_SHUTTING_DOWN,
    ClientLink,
    GatewayRequest,
    GatewayResponse,
    Operation,
)
from relaygate.exporters import traceparent
from relaygate.exporters.current import attach_span, detach
from relaygate.load import LoadBoard
from relaygate.middleware.admission import AdmissionLayer
from relaygate.middleware.auth import AuthLayer, authenticate
from relaygate.middleware.breaker import CircuitGate, CircuitLayer, circuit_telemetry
from relaygate.middleware.config_resolve import ConfigResolveLayer, ConfigSources
from relaygate.middleware.fallback import FallbackLayer
from relaygate.middleware.load import LoadLayer
from relaygate.middleware.log import LogLayer
from relaygate.middleware.observe import Observe
from relaygate.middleware.retry import RetryLayer
from relaygate.middleware.target_limits import TargetLimit, TargetLimitLayer
from relaygate.middleware.timeout import TimeoutLayer
from relaygate.pipeline import Handler, Layer, build
from relaygate.providers.client import UpstreamClient, default_upstream
from relaygate.providers.handler import ProviderHandler
from relaygate.providers.registry import ProviderRegistry, default_registry
from relaygate.security.keys import KeyScope
from relaygate.state.backend import StateBackend
from relaygate.state.build import build_state
from relaygate.state.circuits import CircuitSync
from relaygate.state.limiter import Background, Limiter
from relaygate.strategies import Backoff
from relaygate.telemetry import Telemetry, build_telemetry

__all__ = [
    "PASSTHROUGH_PREFIXES",
    "ROUTES",
    "EdgeResponse",
    "Gateway",
    "GatewayDeps",
]


@dataclass
class GatewayDeps:
    """Side effects a gateway uses; every default is the production one.

    ``upstream`` is created lazily on first use when not given (so it binds to the running
    event loop); ``sleep``, ``rand``, ``wall`` are the retry layer's waits, jitter and wall
    clock (Retry-After dates); ``now`` is the loop clock (seconds, monotonic) the request's
    deadline is set and read against by the gateway and the fallback, retry and timeout
    layers, the running event loop's ``time()`` when ``None``. ``circuits`` holds the
    circuit breakers' state; pass one registry to several gateways (or keep it across a
    config reload) to share it; a new one is made when ``None``.
    """

    upstream: UpstreamClient | None = None
    telemetry: Telemetry | None = None
    registry: ProviderRegistry = field(default_factory=default_registry)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rand: Callable[[], float] = random.random
    wall: Callable[[], float] = time.time
    now: Callable[[], float] | None = None
    loads: LoadBoard | None = None
    """Requests in flight and latency per upstream target (health-aware loadbalance); a
    fresh board when ``None``. Shared by gateways that replace one another on a reload."""
    circuits: CircuitRegistry | None = None
    state: StateBackend | None = None
    """Where rate-limit counters and cached answers live; built from the server config's
    ``state`` section when ``None`` (then owned, and closed, by the gateway). Shared by
    gateways that replace one another on a reload."""


class Gateway:
    """One configured gateway: the pipeline plus edge-independent request handling."""

    def __init__(self, server: ServerConfig, deps: GatewayDeps | None = None) -> None:
        deps = deps or GatewayDeps()
        self.server = server
        self.telemetry = deps.telemetry or build_telemetry(
            server.telemetry, flush_timeout_s=server.shutdown.telemetry_flush_timeout_ms / 1000
        )
        self._owns_state = deps.state is None
        if deps.state is None:
            deps = replace(deps, state=build_state(server.state, self.telemetry))
        assert deps.state is not None
        self.state: StateBackend = deps.state
        self.deps = deps
        self.background = Background()
        """Writes to the state made after an answer (usage counts, cache stores)."""
        self._upstream = deps.upstream
        self._owns_upstream = deps.upstream is None
        upstream = _LazyUpstream(self)
        # With spans off nothing is made current, so there is no trace context to forward.
        egress = server.security.egress.policy()
        self.egress = egress
        self.keys = server.auth.store()
        self._provider = (
            ProviderHandler(deps.registry, upstream, traceparent.inject, egress=egress)
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
        self.loads = deps.loads or LoadBoard()
        self.circuits = deps.circuits if deps.circuits is not None else CircuitRegistry()
        self._circuit_listener = circuit_telemetry(self.telemetry, self.circuits)
        self.circuits.listen(self._circuit_listener)
        self._circuit_sync = _circuit_sync(self.state, self.circuits, self.telemetry, server)
        gate = CircuitGate(self.circuits, server.breaker.settings(), self.telemetry)
        self.circuit_state = gate.state
        # Timeout innermost: it bounds one attempt, so the log layer records a cut attempt as
        # the ordinary 408/504 answer it is; retry and fallback outside act on that answer.
        layers: list[Layer] = []
        if self.keys:
            layers.append(AuthLayer(self.keys, self.telemetry))
        limiter = Limiter(self.state, self.background, deps.wall)
        prices = {model: spec.price() for model, spec in server.prices.items()}
        layers += [
            self.configs,
            AdmissionLayer(
                self.state,
                limiter,
                self.background,
                self.telemetry,
                prices=prices,
                max_entry_bytes=server.state.cache.max_entry_bytes,
                share_across_keys=server.state.cache.share_across_keys,
            ),
            FallbackLayer(
                self.telemetry,
                rand=deps.rand,
                now=now,
                loads=self.loads,
                circuits=gate,
                max_recovery_bytes=limits.max_recovery_bytes,
            ),
        ]
        rules = [
            TargetLimit(spec.provider, spec.model, spec.limits())
            for spec in server.rate_limits.targets
        ]
        if rules:
            layers.append(TargetLimitLayer(rules, self.state, limiter, self.telemetry, prices))
        layers += [
            RetryLayer(
                self.telemetry,
                backoff,
                max_attempts=limits.max_retry_attempts,
                sleep=deps.sleep,
                rand=deps.rand,
                wall=deps.wall,
                now=now,
                may_retry=gate.may_retry,
            ),
            CircuitLayer(gate, self.telemetry),
            LoadLayer(self.loads, now=now),
            LogLayer(self.telemetry),
            TimeoutLayer(self.telemetry, now=now),
        ]
        self.handler: Handler = build(layers, self._provider)
        self._deadline_s = limits.request_deadline_ms / 1000
        self.codec = EdgeCodec(limits)
        self.observe = Observe(self.telemetry, self.codec, limits.max_attempts_per_request)

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

    def detach(self) -> None:
        """Stop reporting circuit transitions: the gateway replacing this one on a reload
        shares its registry and reports them (requests in flight here finish as usual)."""
        self.circuits.unlisten(self._circuit_listener)

    async def aclose(self) -> None:
        """Close the upstream client if the gateway created it, stop reporting circuit
        transitions (the registry may outlive the gateway), and flush telemetry."""
        self.detach()
        if self._upstream is not None and self._owns_upstream:
            await self._upstream.aclose()
            self._upstream = None
        await self.background.drain()
        if self._owns_state:
            if self._circuit_sync is not None:
                await self._circuit_sync.aclose()
            try:
                await self.state.aclose()
            except Exception:  # closing a broken connection must not fail shutdown
                self.telemetry.errors += 1
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
        *,
        route: str | None = None,
        parsed: dict[str, Any] | None = None,
    ) -> EdgeResponse:
        """Answer one API request; ``headers`` must have lower-case names.

        Never raises for bad input or upstream trouble: every refusal is an OpenAI-shaped
        error response. ``client`` is the edge's :class:`ClientLink`: an edge that cancels
        the call sets its ``cut`` first, and the request is recorded with that outcome
        (status 499 for a client that went away, 503 for a shutdown) before the
        cancellation propagates. ``principal`` is the caller's key scope when the edge
        already authenticated it (:meth:`authenticate`); otherwise the auth layer does.
        A front door passes its ``route`` (the request span's ``http.route``) and the body
        it built, already ``parsed`` (``body`` is then its exact bytes), so it is not
        decoded again.
        """
        sync = self._circuit_sync
        if sync is not None and not sync.started:
            sync.start()
        observation = self.observe.start(
            operation, headers, client=client, principal=principal, route=route
        )
        ctx = observation.ctx
        token = attach_span(observation.span)
        request: GatewayRequest | None = None
        try:
            request = self.codec.parse(operation, body, headers, ctx, parsed)
            ctx.deadline = self._now() + self._deadline_s
            response = await self.handler(request)
        except GatewayError as exc:
            response = exc.to_response()
        except asyncio.CancelledError:
            cut = client.cut if client is not None else None
            status = 503 if cut == GATEWAY_SHUTTING_DOWN else 499
            observation.cut(
                synthesized(
                    status,
                    "request cut short",
                    type="server_error",
                    code=cut or "cancelled",
                    failure=cut or "cancelled",
                ),
                request,
            )
            raise
        except Exception:
            tel = self.telemetry
            tel.guard(tel.logger.exception, "internal_error", request_id=ctx.request_id)
            response = GatewayResponse(
                status=500,
                headers=dict(JSON_HEADERS),
                body=error_body(
                    f"internal gateway error (request id {ctx.request_id})",
                    type="server_error",
                    code="internal_error",
                ),
            )
        finally:
            detach(token)
        return observation.answer(response, request)

    def refuse(
        self,
        operation: Operation | None,
        headers: Mapping[str, str],
        error: GatewayError,
        *,
        method: str = "POST",
        extra: Sequence[tuple[str, str]] = (),
        route: str | None = None,
    ) -> EdgeResponse:
        """The answer for a request an edge refuses before the pipeline (401 before the
        body, 404, 405, 408, 413), observed like any other: logged, counted, and carrying
        ``x-request-id`` and ``x-portkey-trace-id``; ``extra`` headers are added; ``route``
        as for :meth:`handle`."""
        return self.observe.refuse(
            operation, headers, error, method=method, extra=extra, route=route
        )


_SYNCS: weakref.WeakKeyDictionary[Any, CircuitSync] = weakref.WeakKeyDictionary()
"""The circuit sync of each shared state backend: one per process, kept across reloads."""


def _circuit_sync(
    state: StateBackend, circuits: CircuitRegistry, tel: Telemetry, server: ServerConfig
) -> CircuitSync | None:
    """The sync sharing ``circuits`` through ``state`` when it is shared (Redis), else
    ``None``; gateways that replace one another on a reload share one."""
    redis = server.state.redis
    if not state.shared or redis is None:
        return None
    sync = _SYNCS.get(state)
    if sync is None or sync.registry is not circuits:
        sync = CircuitSync(circuits, state, tel, interval_s=redis.circuit_sync_ms / 1000)
        _SYNCS[state] = sync
    return sync


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
