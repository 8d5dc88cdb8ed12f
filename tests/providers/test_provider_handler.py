"""The innermost handler: one upstream attempt, every outcome turned into a response."""

from __future__ import annotations

from collections.abc import MutableMapping

import httpx
import orjson
import pytest

from relaygate.config.model import Target
from relaygate.exchange import GatewayResponse, ResponseStream
from relaygate.providers.client import UpstreamClient
from relaygate.providers.handler import ProviderHandler
from relaygate.providers.registry import default_registry
from tests.fakes import (
    ChunkStream,
    FakeUpstream,
    RecordingTransport,
    chat_payload,
    chunk_payload,
    connect_failure,
    gateway_request,
    sse_event,
    sse_response,
    target,
    upstream_json,
)

TARGET = target("config", "openai", api_key="sk-test", custom_host="http://upstream.invalid/v1")


async def attempt(
    client: UpstreamClient,
    *,
    tgt: Target = TARGET,
    stream: bool = False,
    headers: dict[str, str] | None = None,
) -> GatewayResponse:
    """One upstream attempt through a provider handler over ``client``."""
    handler = ProviderHandler(default_registry(), client)
    body = {"model": "gpt-4o-mini", "messages": [], "stream": stream}
    return await handler(gateway_request(body, target=tgt, stream=stream, headers=headers))


def error_of(response: GatewayResponse) -> dict[str, object]:
    """The OpenAI error object of a complete response."""
    assert response.body is not None
    error = orjson.loads(response.body)["error"]
    assert isinstance(error, dict)
    return error


async def drain(response: GatewayResponse) -> bytes:
    """Every byte of a streamed response."""
    assert response.stream is not None
    return b"".join([chunk async for chunk in response.stream])


async def test_an_ok_answer_is_passed_on_with_its_exact_bytes() -> None:
    raw = b'{"id": "chatcmpl-9",   "object": "chat.completion", "choices": []}'
    transport = RecordingTransport(
        httpx.Response(200, headers={"content-type": "application/json"}, content=raw)
    )
    response = await attempt(transport.client())
    assert response.status == 200
    assert response.body == raw
    assert response.failure is None
    assert response.payload == orjson.loads(raw)


async def test_the_request_reaches_the_targets_url_with_its_key() -> None:
    transport = RecordingTransport()
    await attempt(transport.client())
    (sent,) = transport.requests
    assert str(sent.url) == "http://upstream.invalid/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"


async def test_a_refused_connection_is_a_502_connect_error() -> None:
    transport = RecordingTransport(httpx.ConnectError("connection refused"))
    response = await attempt(transport.client())
    assert response.status == 502
    assert response.failure == "connect_error"
    error = error_of(response)
    assert error["type"] == "upstream_error"
    assert error["code"] == "upstream_connect_error"


async def test_an_upstream_failure_from_any_client_is_a_502_connect_error() -> None:
    response = await attempt(FakeUpstream(connect_failure()))
    assert (response.status, response.failure) == (502, "connect_error")
    assert response.status_as_sent is None  # nothing was answered


async def test_an_ok_answer_that_is_not_json_is_a_502_invalid_response() -> None:
    transport = RecordingTransport(httpx.Response(200, content=b"<html>gateway</html>"))
    response = await attempt(transport.client())
    assert response.status == 502
    assert response.failure == "invalid_response"
    assert error_of(response)["code"] == "upstream_invalid_response"
    assert response.status_as_sent == 200  # what the upstream sent, for the attempt


async def test_an_ok_answer_that_is_a_json_array_is_a_502_invalid_response() -> None:
    response = await attempt(FakeUpstream(upstream_json([1, 2, 3])))
    assert (response.status, response.failure) == (502, "invalid_response")


