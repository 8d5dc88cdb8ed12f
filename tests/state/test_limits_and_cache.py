"""Key limits, target limits and the response cache, in-process on the in-memory state."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette

from relaygate.exporters import semconv as sc
from relaygate.security.keys import hash_key
from relaygate.telemetry import Telemetry
from tests.fakes import ChunkStream, RecordingTransport, chat_payload, sse_event, sse_response
from tests.inprocess import asgi_client, gateway_app

CHAT = "/v1/chat/completions"
BODY: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
ALICE, BOB = "rg-alice-key", "rg-bob-key"


def server(
    *, limits: dict[str, Any] | None = None, cache: bool = False, **extra: Any
) -> dict[str, Any]:
    """A server config with gateway keys alice (``limits``) and bob, and one default target
    (cached when ``cache``)."""
    default: dict[str, Any] = {"provider": "openai", "api_key": "sk-up"}
    if cache:
        default["cache"] = {"mode": "simple", "max_age": 60}
    alice: dict[str, Any] = {"name": "alice", "hash": hash_key(ALICE)}
    if limits:
        alice["limits"] = limits
    return {
        "auth": {"keys": [alice, {"name": "bob", "hash": hash_key(BOB)}]},
        "default_config": default,
        **extra,
    }


def streamed(body: bytes) -> httpx.Response:
    """A fresh streamed answer of ``body`` (an answer's stream is read once)."""
    return sse_response(ChunkStream([body]))


async def drained(app: Starlette) -> None:
    """Wait for the gateway's background state writes (cache stores, usage counts)."""
    await app.state.gateway.background.drain()


def post(client: httpx.AsyncClient, key: str, body: Any = None, **headers: str) -> Any:
    return client.post(
        CHAT, json=body or BODY, headers={"authorization": f"Bearer {key}", **headers}
    )


def metric(telemetry: Telemetry, name: str, **labels: str) -> float:
    return telemetry.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_key_over_its_requests_per_minute_gets_429_with_retry_after(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    upstream = RecordingTransport()
    app = gateway_app(server(limits={"requests_per_minute": 2}), telemetry, upstream)
    async with asgi_client(app) as client:
        statuses = [(await post(client, ALICE)).status_code for _ in range(2)]
        refused = await post(client, ALICE)
        other = await post(client, BOB)
    assert statuses == [200, 200]
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "rate_limit_error"
    assert "requests-per-minute" in error["message"]
    assert other.status_code == 200  # bob has no limit and his own count
    assert len(upstream.requests) == 3  # the refused request was never routed
    assert metric(telemetry, "relaygate_rate_limited_total", scope="key", limit="requests") == 1
    events = [e for s in spans.get_finished_spans() for e in s.events]
    limited = [e for e in events if e.name == sc.EVENT_RATE_LIMITED]
    assert [dict(e.attributes or {}) for e in limited] == [
        {sc.RATE_LIMIT_SCOPE: "key", sc.RATE_LIMIT_KIND: "requests"}
    ]


async def test_tokens_per_minute_count_upstream_usage_of_streams_too(telemetry: Telemetry) -> None:
    usage = {**chat_payload(), "usage": {"prompt_tokens": 6, "completion_tokens": 4}}
    stream_body = sse_event(usage) + b"data: [DONE]\n\n"
    upstream = RecordingTransport(lambda _: streamed(stream_body))
    app = gateway_app(server(limits={"tokens_per_minute": 15}), telemetry, upstream)
    async with asgi_client(app) as client:
        first = await post(client, ALICE, {**BODY, "stream": True})
        await drained(app)
        second = await post(client, ALICE, {**BODY, "stream": True})
        await drained(app)
        third = await post(client, ALICE, {**BODY, "stream": True})
    # 10 tokens, then 20: the third request finds the minute's tokens used.
    assert [first.status_code, second.status_code, third.status_code] == [200, 200, 429]
    assert third.json()["error"]["code"] == "rate_limit_exceeded"
    assert metric(telemetry, "relaygate_rate_limited_total", scope="key", limit="tokens") == 1


async def test_a_spent_budget_answers_429_insufficient_quota(telemetry: Telemetry) -> None:
    # chat_payload's usage: 3 input and 2 output tokens, at $1,000,000 per million: $5.
    prices = {"gpt-4o-mini": {"input_per_mtok": 1_000_000, "output_per_mtok": 1_000_000}}
    app = gateway_app(
        server(limits={"budget_usd": 9, "budget_period": "month"}, prices=prices),
        telemetry,
        RecordingTransport(),
    )
    async with asgi_client(app) as client:
        answers = []
        for _ in range(3):
            answers.append(await post(client, ALICE))
            await drained(app)
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json()["error"]["code"] == "budget_exceeded"
    assert answers[2].json()["error"]["type"] == "insufficient_quota"


async def test_a_cached_answer_is_served_again_with_hit_and_no_upstream_call(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    upstream = RecordingTransport()
    app = gateway_app(server(cache=True), telemetry, upstream)
    async with asgi_client(app) as client:
        miss = await post(client, ALICE)
        await drained(app)
        # The same request with its keys in another order and other spacing.
        reordered = {"messages": BODY["messages"], "model": BODY["model"]}
        hit = await post(client, ALICE, reordered)
    assert miss.headers["x-portkey-cache-status"] == "MISS"
    assert hit.headers["x-portkey-cache-status"] == "HIT"
    assert hit.status_code == 200 and hit.json() == miss.json()
    assert hit.headers["x-relaygate-route"] == "cache:hit"
    assert len(upstream.requests) == 1
    assert metric(telemetry, "relaygate_cache_lookups_total", config="default", result="hit") == 1
    assert metric(telemetry, "relaygate_cache_lookups_total", config="default", result="miss") == 1
    server_spans = [s for s in spans.get_finished_spans() if s.name.startswith("POST")]
    assert server_spans[-1].attributes is not None
    assert server_spans[-1].attributes[sc.ROUTE] == "cache:hit"
    statuses = [
        dict(e.attributes or {})[sc.CACHE_STATUS]
        for s in server_spans
        for e in s.events
        if e.name == sc.EVENT_CACHE
    ]
    assert statuses == ["miss", "hit"]


async def test_the_cache_is_not_shared_across_gateway_keys_unless_configured(
    telemetry: Telemetry,
) -> None:
    upstream = RecordingTransport()
    app = gateway_app(server(cache=True), telemetry, upstream)
    async with asgi_client(app) as client:
        await post(client, ALICE)
        await drained(app)
        bob = await post(client, BOB)
        await drained(app)
        again = await post(client, ALICE)
    assert bob.headers["x-portkey-cache-status"] == "MISS"
    assert again.headers["x-portkey-cache-status"] == "HIT", "the key's own answer is cached"
    assert len(upstream.requests) == 2


async def test_a_shared_cache_serves_every_key(telemetry: Telemetry) -> None:
    upstream = RecordingTransport()
    config = server(cache=True, state={"cache": {"share_across_keys": True}})
    app = gateway_app(config, telemetry, upstream)
    async with asgi_client(app) as client:
        await post(client, ALICE)
        await drained(app)
        bob = await post(client, BOB)
    assert bob.headers["x-portkey-cache-status"] == "HIT"
    assert len(upstream.requests) == 1


async def test_a_flood_of_cached_requests_never_resets_a_keys_count(telemetry: Telemetry) -> None:
    # The cache holds 4 answers; bob then asks 40 distinct cached questions. Were counters
    # and cached answers one store, alice's count would be evicted and her limit reset.
    upstream = RecordingTransport()
    config = server(
        limits={"requests_per_minute": 3}, cache=True, state={"cache": {"max_entries": 4}}
    )
    app = gateway_app(config, telemetry, upstream, wall=lambda: 1_000_020.0)
    ask = [{**BODY, "messages": [{"role": "user", "content": f"q{n}"}]} for n in range(40)]
    async with asgi_client(app) as client:
        before = [(await post(client, ALICE, ask[n])).status_code for n in range(2)]
        for body in ask:
            assert (await post(client, BOB, body)).headers["x-portkey-cache-status"] == "MISS"
            await drained(app)
        after = [(await post(client, ALICE, ask[n])).status_code for n in range(2, 4)]
    assert before + after == [200, 200, 200, 429]
    assert app.state.gateway.state.sizes()[1] == 4  # the cache kept to its own bound


async def test_failures_and_streams_are_not_cached(telemetry: Telemetry) -> None:
    stream_body = sse_event(chat_payload()) + b"data: [DONE]\n\n"
    upstream = RecordingTransport(
        httpx.Response(500, json={"error": {"message": "boom"}}),
        lambda _: streamed(stream_body),
    )
    app = gateway_app(server(cache=True), telemetry, upstream)
    async with asgi_client(app) as client:
        failed = await post(client, ALICE)
        await drained(app)
        streamed = [await post(client, ALICE, {**BODY, "stream": True}) for _ in range(2)]
    assert failed.status_code == 500 and failed.headers["x-portkey-cache-status"] == "MISS"
    assert all("x-portkey-cache-status" not in s.headers for s in streamed)
    assert len(upstream.requests) == 3


async def test_a_target_over_its_limit_is_skipped_by_fallback(telemetry: Telemetry) -> None:
    upstream = RecordingTransport()
    config = {
        "default_config": {
            "strategy": {"mode": "fallback"},
            "targets": [
                {"provider": "openai", "api_key": "sk-a", "override_params": {"model": "big"}},
                {"provider": "openai", "api_key": "sk-b", "override_params": {"model": "small"}},
            ],
        },
        "rate_limits": {
            "targets": [{"provider": "openai", "model": "big", "requests_per_minute": 1}]
        },
    }
    app = gateway_app(config, telemetry, upstream)
    async with asgi_client(app) as client:
        first = await client.post(CHAT, json=BODY)
        second = await client.post(CHAT, json=BODY)
    assert first.headers["x-relaygate-route"] == "config.targets[0]:200"
    assert second.status_code == 200
    assert second.headers["x-relaygate-route"] == (
        "config.targets[0]:rate_limited>config.targets[1]:200"
    )
    models = [orjson.loads(body)["model"] for body in upstream.bodies]
    assert models == ["big", "small"]
    assert metric(telemetry, "relaygate_rate_limited_total", scope="target", limit="requests") == 1
    moved = metric(
        telemetry,
        "relaygate_fallbacks_total",
        config="default",
        from_target="config.targets[0]",
        to_target="config.targets[1]",
        reason="rate_limited",
    )
    assert moved == 1


async def test_a_lone_target_over_its_limit_answers_429(telemetry: Telemetry) -> None:
    config = {
        "default_config": {"provider": "openai", "api_key": "sk-a"},
        "rate_limits": {"targets": [{"provider": "openai", "requests_per_minute": 1}]},
    }
    app = gateway_app(config, telemetry, RecordingTransport())
    async with asgi_client(app) as client:
        await client.post(CHAT, json=BODY)
        refused = await client.post(CHAT, json=BODY)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-relaygate-route"] == "config:rate_limited"


async def test_conditional_metadata_is_part_of_the_cache_key(telemetry: Telemetry) -> None:
    upstream = RecordingTransport()
    app = gateway_app(server(cache=True), telemetry, upstream)
    async with asgi_client(app) as client:
        await post(client, ALICE, **{"x-portkey-metadata": '{"tier": "paid"}'})
        await drained(app)
        other = await post(client, ALICE, **{"x-portkey-metadata": '{"tier": "free"}'})
        await drained(app)
        same = await post(client, ALICE, **{"x-portkey-metadata": '{"tier": "paid"}'})
    assert other.headers["x-portkey-cache-status"] == "MISS"
    assert same.headers["x-portkey-cache-status"] == "HIT", "the same metadata is cached"
    assert len(upstream.requests) == 2


def test_a_reload_names_the_state_settings_it_cannot_apply() -> None:
    from relaygate.config.server import ServerConfig
    from relaygate.reload import restart_only_changes

    old = ServerConfig.model_validate({})
    new = ServerConfig.model_validate(
        {
            "state": {
                "redis": {"url": "redis://127.0.0.1:6379/0"},
                "cache": {"max_entries": 5},
                "counters": {"max_entries": 7},
            }
        }
    )
    assert restart_only_changes(old, new) == [
        "state.redis",
        "state.cache.max_entries",
        "state.counters.max_entries",
    ]
