"""The Messages door at the edge: its SERVER spans name its own routes, and the chat body it
builds reaches the pipeline without being decoded a second time."""

from __future__ import annotations

import httpx
import orjson
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from relaygate.config.server import LimitsSettings
from relaygate.edge import EdgeCodec
from relaygate.exchange import Operation, RequestContext
from relaygate.frontdoor.anthropic_door import AnthropicMessagesDoor
from relaygate.telemetry import Telemetry
from relaygate.transport import AsyncTransport
from tests.fakes import RecordingTransport, chat_payload
from tests.inprocess import asgi_client, gateway_app

CONFIG = {
    "default_config": {"provider": "openai", "api_key": "sk", "custom_host": "http://up.test/v1"}
}
ASK = {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


def server_routes(spans: InMemorySpanExporter) -> list[tuple[str, object]]:
    return [
        (span.name, (span.attributes or {}).get("http.route"))
        for span in spans.get_finished_spans()
        if span.kind is SpanKind.SERVER
    ]


async def test_a_messages_request_is_traced_on_its_own_route(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    upstream = RecordingTransport(httpx.Response(200, json=chat_payload("Hello")))
    async with asgi_client(gateway_app(CONFIG, telemetry, upstream)) as client:
        answer = await client.post("/v1/messages", json=ASK)
    assert answer.status_code == 200 and answer.json()["content"][0]["text"] == "Hello"
    assert server_routes(spans) == [("POST /v1/messages", "/v1/messages")]
    # The OpenAI-compatible upstream got the chat request the door built.
    assert orjson.loads(upstream.requests[0].content)["messages"] == ASK["messages"]


async def test_a_refused_messages_request_and_a_refused_count_name_their_routes(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    async with asgi_client(gateway_app(CONFIG, telemetry, RecordingTransport())) as client:
        refused = await client.post("/v1/messages", json={"model": "m", "messages": []})
        counted = await client.post("/v1/messages/count_tokens", json=ASK)
    assert refused.status_code == 400 and refused.json()["type"] == "error"
    # An OpenAI target counts no tokens: a clear 400 in Anthropic's shape.
    assert counted.status_code == 400
    assert counted.json()["error"] == {
        "type": "invalid_request_error",
        "message": "provider 'openai' does not serve count_tokens",
    }
    assert server_routes(spans) == [
        ("POST /v1/messages", "/v1/messages"),
        ("POST /v1/messages/count_tokens", "/v1/messages/count_tokens"),
    ]


async def test_the_in_process_transport_traces_the_messages_route(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    from relaygate.gateway import GatewayDeps

    upstream = RecordingTransport(httpx.Response(200, json=chat_payload("Hello")))
    transport = AsyncTransport(CONFIG, GatewayDeps(upstream=upstream.client(), telemetry=telemetry))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw/v1") as http:
        answer = await http.post("/messages", json=ASK)
    assert answer.status_code == 200
    assert server_routes(spans) == [("POST /v1/messages", "/v1/messages")]


async def test_a_get_on_a_door_route_is_a_405_in_anthropics_shape_served_or_in_process(
    telemetry: Telemetry,
) -> None:
    from relaygate.gateway import GatewayDeps

    transport = AsyncTransport(
        CONFIG, GatewayDeps(upstream=RecordingTransport().client(), telemetry=telemetry)
    )
    async with (
        asgi_client(gateway_app(CONFIG, telemetry, RecordingTransport())) as served,
        httpx.AsyncClient(transport=transport, base_url="http://gw") as in_process,
    ):
        for client in (served, in_process):
            for path in ("/v1/messages", "/v1/messages/count_tokens"):
                answer = await client.get(path)
                assert answer.status_code == 405, path
                assert answer.headers["allow"] == "POST"
                body = answer.json()
                assert body["type"] == "error", body
                assert body["error"]["type"] == "invalid_request_error"


def test_the_door_hands_over_its_chat_body_parsed_and_the_codec_keeps_it() -> None:
    parsed, raw = AnthropicMessagesDoor().request(orjson.dumps({**ASK, "stream": True}))
    assert orjson.loads(raw) == parsed and parsed["stream"] is True
    codec = EdgeCodec(LimitsSettings())
    ctx = RequestContext(request_id="r", trace_id="t", metadata={})
    request = codec.parse(Operation.CHAT, raw, {}, ctx, parsed)
    assert request.body is parsed  # not decoded again
    assert request.raw_body == raw and request.stream is True


async def test_a_count_served_by_an_anthropic_target_and_an_unreadable_one(
    telemetry: Telemetry,
) -> None:
    config = {"default_config": {"provider": "anthropic", "api_key": "sk-ant",
                                 "custom_host": "http://claude.test/v1"}}  # fmt: skip
    counted = RecordingTransport(httpx.Response(200, json={"input_tokens": 12}))
    async with asgi_client(gateway_app(config, telemetry, counted)) as client:
        answer = await client.post("/v1/messages/count_tokens", json=ASK)
    assert answer.status_code == 200 and answer.json() == {"input_tokens": 12}
    assert str(counted.requests[0].url) == "http://claude.test/v1/messages/count_tokens"
    garbage = RecordingTransport(httpx.Response(200, json={"tokens": "many"}))
    async with asgi_client(gateway_app(config, telemetry, garbage)) as client:
        answer = await client.post("/v1/messages/count_tokens", json=ASK)
    assert answer.status_code == 502 and answer.json()["type"] == "error"
