"""Running a rehearsal: simulators on loopback ports, the gateway in-process, and the
requests sent through it one after the other.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from prometheus_client import CollectorRegistry

from relaygate.circuits import CircuitEntry, CircuitRegistry
from relaygate.config.model import Target
from relaygate.config.server import AuthSettings, ServerConfig
from relaygate.exchange import RequestContext
from relaygate.exporters.prometheus import GatewayMetrics
from relaygate.gateway import GatewayDeps
from relaygate.mock import MockSettings, create_mock_app
from relaygate.providers.client import default_upstream
from relaygate.rehearse.results import (
    CircuitEvent,
    MetricDelta,
    Report,
    RequestResult,
    _documentation,
    _duration,
    metric_deltas,
    metric_values,
)
from relaygate.rehearse.scenario import Scenario, TargetFaults
from relaygate.rehearse.target import RehearsalConfig, _resolve_faults, _with_hosts
from relaygate.route_story import route_story
from relaygate.strategies.attempt_bound import stream_idle_s
from relaygate.strategies.breaker import CircuitState
from relaygate.telemetry import Telemetry
from relaygate.transport import AsyncTransport

SHORT_WAIT_S = 0.005
"""Longest real sleep of one backoff or Retry-After wait during a rehearsal (seconds)."""


DEFAULT_DEADLINE_MS = 10_000
"""Default cap on the request deadline during a rehearsal (milliseconds)."""


_HOST = "127.0.0.1"
_CLIENT_BASE_URL = "http://relaygate.rehearsal/v1"


_API_SUFFIX: Mapping[str, str] = {"azure-openai": "/openai"}
"""Path under a simulator that plays the provider's ``custom_host`` (default ``/v1``)."""


class _Simulators:
    """Fault simulators under uvicorn, each in its own thread on a free loopback port."""

    def __init__(self) -> None:
        self._running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(self, settings: MockSettings, timeout_s: float = 10.0) -> str:
        config = uvicorn.Config(
            create_mock_app(settings),
            host=_HOST,
            port=0,
            log_level="critical",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name=f"rehearse-{settings.name}", daemon=True)
        thread.start()
        self._running.append((server, thread))
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the fault simulator for {settings.name} did not start")
            time.sleep(0.005)
        port = server.servers[0].sockets[0].getsockname()[1]
        return f"http://{_HOST}:{port}"

    def stop(self) -> None:
        for server, _ in self._running:
            server.should_exit = True
        for _, thread in self._running:
            thread.join(timeout=10)
        self._running.clear()


class _LogSink:
    """The gateway's logger during a rehearsal: silent, but keeps internal errors."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def debug(self, event: str, **kw: Any) -> None:
        return None

    info = warning = debug

    def error(self, event: str, **kw: Any) -> None:
        self.errors.append(event)

    def exception(self, event: str, **kw: Any) -> None:
        exc = sys.exc_info()[1]
        detail = f": {type(exc).__name__}: {exc}" if exc is not None else ""
        self.errors.append(f"{event} (request id {kw.get('request_id', '?')}){detail}")


class _Waits:
    """The retry layer's sleep: cut to ``cap_s`` unless waits are real."""

    def __init__(self, cap_s: float | None) -> None:
        self._cap = cap_s

    async def __call__(self, seconds: float) -> None:
        await asyncio.sleep(seconds if self._cap is None else min(seconds, self._cap))


def _error_message(content: bytes) -> str:
    try:
        payload = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return content[:200].decode("utf-8", "replace")
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        return str(payload["error"].get("message", ""))
    return content[:200].decode("utf-8", "replace")


