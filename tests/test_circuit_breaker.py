"""Circuit breakers through the whole gateway pipeline, on an injected breaker clock.

Upstreams are httpx.MockTransport handlers keyed by host; the breaker clock is a plain
number the test moves, so a minute-long outage runs in milliseconds and nothing is timed.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from structlog.testing import capture_logs

from relaygate.app import create_app
from relaygate.circuits import CircuitRegistry
from relaygate.config.server import parse_server_config
from relaygate.config.tree import compile_config
from relaygate.exchange import Operation
from relaygate.exporters import semconv as sc
from relaygate.gateway import Gateway, GatewayDeps
from relaygate.providers.client import HttpxUpstream
from relaygate.telemetry import Telemetry
from tests.fakes import RecordingSleep

CHAT = {"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]}


class Clock:
    """The breaker clock: seconds, moved by the test."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Hosts:
    """Upstreams by host: each is up (200) or down (503); records every call."""

    def __init__(self, *down: str) -> None:
        self.down = set(down)
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.calls.append(host)
        if host in self.down:
            return httpx.Response(503, json={"error": {"message": "down", "type": "x"}})
        body = {
            "id": "r",
            "object": "chat.completion",
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": host},
                    "finish_reason": "stop",
                }
            ],
        }
        return httpx.Response(200, json=body)

    def count(self, host: str) -> int:
        return self.calls.count(host)


def node(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "openai",
        "api_key": f"sk-{name}",
        "custom_host": f"http://{name}.test/v1",
        **extra,
    }


def build(
    hosts: Hosts,
    config: dict[str, Any],
    telemetry: Telemetry,
    clock: Clock,
    *,
    registry: CircuitRegistry | None = None,
    server: dict[str, Any] | None = None,
) -> Gateway:
    document: dict[str, Any] = {
        "default_config": config,
        "configs": {"named": config},
        **(server or {}),
    }
    client = httpx.AsyncClient(transport=httpx.MockTransport(hosts))
    deps = GatewayDeps(
        upstream=HttpxUpstream(client),
        telemetry=telemetry,
        sleep=RecordingSleep(),
        circuits=registry if registry is not None else CircuitRegistry(now=clock),
    )
    return Gateway(parse_server_config(document), deps)