async def test_an_openai_shaped_error_is_passed_through_unchanged() -> None:
    raw = orjson.dumps(
        {"error": {"message": "Rate limit", "type": "requests", "param": None, "code": "rl"}}
    )
    transport = RecordingTransport(httpx.Response(429, headers={"retry-after": "2"}, content=raw))
    response = await attempt(transport.client())
    assert response.status == 429
    assert response.body == raw
    assert response.failure is None
    assert response.status_as_sent == 429
    assert response.headers["retry-after"] == "2"


async def test_a_plain_text_error_is_wrapped_in_the_openai_shape() -> None:
    transport = RecordingTransport(httpx.Response(500, content=b"Internal Server Error"))
    response = await attempt(transport.client())
    assert response.status == 500
    assert error_of(response) == {
        "message": "upstream 'openai' answered 500",
        "type": "upstream_error",
        "param": None,
        "code": "upstream_500",
    }


async def test_a_string_error_field_keeps_its_message_when_wrapped() -> None:
    response = await attempt(FakeUpstream(upstream_json({"error": "model overloaded"}, 503)))
    assert response.status == 503
    error = error_of(response)
    assert error["message"] == "model overloaded"
    assert error["code"] == "upstream_503"


async def test_an_error_body_of_another_shape_is_wrapped() -> None:
    response = await attempt(FakeUpstream(upstream_json({"detail": "Not Found"}, 404)))
    assert error_of(response)["message"] == "upstream 'openai' answered 404"


async def test_a_stream_is_relayed_byte_for_byte_to_its_end() -> None:
    events = [sse_event(chunk_payload("Hel")), sse_event(chunk_payload("lo")), sse_event("[DONE]")]
    transport = RecordingTransport(sse_response(ChunkStream(events)))
    response = await attempt(transport.client(), stream=True)
    assert response.status == 200
    assert response.failure is None
    assert await drain(response) == b"".join(events)


async def test_a_stream_that_breaks_before_its_first_chunk_is_a_502_stream_error() -> None:
    body = ChunkStream([], error=httpx.ReadError("connection reset"))
    response = await attempt(RecordingTransport(sse_response(body)).client(), stream=True)
    assert response.status == 502
    assert response.failure == "stream_error"
    assert response.stream is None
    assert error_of(response)["code"] == "upstream_stream_error"
    assert response.status_as_sent == 200


async def test_an_empty_stream_is_a_502_invalid_response() -> None:
    response = await attempt(
        RecordingTransport(sse_response(ChunkStream([]))).client(), stream=True
    )
    assert (response.status, response.failure) == (502, "invalid_response")


async def test_a_stream_that_breaks_midway_ends_with_an_error_event_and_no_done() -> None:
    first = sse_event(chunk_payload("Hel"))
    body = ChunkStream([first], error=httpx.ReadError("connection reset"))
    response = await attempt(RecordingTransport(sse_response(body)).client(), stream=True)
    assert response.status == 200
    received = await drain(response)
    assert received.startswith(first)
    assert b"[DONE]" not in received
    last = received[len(first) :]
    assert last.startswith(b"data: ") and last.endswith(b"\n\n")
    error = orjson.loads(last[len(b"data: ") :])["error"]
    assert error["code"] == "upstream_stream_interrupted"
    assert isinstance(response.stream, ResponseStream)
    assert response.stream.failure == "stream_error"
    assert body.closed


async def test_an_upstream_silent_longer_than_the_timeout_midway_ends_with_an_error_event() -> None:
    first = sse_event(chunk_payload("Hel"))
    body = ChunkStream([first], stall=True)
    tgt = target(
        "config", "openai", custom_host="http://upstream.invalid/v1", request_timeout_ms=50
    )
    response = await attempt(RecordingTransport(sse_response(body)).client(), tgt=tgt, stream=True)
    received = await drain(response)
    assert received.startswith(first)
    assert b"[DONE]" not in received
    error = orjson.loads(received[len(first) + len(b"data: ") :])["error"]
    assert "no data from upstream" in error["message"]
    assert error["code"] == "upstream_stream_interrupted"
    assert isinstance(response.stream, ResponseStream)
    assert response.stream.failure == "stream_idle"