@dataclass
class _Drive:
    """Sends the rehearsal's requests through one in-process gateway."""

    client: httpx.AsyncClient
    contexts: dict[str, RequestContext]
    headers: dict[str, str]
    model: str
    stream: bool

    async def one(self, number: int) -> RequestResult:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": f"rehearsal request {number}"}],
        }
        if self.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        start = time.perf_counter()
        try:
            if self.stream:
                result = await self._streamed(number, body, start)
            else:
                response = await self.client.post(
                    "/chat/completions", json=body, headers=self.headers
                )
                error = None if response.is_success else _error_message(response.content)
                result = self._result(number, response, start, error=error)
        except Exception as exc:  # a gateway fault must not end the rehearsal
            return RequestResult(
                number=number,
                status=0,
                latency_s=time.perf_counter() - start,
                error=f"no answer: {type(exc).__name__}: {exc}",
                stream=self.stream,
            )
        return result

    async def _streamed(self, number: int, body: dict[str, Any], start: float) -> RequestResult:
        chunks = 0
        stream_error: str | None = None
        done = False
        async with self.client.stream(
            "POST", "/chat/completions", json=body, headers=self.headers
        ) as response:
            if not response.is_success:
                await response.aread()
                return self._result(number, response, start, error=_error_message(response.content))
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    continue
                try:
                    event = json.loads(data)
                except ValueError:
                    stream_error = stream_error or "a data event that is not JSON"
                    continue
                if isinstance(event, dict) and "error" in event:
                    error = event["error"]
                    message = error.get("message") if isinstance(error, dict) else error
                    stream_error = str(message)
                else:
                    chunks += 1
        if stream_error is None and not done:
            stream_error = "the stream ended without [DONE]"
        return self._result(number, response, start, chunks=chunks, stream_error=stream_error)

    def _result(
        self,
        number: int,
        response: httpx.Response,
        start: float,
        *,
        error: str | None = None,
        chunks: int = 0,
        stream_error: str | None = None,
    ) -> RequestResult:
        latency = time.perf_counter() - start
        ctx = self.contexts.get(response.headers.get("x-request-id", ""))
        attempts = tuple(ctx.attempts) if ctx is not None else ()
        return RequestResult(
            number=number,
            status=response.status_code,
            latency_s=latency,
            # The whole story: a stream's can grow after its headers left (a recovery).
            route=route_story(attempts)
            if attempts
            else response.headers.get("x-relaygate-route", ""),
            # The last target tried, as the header says; a recovered stream's is the one
            # that finished it, known only once the stream has ended.
            served_by=attempts[-1].target.path
            if attempts
            else response.headers.get("x-portkey-last-used-option-index"),
            attempts=attempts,
            waited_s=sum(a.backoff_s for a in attempts),
            error=error,
            stream=self.stream,
            chunks=chunks,
            stream_error=stream_error,
        )


def _notes(
    loaded: RehearsalConfig, faults: Sequence[TargetFaults], stream: bool, deadline_ms: int
) -> list[str]:
    notes: list[str] = []
    if loaded.placeholders:
        names = ", ".join(loaded.placeholders)
        notes.append(
            f"unset environment variables replaced by placeholder values: {names} "
            "(only the simulators see them)"
        )
    for target, target_faults in zip(loaded.targets, faults, strict=True):
        if target_faults.hangs and not target.request_timeout_ms:
            notes.append(
                f"{target.label} has no request_timeout: a hanging answer holds the request "
                f"until the request deadline ({_duration(deadline_ms / 1000)})"
            )
        if target_faults.cuts_streams and not stream:
            notes.append(
                f"{target.label}: cut_after_chunks only affects streamed requests (use --stream)"
            )
        notes.extend(_deadline_notes(target, target_faults, stream, deadline_ms))
    return notes


def _deadline_notes(
    target: Target, faults: TargetFaults, stream: bool, deadline_ms: int
) -> list[str]:
    """Notes on streaming faults the target's deadlines do not bound, or that need --stream."""
    notes: list[str] = []
    for applies, fault in (
        (faults.delays_first_token, "first_token_delay_ms"),
        (faults.stalls_streams, "stall_after_chunks"),
    ):
        if applies and not stream:
            notes.append(f"{target.label}: {fault} only affects streamed requests (use --stream)")
    if not stream:
        return notes
    if faults.delays_first_token and not target.first_token_timeout_ms:
        notes.append(
            f"{target.label} has no first_token_timeout: a late first token is waited for "
            "(within request_timeout, if any)"
        )
    if (
        faults.stalls_streams
        and stream_idle_s(target.stream_idle_timeout_ms, target.request_timeout_ms) is None
    ):
        notes.append(
            f"{target.label} has no stream_idle_timeout or request_timeout: a stalled stream "
            f"is held until the simulator gives up ({_duration(deadline_ms / 1000 + 1)}), "
            "then ends as a stream_error"
        )
    return notes


class _ScenarioClock:
    """Scenario time: ``(n - 1) * interval`` while request ``n`` runs (real seconds since
    the start when the scenario has no interval); recoveries scripted at a time are applied
    when it is reached, and circuit transitions are noted with it."""

    def __init__(self, interval_s: float, recoveries: Sequence[tuple[float, str]]) -> None:
        self.interval_s = interval_s
        self.request = 0
        self._start = time.monotonic()
        self._pending = sorted(recoveries)
        self.events: list[CircuitEvent] = []

    def __call__(self) -> float:
        if self.interval_s:
            return max(self.request - 1, 0) * self.interval_s
        return time.monotonic() - self._start

    async def advance(self, request: int, http: httpx.AsyncClient) -> None:
        """Move to ``request``'s time and recover the upstreams whose time has come."""
        self.request = request
        now = self()
        while self._pending and self._pending[0][0] <= now:
            _, url = self._pending.pop(0)
            await http.post(f"{url}/_mock/script", json={"script": "", "loop": False})

    def noted(self, entry: CircuitEntry, old: CircuitState, new: CircuitState) -> None:
        """A transition listener: note the change at the current scenario time."""
        self.events.append(
            CircuitEvent(self(), self.request, tuple(sorted(entry.labels)), old.value, new.value)
        )