async def ask(
    gw: Gateway, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    edge = await gw.handle(Operation.CHAT, orjson.dumps(CHAT), headers or {})
    return edge.status, dict(edge.headers), orjson.loads(edge.body or b"null")


CB = {"failure_threshold": 3, "cooldown_interval": 20_000}


def fallback(cb: dict[str, Any] | None = CB, retry: int = 2) -> dict[str, Any]:
    strategy: dict[str, Any] = {"mode": "fallback"}
    if cb is not None:
        strategy["cb_config"] = cb
    return {
        "strategy": strategy,
        "targets": [node("primary", retry={"attempts": retry}), node("backup")],
    }


def metric(tel: Telemetry, name: str, **labels: str) -> float:
    return tel.metrics.registry.get_sample_value(name, labels) or 0.0


PRIMARY = {"config": "default", "target": "primary", "provider": "openai", "model": "other"}


async def test_a_minute_long_outage_costs_the_primary_a_handful_of_attempts(
    telemetry: Telemetry,
) -> None:
    """The issue's outage: a request every 4 s, the primary down for 60 s, then back."""
    clock, hosts = Clock(), Hosts("primary.test")
    gw = build(hosts, fallback(), telemetry, clock)
    served: list[tuple[float, str, str]] = []
    during_outage = 0
    for i in range(25):
        clock.t = i * 4.0
        if clock.t >= 60 and hosts.down:
            hosts.down.clear()
            during_outage = hosts.count("primary.test")
        status, headers, _ = await ask(gw)
        assert status == 200, (clock.t, headers)
        path = headers["x-portkey-last-used-option-index"]
        served.append((clock.t, path, headers["x-relaygate-route"]))

    # Opened by the first request's three attempts, then one probe per 20 s cooldown.
    assert during_outage == 3 + 2
    assert all(path == "config.targets[1]" for t, path, _ in served if t < 60)
    assert served[0][2] == "config.targets[0]:503,503,503>config.targets[1]:200"
    assert served[1][2] == "config.targets[0]:open>config.targets[1]:200"
    assert served[5][2] == "config.targets[0]:503>config.targets[1]:200"  # t=20: a probe
    back = next(t for t, path, _ in served if path == "config.targets[0]")
    assert 60 <= back <= 60 + 20  # within one cooldown of the recovery
    assert all(path == "config.targets[0]" for t, path, _ in served if t >= back)
    assert metric(telemetry, "relaygate_circuit_state", **PRIMARY, state="closed") == 1
    assert metric(telemetry, "relaygate_circuit_state", **PRIMARY, state="open") == 0
    opened = metric(telemetry, "relaygate_circuit_transitions_total", **PRIMARY, state="open")
    closed = metric(telemetry, "relaygate_circuit_transitions_total", **PRIMARY, state="closed")
    assert opened >= 1 and closed == 1
    skips = metric(
        telemetry,
        "relaygate_fallbacks_total",
        config="default",
        from_target="primary",
        to_target="backup",
        reason="circuit_open",
    )
    assert skips >= 10


async def test_an_open_circuit_stops_retries_at_once(telemetry: Telemetry) -> None:
    clock, hosts = Clock(), Hosts("primary.test")
    gw = build(
        hosts, fallback({"failure_threshold": 2, "cooldown_interval": 1000}, 5), telemetry, clock
    )
    status, headers, _ = await ask(gw)
    assert status == 200
    assert headers["x-relaygate-route"] == "config.targets[0]:503,503>config.targets[1]:200"


async def test_a_half_open_probe_that_fails_is_one_attempt(telemetry: Telemetry) -> None:
    clock, hosts = Clock(), Hosts("primary.test")
    gw = build(hosts, fallback(), telemetry, clock)
    await ask(gw)
    clock.t = 25
    status, headers, _ = await ask(gw)
    assert status == 200
    assert headers["x-relaygate-route"] == "config.targets[0]:503>config.targets[1]:200"
    assert metric(telemetry, "relaygate_circuit_state", **PRIMARY, state="open") == 1


async def test_every_target_open_is_tried_anyway_by_default(telemetry: Telemetry) -> None:
    clock, hosts = Clock(), Hosts("primary.test", "backup.test")
    config = fallback({"failure_threshold": 1, "cooldown_interval": 60_000}, 0)
    gw = build(hosts, config, telemetry, clock)
    await ask(gw)  # both open now
    hosts.down.clear()
    status, headers, _ = await ask(gw)
    assert status == 200
    assert headers["x-relaygate-route"] == "config.targets[0]:200"


async def test_every_target_open_can_be_refused_fast_naming_them(telemetry: Telemetry) -> None:
    clock, hosts = Clock(), Hosts("primary.test", "backup.test")
    cb = {"failure_threshold": 1, "cooldown_interval": 60_000, "on_all_open": "reject"}
    gw = build(hosts, fallback(cb, 0), telemetry, clock)
    await ask(gw)
    calls = len(hosts.calls)
    status, headers, body = await ask(gw)
    assert status == 503
    assert len(hosts.calls) == calls
    assert body["error"]["code"] == "circuit_open"
    assert "config.targets[0]" in body["error"]["message"]
    assert "config.targets[1]" in body["error"]["message"]
    assert headers["x-relaygate-route"] == "config.targets[0]:open>config.targets[1]:open"


async def test_a_header_config_shares_the_circuits_of_the_server_configs(
    telemetry: Telemetry,
) -> None:
    clock, hosts = Clock(), Hosts("primary.test")
    gw = build(hosts, fallback(), telemetry, clock)
    await ask(gw)
    inline = json.dumps(fallback())
    status, headers, _ = await ask(gw, {"x-portkey-config": inline})
    assert status == 200
    assert headers["x-relaygate-route"] == "config.targets[0]:open>config.targets[1]:200"


async def test_a_different_key_is_a_different_circuit(telemetry: Telemetry) -> None:
    clock, hosts = Clock(), Hosts("primary.test")
    gw = build(hosts, fallback(), telemetry, clock)
    await ask(gw)
    other = fallback()
    other["targets"][0]["api_key"] = "sk-someone-else"
    _, headers, _ = await ask(gw, {"x-portkey-config": json.dumps(other)})
    assert headers["x-relaygate-route"].startswith("config.targets[0]:503")


async def test_breaker_state_survives_a_new_gateway_sharing_the_registry(
    telemetry: Telemetry,
) -> None:
    clock, hosts = Clock(), Hosts("primary.test")
    registry = CircuitRegistry(now=clock)
    first = build(hosts, fallback(), telemetry, clock, registry=registry)
    await ask(first)
    await first.aclose()
    reloaded = build(hosts, fallback(), telemetry, clock, registry=registry)
    _, headers, _ = await ask(reloaded)
    assert headers["x-relaygate-route"] == "config.targets[0]:open>config.targets[1]:200"
    clock.t = 25  # a probe that fails: reported once, by the gateway still running
    await ask(reloaded)
    opened = metric(telemetry, "relaygate_circuit_transitions_total", **PRIMARY, state="open")
    assert opened == 2


async def test_loadbalance_sends_nothing_to_an_open_target(telemetry: Telemetry) -> None:
    clock, hosts = Clock(), Hosts("primary.test")
    config = {
        "strategy": {
            "mode": "loadbalance",
            "cb_config": {"failure_threshold": 1, "cooldown_interval": 60_000},
        },
        "targets": [node("primary", weight=100), node("backup", weight=1)],
    }
    gw = build(hosts, config, telemetry, clock)
    await ask(gw)  # weight 100: the primary is picked, fails, opens
    for _ in range(10):
        status, headers, _ = await ask(gw)
        assert status == 200
        assert headers["x-relaygate-route"] == "config.targets[1]:200"
    assert hosts.count("primary.test") == 1


async def test_the_default_breaker_opens_on_a_target_failing_every_request(
    telemetry: Telemetry,
) -> None:
    clock, hosts = Clock(), Hosts("primary.test")
    gw = build(hosts, fallback(None, 0), telemetry, clock)
    for _ in range(5):
        await ask(gw)
    _, headers, _ = await ask(gw)
    assert headers["x-relaygate-route"] == "config.targets[0]:open>config.targets[1]:200"
    assert hosts.count("primary.test") == 5


async def test_the_default_breaker_can_be_turned_off(telemetry: Telemetry) -> None:
    clock, hosts = Clock(), Hosts("primary.test")
    gw = build(hosts, fallback(None, 0), telemetry, clock, server={"breaker": {"enabled": False}})
    for _ in range(8):
        await ask(gw)
    assert hosts.count("primary.test") == 8


async def test_cb_config_enabled_false_turns_the_breaker_off_below_it(
    telemetry: Telemetry,
) -> None:
    clock, hosts = Clock(), Hosts("primary.test")
    gw = build(hosts, fallback({"enabled": False}, 0), telemetry, clock)
    for _ in range(8):
        await ask(gw)
    assert hosts.count("primary.test") == 8


async def test_a_skip_is_a_span_event_and_a_transition_is_logged(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    clock, hosts = Clock(), Hosts("primary.test")
    gw = build(hosts, fallback(), telemetry, clock)
    with capture_logs() as logs:
        await ask(gw)
        await ask(gw)
    events = [e for s in spans.get_finished_spans() for e in s.events]
    skipped = [e for e in events if e.name == sc.EVENT_CIRCUIT_OPEN]
    assert skipped and skipped[0].attributes[sc.TARGET_PATH] == "config.targets[0]"
    moved = [e for e in events if e.name == sc.EVENT_CIRCUIT_TRANSITION]
    assert moved and moved[0].attributes["to"] == "open"
    lines = [entry for entry in logs if entry["event"] == "circuit_transition"]
    assert lines[0]["to_state"] == "open" and lines[0]["log_level"] == "warning"
    assert "sk-primary" not in repr(logs)
    request = [entry for entry in logs if entry["event"] == "request"][-1]
    assert request["attempts"][0]["reason"] == "circuit_open"


@pytest.mark.parametrize(
    ("codes", "kept"), [([400], frozenset()), ([401, 408, 429, 500], frozenset({408, 429, 500}))]
)
def test_a_callers_cb_config_cannot_count_client_errors(
    codes: list[int], kept: frozenset[int]
) -> None:
    """Circuits are shared with the operator's configs: a caller's 4xx codes (other than 408
    and 429) are dropped, so a caller cannot open them with requests of its own making."""
    config = fallback({"failure_threshold": 1, "failure_status_codes": codes}, 0)
    caller = compile_config(config, config_id="inline", caller_supplied=True)
    operator = compile_config(config, config_id="named")
    assert caller.targets[0].breaker is not None and operator.targets[0].breaker is not None
    assert caller.targets[0].breaker.failure_status_codes == kept
    assert operator.targets[0].breaker.failure_status_codes == frozenset(codes)


async def test_the_status_page_shows_each_targets_circuit(telemetry: Telemetry) -> None:
    clock, hosts = Clock(), Hosts("primary.test")
    server = parse_server_config({"default_config": fallback()})
    client = httpx.AsyncClient(transport=httpx.MockTransport(hosts))
    deps = GatewayDeps(
        upstream=HttpxUpstream(client),
        telemetry=telemetry,
        sleep=RecordingSleep(),
        circuits=CircuitRegistry(now=clock),
    )
    app = create_app(server, deps)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw"
    ) as http:
        await http.post("/v1/chat/completions", json=CHAT)
        snapshot = (await http.get("/status.json")).json()
        (config,) = [c for c in snapshot["configs"] if c["id"] == "default"]
        circuits = {t["label"]: t["circuit"] for t in config["targets"]}
        assert circuits == {"primary": "open", "backup": "closed"}
        clock.t = 25
        snapshot = (await http.get("/status.json")).json()
        (config,) = [c for c in snapshot["configs"] if c["id"] == "default"]
        assert config["targets"][0]["circuit"] == "half_open"


async def test_a_nested_strategy_whose_targets_are_all_open_is_skipped_whole(
    telemetry: Telemetry,
) -> None:
    clock, hosts = Clock(), Hosts("a.test", "b.test")
    cb = {"failure_threshold": 1, "cooldown_interval": 60_000}
    config = {
        "strategy": {"mode": "fallback", "cb_config": cb},
        "targets": [
            {"strategy": {"mode": "fallback"}, "targets": [node("a"), node("b")]},
            node("c"),
        ],
    }
    gw = build(hosts, config, telemetry, clock)
    await ask(gw)  # a and b fail once each: both open
    status, headers, _ = await ask(gw)
    assert status == 200
    assert headers["x-relaygate-route"] == (
        "config.targets[0].targets[0]:open>config.targets[0].targets[1]:open>config.targets[1]:200"
    )
    assert hosts.count("a.test") == hosts.count("b.test") == 1


def sse(host: str, broken: bool) -> httpx.Response:
    async def body() -> Any:
        chunk = {
            "object": "chat.completion.chunk",
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": host}}],
        }
        yield b"data: " + orjson.dumps(chunk) + b"\n\n"
        if broken:
            raise httpx.ReadError("connection reset")
        yield b"data: [DONE]\n\n"

    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())


