"""End to end through the two embedded edges of relaygate, with the official openai SDK.

* Mounted: :func:`relaygate.app.create_app` inside a host Starlette app under
  ``Mount("/llm", ...)``, served on loopback; the SDK's base URL is ``.../llm/v1``.
* In-process: :class:`relaygate.transport.AsyncTransport` handed to ``openai.AsyncOpenAI``
  through ``httpx.AsyncClient(transport=...)``; no gateway server, only the upstreams are
  real servers on loopback.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from relaygate.app import create_app
from relaygate.transport import AsyncTransport
from tests.e2e.helpers_e2e import (
    CLIENT_TIMEOUT_S,
    FALLBACK,
    MESSAGES,
    RETRY,
    STREAMING,
    TIMEOUT,
    Mocks,
    Recovery,
    answer_of,
    config_header,
    openai_client,
    retry_and_timeout_configs,
    server_config,
)
from tests.servers import RunningServer, serve_in_thread

IN_PROCESS_URL = "http://relaygate.local/v1"


def _gateway_config(mocks: Mocks) -> dict[str, Any]:
    alpha, beta = mocks["alpha"], mocks["beta"]
    return server_config(
        {
            "fallback": {
                "strategy": {"mode": "fallback"},
                "targets": [alpha.target(), beta.target(provider="together-ai")],
            },
            **retry_and_timeout_configs(alpha, beta),
            "embed": alpha.target(override_params={"model": "embed-model"}),
        }
    )


# --- mounted in a host app ----------------------------------------------------------------


async def _home(_: Request) -> Response:
    return PlainTextResponse("host home")


@pytest.fixture(scope="module")
def host(mocks: Mocks) -> Iterator[RunningServer]:
    """A host Starlette app with relaygate mounted under ``/llm``, served on loopback.

    The test server runs without lifespan events, so the host closes the mounted gateway's
    upstream client through its own ``POST /_close`` route (in the server's event loop).
    """
    relay = create_app(_gateway_config(mocks))

    async def close(_: Request) -> Response:
        await relay.state.gateway.aclose()
        return PlainTextResponse("closed")

    app = Starlette(
        routes=[
            Route("/", _home),
            Route("/_close", close, methods=["POST"]),
            Mount("/llm", app=relay),
        ]
    )
    with serve_in_thread(app) as server:
        yield server
        httpx.post(f"{server.url}/_close", timeout=CLIENT_TIMEOUT_S).raise_for_status()


@pytest.fixture(scope="module")
def mounted_client(host: RunningServer) -> Iterator[openai.OpenAI]:
    """An openai SDK client whose base URL is the mounted gateway."""
    with openai_client(f"{host.url}/llm/v1") as sdk:
        yield sdk


@STREAMING
def test_mounted_gateway_falls_back_after_a_503(
    mounted_client: openai.OpenAI, mocks: Mocks, stream: bool
) -> None:
    headers = FALLBACK.through(mounted_client, mocks, stream=stream)
    assert headers["x-portkey-provider"] == "together-ai"


def test_mounting_keeps_the_host_routes_and_serves_health_under_the_prefix(
    host: RunningServer,
) -> None:
    with httpx.Client(base_url=host.url, timeout=CLIENT_TIMEOUT_S) as http:
        assert http.get("/").text == "host home"
        assert http.get("/llm/health").status_code == 200
        assert http.get("/health").status_code == 404


# --- in-process transport -----------------------------------------------------------------


@pytest.fixture
async def in_process(mocks: Mocks) -> AsyncIterator[openai.AsyncOpenAI]:
    """An ``AsyncOpenAI`` whose HTTP client runs relaygate in this event loop."""
    transport = AsyncTransport(_gateway_config(mocks))
    http_client = httpx.AsyncClient(transport=transport, timeout=CLIENT_TIMEOUT_S)
    sdk = openai.AsyncOpenAI(
        base_url=IN_PROCESS_URL,
        api_key="x",
        max_retries=0,
        timeout=CLIENT_TIMEOUT_S,
        # The SDK accepts an httpx (not only httpx2) client; its annotation names httpx2 only.
        http_client=http_client,  # type: ignore[arg-type]
    )
    try:
        yield sdk
    finally:
        await sdk.close()
        await transport.aclose()


async def achat(
    sdk: openai.AsyncOpenAI, config: str, *, stream: bool = False
) -> tuple[Mapping[str, str], str]:
    """One chat completion through the async SDK: the response headers and the answer text
    (a stream's deltas joined)."""
    raw = await sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=stream, extra_headers=config_header(config)
    )
    answer = raw.parse()
    if isinstance(answer, openai.AsyncStream):
        parts: list[str] = []
        async for chunk in answer:
            parts.extend(choice.delta.content or "" for choice in chunk.choices)
        return raw.headers, "".join(parts)
    assert not stream
    return raw.headers, answer.choices[0].message.content or ""


@STREAMING
@pytest.mark.parametrize("recovery", [FALLBACK, RETRY, TIMEOUT], ids=lambda r: r.config)
async def test_in_process_transport_recovers_like_the_served_gateway(
    in_process: openai.AsyncOpenAI, mocks: Mocks, recovery: Recovery, stream: bool
) -> None:
    mocks["alpha"].script(recovery.script)
    headers, text = await achat(in_process, recovery.config, stream=stream)
    recovery.check(headers, text)
    if recovery is RETRY:
        assert headers["x-portkey-retry-attempt-count"] == "1"
        assert (mocks["alpha"].hits(), mocks["beta"].hits()) == (2, 0)


async def test_in_process_transport_embeddings_decode_to_the_upstream_vectors(
    in_process: openai.AsyncOpenAI, mocks: Mocks
) -> None:
    inputs = ["first text", "second text"]
    result = await in_process.embeddings.create(
        model="text-embed", input=inputs, extra_headers=config_header("embed")
    )
    assert result.model == "embed-model"
    assert [item.embedding for item in result.data] == mocks["alpha"].vectors(inputs)


async def test_in_process_transport_embeddings_asked_as_floats(
    in_process: openai.AsyncOpenAI, mocks: Mocks
) -> None:
    inputs = ["only text"]
    result = await in_process.embeddings.create(
        model="text-embed",
        input=inputs,
        encoding_format="float",
        extra_headers=config_header("embed"),
    )
    assert [item.embedding for item in result.data] == mocks["alpha"].vectors(inputs)


@STREAMING
async def test_in_process_transport_serves_the_messages_api_with_fallback(
    mocks: Mocks, stream: bool
) -> None:
    mocks["alpha"].script("503")
    body = {
        "model": "claude-any",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "Hello."}],
        "stream": stream,
    }
    transport = AsyncTransport(_gateway_config(mocks))
    async with httpx.AsyncClient(transport=transport, base_url=IN_PROCESS_URL) as client:
        answer = await client.post(
            "/messages", json=body, headers={**config_header("fallback"), "x-api-key": "x"}
        )
        refused = await client.post("/messages", json={"model": "m", "messages": []})
    await transport.aclose()
    assert answer.status_code == 200
    assert answer.headers["request-id"] == answer.headers["x-request-id"]
    if stream:
        texts = [
            json.loads(line[6:])["delta"]["text"]
            for line in answer.text.splitlines()
            if line.startswith("data: ") and '"text_delta"' in line
        ]
        assert "".join(texts) == answer_of("beta")
        assert answer.text.rstrip().endswith('data: {"type":"message_stop"}')
    else:
        assert answer.json()["content"] == [{"type": "text", "text": answer_of("beta")}]
    assert refused.status_code == 400
    assert refused.json()["type"] == "error"