async def _drive(
    server: ServerConfig,
    loaded: RehearsalConfig,
    count: int,
    stream: bool,
    seed: int,
    real_waits: bool,
    model: str,
    metadata: Mapping[str, Any] | None,
    clock: _ScenarioClock,
) -> tuple[list[RequestResult], tuple[MetricDelta, ...], list[str], int]:
    registry = CollectorRegistry()
    sink = _LogSink()
    telemetry = Telemetry(metrics=GatewayMetrics(registry), logger=sink, detail="off")
    contexts: dict[str, RequestContext] = {}

    def keep(ctx: RequestContext, status: int) -> None:
        contexts[ctx.request_id] = ctx

    telemetry.request_hooks.append(keep)
    # The production wire client, created before the first request so that its one-off
    # set-up cost is not charged to the first attempt's request_timeout.
    upstream = default_upstream()
    deps = GatewayDeps(
        upstream=upstream,
        telemetry=telemetry,
        sleep=_Waits(None if real_waits else SHORT_WAIT_S),
        rand=random.Random(seed).random,
        circuits=CircuitRegistry(now=clock),
    )
    assert deps.circuits is not None
    deps.circuits.listen(clock.noted)
    # A rehearsal drives routing, not gateway auth (whose keys may be stored only as
    # hashes): the rehearsed gateway runs without it.
    server = server.model_copy(update={"auth": AuthSettings()})
    headers: dict[str, str] = {}
    if metadata is not None:
        headers["x-portkey-metadata"] = json.dumps(metadata)
    before = metric_values(registry)
    timeout = httpx.Timeout(server.limits.request_deadline_ms / 1000 + 60)
    results: list[RequestResult] = []
    try:
        async with (
            httpx.AsyncClient(
                transport=AsyncTransport(server, deps), base_url=_CLIENT_BASE_URL, timeout=timeout
            ) as client,
            httpx.AsyncClient(timeout=10) as control,
        ):
            drive = _Drive(client, contexts, headers, model, stream)
            for number in range(1, count + 1):
                await clock.advance(number, control)
                results.append(await drive.one(number))
    finally:
        await upstream.aclose()
    deltas = metric_deltas(before, metric_values(registry), _documentation(registry))
    return results, deltas, sink.errors, telemetry.errors


def rehearse(
    loaded: RehearsalConfig,
    scenario: Scenario,
    *,
    requests: int | None = None,
    stream: bool | None = None,
    seed: int = 0,
    real_waits: bool = False,
    deadline_ms: int = DEFAULT_DEADLINE_MS,
    model: str = "gpt-4o-mini",
    metadata: Mapping[str, Any] | None = None,
) -> Report:
    """Run ``scenario`` against ``loaded`` and return the :class:`Report`.

    ``requests`` and ``stream`` override the scenario's; ``seed`` seeds the gateway's random
    draws (jitter, loadbalance) and the simulators' error dice; ``real_waits`` sleeps
    backoff and Retry-After waits in full; the request deadline is the smaller of the
    server's and ``deadline_ms``. ``model`` and ``metadata`` (sent as
    ``x-portkey-metadata``) shape the requests. Blocking: runs its own event loop, and the
    simulators in threads. Raises :class:`ScenarioError` when the scenario names a target
    the config does not have.
    """
    faults = _resolve_faults(scenario, loaded.targets)
    count = requests if requests is not None else scenario.requests
    streamed = scenario.stream if stream is None else stream
    configured = loaded.server.limits.request_deadline_ms
    deadline = min(configured, deadline_ms)
    simulators = _Simulators()
    recoveries: list[tuple[float, str]] = []
    try:
        hosts: dict[str, str] = {}
        for index, (target, target_faults) in enumerate(zip(loaded.targets, faults, strict=True)):
            # A hang or stall outlasts the request deadline by a second, then gives up.
            hang_s = deadline / 1000 + 1
            settings = target_faults.settings(target.label, seed + index, hang_s=hang_s)
            url = simulators.start(settings)
            hosts[target.path] = url + _API_SUFFIX.get(target.provider, "/v1")
            if target_faults.recover_at_ms is not None:
                recoveries.append((target_faults.recover_at_ms / 1000, url))
        node = _with_hosts(loaded.node, "config", hosts)
        server = loaded.server.model_copy(
            update={
                "configs": {loaded.config_id: node},
                "default_config": loaded.config_id,
                "limits": loaded.server.limits.model_copy(update={"request_deadline_ms": deadline}),
            }
        )
        clock = _ScenarioClock(scenario.interval_ms / 1000, recoveries)
        results, deltas, internal, telemetry_errors = asyncio.run(
            _drive(server, loaded, count, streamed, seed, real_waits, model, metadata, clock)
        )
    finally:
        simulators.stop()
    return Report(
        scenario=scenario,
        config=loaded,
        faults=faults,
        requests=tuple(results),
        stream=streamed,
        seed=seed,
        real_waits=real_waits,
        deadline_ms=deadline,
        configured_deadline_ms=configured,
        metrics=deltas,
        notes=tuple(_notes(loaded, faults, streamed, deadline)),
        internal_errors=tuple(internal),
        telemetry_errors=telemetry_errors,
        circuits=tuple(clock.events),
    )