async def test_a_stream_that_breaks_midway_counts_as_a_failure(telemetry: Telemetry) -> None:
    clock = Clock()
    broken = {"value": True}

    def reply(request: httpx.Request) -> httpx.Response:
        return sse(request.url.host, broken["value"] and request.url.host == "primary.test")

    client = httpx.AsyncClient(transport=httpx.MockTransport(reply))
    server = parse_server_config(
        {"default_config": fallback({"failure_threshold": 2, "cooldown_interval": 10_000}, 0)}
    )
    gw = Gateway(
        server,
        GatewayDeps(
            upstream=HttpxUpstream(client),
            telemetry=telemetry,
            sleep=RecordingSleep(),
            circuits=CircuitRegistry(now=clock),
        ),
    )

    async def streamed() -> str:
        edge = await gw.handle(Operation.CHAT, orjson.dumps(dict(CHAT, stream=True)), {})
        assert edge.stream is not None
        async for _ in edge.stream:
            pass
        return dict(edge.headers)["x-relaygate-route"]

    assert await streamed() == "config.targets[0]:200"  # broke after the first chunk
    await streamed()
    assert await streamed() == "config.targets[0]:open>config.targets[1]:200"
    clock.t = 10
    broken["value"] = False
    assert await streamed() == "config.targets[0]:200"  # the probe: a whole stream
    assert await streamed() == "config.targets[0]:200"
    assert metric(telemetry, "relaygate_circuit_state", **PRIMARY, state="closed") == 1


