"""The production wire client against a real local server: answers, streams, failures."""

from __future__ import annotations

import httpx
import orjson
import pytest

from relaygate.providers.base import UpstreamRequest
from relaygate.providers.client import (
    STREAM_BROKE,
    AiohttpUpstream,
    UpstreamFailure,
)
from relaygate.providers.handler import ProviderHandler
from relaygate.providers.registry import default_registry
from tests.conftest import MockFactory
from tests.fakes import gateway_request, target
from tests.servers import free_port

CHAT = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
STREAM = orjson.dumps(
    {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
)


def post(url: str, body: bytes, stream: bool = False, **headers: str) -> UpstreamRequest:
    return UpstreamRequest(
        method="POST",
        url=url,
        headers={"content-type": "application/json", "accept-encoding": "identity", **headers},
        content=body,
        stream=stream,
    )


async def test_a_complete_answer_comes_back_with_lowercase_headers(
    mock_upstream: MockFactory,
) -> None:
    server = mock_upstream(name="up")
    client = AiohttpUpstream()
    try:
        answer = await client.send(post(f"{server.url}/v1/chat/completions", CHAT))
    finally:
        await client.aclose()
    assert answer.status == 200 and answer.stream is None
    assert answer.headers["x-mock-name"] == "up"
    assert orjson.loads(answer.body)["choices"][0]["message"]["content"] == "Hello from up"


async def test_the_request_body_and_headers_arrive_as_sent(mock_upstream: MockFactory) -> None:
    server = mock_upstream(name="up")
    client = AiohttpUpstream()
    try:
        await client.send(post(f"{server.url}/v1/chat/completions", CHAT, authorization="Bearer k"))
        async with httpx.AsyncClient() as http:
            recorded = (await http.get(f"{server.url}/_mock/requests")).json()[-1]
    finally:
        await client.aclose()
    assert recorded["body"] == orjson.loads(CHAT)
    assert recorded["headers"]["authorization"] == "Bearer k"
    assert (
        "user-agent" not in recorded["headers"]
        or "aiohttp" not in recorded["headers"]["user-agent"].lower()
    )


async def test_an_error_status_is_an_answer_not_a_failure(mock_upstream: MockFactory) -> None:
    server = mock_upstream(name="up", script="429@retry_after=2")
    client = AiohttpUpstream()
    try:
        answer = await client.send(post(f"{server.url}/v1/chat/completions", CHAT))
    finally:
        await client.aclose()
    assert answer.status == 429 and answer.headers["retry-after"] == "2"


async def test_a_stream_is_handed_on_chunk_by_chunk_to_the_end(mock_upstream: MockFactory) -> None:
    server = mock_upstream(name="up")
    client = AiohttpUpstream()
    try:
        answer = await client.send(post(f"{server.url}/v1/chat/completions", STREAM, stream=True))
        assert answer.stream is not None
        data = b"".join([chunk async for chunk in answer.stream.relay()])
    finally:
        await client.aclose()
    assert data.endswith(b"data: [DONE]\n\n")


async def test_a_stream_cut_midway_ends_broken(mock_upstream: MockFactory) -> None:
    server = mock_upstream(name="up", script="200@cut_after_chunks=2")
    client = AiohttpUpstream()
    try:
        answer = await client.send(post(f"{server.url}/v1/chat/completions", STREAM, stream=True))
        assert answer.stream is not None
        stream = answer.stream.relay()
        async for _ in stream:
            pass
        assert stream.failure == "stream_error"
        assert stream.detail == STREAM_BROKE
    finally:
        await client.aclose()


async def test_a_refused_connection_is_an_upstream_failure() -> None:
    client = AiohttpUpstream()
    try:
        with pytest.raises(UpstreamFailure):
            await client.send(post(f"http://127.0.0.1:{free_port()}/v1/chat/completions", CHAT))
    finally:
        await client.aclose()


async def test_a_key_with_control_characters_is_a_400_not_a_crash_of_the_wire_client(
    mock_upstream: MockFactory,
) -> None:
    """aiohttp raises ``ValueError`` on such a header; the attempt stops before it."""
    server = mock_upstream(name="up")
    tgt = target("config", "openai", api_key="sk-a\nx-injected: 1", custom_host=f"{server.url}/v1")
    client = AiohttpUpstream()
    try:
        handler = ProviderHandler(default_registry(), client)
        response = await handler(gateway_request(target=tgt))
    finally:
        await client.aclose()
    assert response.status == 400
    assert response.body is not None
    assert orjson.loads(response.body)["error"]["code"] == "invalid_header_value"
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{server.url}/_mock/requests")).json() == []