async def test_closing_a_relayed_stream_releases_the_upstream_connection() -> None:
    body = ChunkStream([sse_event(chunk_payload("a")), sse_event(chunk_payload("b"))])
    response = await attempt(RecordingTransport(sse_response(body)).client(), stream=True)
    assert response.stream is not None
    await response.stream.__anext__()
    await response.aclose()
    assert body.closed


async def test_an_error_status_on_a_streaming_request_is_a_complete_error_answer() -> None:
    raw = orjson.dumps({"error": {"message": "bad key", "type": "auth"}})
    transport = RecordingTransport(
        httpx.Response(401, headers={"content-type": "application/json"}, content=raw)
    )
    response = await attempt(transport.client(), stream=True)
    assert response.status == 401
    assert response.stream is None
    assert response.body == raw


async def test_only_headers_the_target_forwards_reach_the_upstream() -> None:
    tgt = target(
        "config",
        "openai",
        custom_host="http://upstream.invalid/v1",
        forward_headers=("x-team",),
    )
    transport = RecordingTransport()
    headers = {"x-team": "search", "x-secret": "s3", "x-portkey-api-key": "gw-key"}
    await attempt(transport.client(), tgt=tgt, headers=headers)
    sent = transport.requests[0].headers
    assert sent["x-team"] == "search"
    assert "x-secret" not in sent
    assert "x-portkey-api-key" not in sent


async def test_trace_context_is_injected_into_the_upstream_request() -> None:
    def inject(carrier: MutableMapping[str, str]) -> None:
        carrier["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    transport = RecordingTransport(httpx.Response(200, json=chat_payload()))
    handler = ProviderHandler(default_registry(), transport.client(), inject)
    await handler(gateway_request(target=TARGET))
    assert transport.requests[0].headers["traceparent"].startswith("00-0af7651916")


async def test_an_error_answer_is_labelled_json_whatever_the_upstream_called_it() -> None:
    transport = RecordingTransport(
        httpx.Response(503, headers={"content-type": "text/html"}, content=b"<html>down</html>")
    )
    response = await attempt(transport.client())
    assert response.status == 503
    assert response.headers["content-type"] == "application/json"
    assert error_of(response)["code"] == "upstream_503"


@pytest.mark.parametrize("status", [101, 300, 302, 304])
async def test_an_informational_or_redirect_status_is_a_502_invalid_response(status: int) -> None:
    transport = RecordingTransport(httpx.Response(status, headers={"location": "http://x.invalid"}))
    response = await attempt(transport.client())
    assert response.status == 502
    assert response.failure == "invalid_response"
    assert error_of(response)["code"] == "upstream_invalid_response"
    assert response.status_as_sent == status


@pytest.mark.parametrize("key", ["sk-a\r\nx-injected: 1", "sk-\x00", "sk-\x7f"])
async def test_a_header_value_with_control_characters_is_refused_and_never_sent(key: str) -> None:
    transport = RecordingTransport()
    tgt = target("config", "openai", api_key=key, custom_host="http://upstream.invalid/v1")
    response = await attempt(transport.client(), tgt=tgt)
    assert response.status == 400
    error = error_of(response)
    assert error["code"] == "invalid_header_value"
    assert error["param"] == "authorization"
    assert key not in str(error) and "sk-" not in str(error)
    assert transport.requests == []


async def test_non_ascii_header_values_reach_the_upstream_as_utf8() -> None:
    tgt = target(
        "config",
        "openai",
        api_key="ключ",
        custom_host="http://upstream.invalid/v1",
        forward_headers=("x-team",),
    )
    transport = RecordingTransport()
    response = await attempt(transport.client(), tgt=tgt, headers={"x-team": "équipe"})
    assert response.status == 200
    sent = dict(transport.requests[0].headers.raw)
    assert sent[b"x-team"] == "équipe".encode()
    assert sent[b"authorization"] == "Bearer ключ".encode()