async def test_when_only_open_targets_are_left_the_last_real_answer_stands(
    telemetry: Telemetry,
) -> None:
    clock, hosts = Clock(), Hosts("primary.test", "backup.test")
    config = fallback({"failure_threshold": 1, "cooldown_interval": 60_000}, 0)
    config["targets"][0]["cb_config"] = {"enabled": False}
    gw = build(hosts, config, telemetry, clock)
    await ask(gw)  # both fail; only the backup has a breaker: it opens
    status, headers, body = await ask(gw)
    assert status == 503
    assert body["error"]["message"] == "down"  # the primary's own answer, not a skip
    assert headers["x-relaygate-route"] == "config.targets[0]:503"
    assert hosts.count("backup.test") == 1


async def test_every_target_open_and_failing_is_each_tried_once(telemetry: Telemetry) -> None:
    """Tried anyway means the whole chain, not just its first target."""
    clock, hosts = Clock(), Hosts("primary.test", "backup.test")
    gw = build(
        hosts, fallback({"failure_threshold": 1, "cooldown_interval": 60_000}, 2), telemetry, clock
    )
    await ask(gw)  # both open
    status, headers, _ = await ask(gw)
    assert status == 503
    assert headers["x-relaygate-route"] == "config.targets[0]:503>config.targets[1]:503"
