"""The upstream client: what goes on the wire, and how network trouble is reported."""

from __future__ import annotations

import httpx
import pytest

from relaygate.providers.base import UpstreamRequest
from relaygate.providers.client import (
    HttpxUpstream,
    UpstreamFailure,
    UpstreamStream,
)
from tests.fakes import ChunkStream, RecordingTransport, sse_response

BODY = b'{"model":"m",  "messages":[]}'


def wire(stream: bool = False, idle_timeout_s: float | None = None) -> UpstreamRequest:
    """A built upstream request to a placeholder host (never resolved: the transport is mocked)."""
    return UpstreamRequest(
        method="POST",
        url="http://upstream.invalid:8080/v1/chat/completions",
        headers={"authorization": "Bearer sk-1", "x-team": "search"},
        content=BODY,
        stream=stream,
        idle_timeout_s=idle_timeout_s,
    )


async def test_the_request_is_sent_exactly_as_built() -> None:
    transport = RecordingTransport()
    await transport.client().send(wire())
    (sent,) = transport.requests
    assert sent.method == "POST"
    assert str(sent.url) == "http://upstream.invalid:8080/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-1"
    assert sent.headers["x-team"] == "search"
    assert transport.bodies == [BODY]


async def test_a_complete_answer_carries_status_lower_case_headers_and_body() -> None:
    transport = RecordingTransport(
        httpx.Response(201, headers={"X-RateLimit-Remaining": "9"}, content=b'{"ok":1}')
    )
    answer = await transport.client().send(wire())
    assert answer.status == 201
    assert answer.headers["x-ratelimit-remaining"] == "9"
    assert answer.body == b'{"ok":1}'
    assert answer.stream is None


async def test_a_complete_answer_releases_its_connection() -> None:
    body = ChunkStream([b'{"ok":', b"1}"])
    transport = RecordingTransport(httpx.Response(200, stream=body))
    answer = await transport.client().send(wire())
    assert answer.body == b'{"ok":1}'
    assert body.closed


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("slow"),
        httpx.RemoteProtocolError("garbage"),
    ],
    ids=["refused", "connect-timeout", "protocol"],
)
async def test_a_network_error_becomes_an_upstream_failure(error: Exception) -> None:
    transport = RecordingTransport(error)
    with pytest.raises(UpstreamFailure) as caught:
        await transport.client().send(wire())
    assert type(error).__name__ in str(caught.value)


async def test_a_connection_cut_while_reading_the_answer_is_an_upstream_failure() -> None:
    body = ChunkStream([b'{"partial":'], error=httpx.ReadError("reset"))
    transport = RecordingTransport(httpx.Response(200, stream=body))
    with pytest.raises(UpstreamFailure):
        await transport.client().send(wire())


async def test_a_streamed_ok_answer_is_returned_unread() -> None:
    body = ChunkStream([b"data: 1\n\n", b"data: 2\n\n"])
    transport = RecordingTransport(sse_response(body))
    answer = await transport.client().send(wire(stream=True))
    assert answer.status == 200
    assert answer.body == b""
    assert answer.stream is not None
    assert [chunk async for chunk in answer.stream.relay()] == [b"data: 1\n\n", b"data: 2\n\n"]
    assert body.closed


async def test_an_error_answer_to_a_streaming_request_is_read_whole() -> None:
    transport = RecordingTransport(
        httpx.Response(503, headers={"content-type": "application/json"}, content=b'{"e":1}')
    )
    answer = await transport.client().send(wire(stream=True))
    assert answer.stream is None
    assert answer.body == b'{"e":1}'


async def test_a_json_answer_to_a_streaming_request_is_read_whole() -> None:
    transport = RecordingTransport(httpx.Response(200, json={"id": "x"}))
    answer = await transport.client().send(wire(stream=True))
    assert answer.stream is None
    assert answer.body == b'{"id":"x"}'


async def test_empty_chunks_of_a_stream_are_skipped() -> None:
    transport = RecordingTransport(sse_response(ChunkStream([b"", b"data: a\n\n", b""])))
    answer = await transport.client().send(wire(stream=True))
    assert answer.stream is not None
    assert [chunk async for chunk in answer.stream.relay()] == [b"data: a\n\n"]


async def test_a_stream_cut_midway_ends_broken_and_released() -> None:
    body = ChunkStream([b"data: a\n\n"], error=httpx.ReadError("reset"))
    answer = await RecordingTransport(sse_response(body)).client().send(wire(stream=True))
    assert answer.stream is not None
    stream = answer.stream.relay()
    assert [chunk async for chunk in stream] == [b"data: a\n\n"]
    assert stream.failure == "stream_error"
    assert stream.detail == "upstream stream broke: the connection closed mid-stream"
    assert body.closed


async def test_a_stream_silent_beyond_its_idle_timeout_ends_stalled_and_released() -> None:
    body = ChunkStream([b"data: a\n\n"], stall=True)
    transport = RecordingTransport(sse_response(body))
    answer = await transport.client().send(wire(stream=True, idle_timeout_s=0.05))
    assert answer.stream is not None
    stream = answer.stream.relay()
    assert [chunk async for chunk in stream] == [b"data: a\n\n"]
    assert stream.failure == "stream_idle"
    assert stream.detail is not None and "no data from upstream" in stream.detail
    assert body.closed


async def test_closing_a_stream_early_releases_the_connection() -> None:
    body = ChunkStream([b"data: a\n\n", b"data: b\n\n"])
    answer = await RecordingTransport(sse_response(body)).client().send(wire(stream=True))
    assert isinstance(answer.stream, UpstreamStream)
    await answer.stream.aclose()
    assert body.closed


async def test_closing_the_client_closes_the_httpx_client() -> None:
    client = httpx.AsyncClient(transport=httpx.MockTransport(RecordingTransport()))
    await HttpxUpstream(client).aclose()
    assert client.is_closed


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("https://api.openai.com/v1/chat/completions", "api.openai.com", 443),
        ("http://127.0.0.1:9001/v1/chat/completions", "127.0.0.1", 9001),
        ("http://upstream.invalid/v1", "upstream.invalid", 80),
        ("https://upstream.invalid:8443", "upstream.invalid", 8443),
    ],
)
def test_an_upstream_request_knows_its_host_and_port(url: str, host: str, port: int) -> None:
    request = UpstreamRequest(method="POST", url=url, headers={}, content=b"")
    assert (request.host, request.port) == (host, port)
