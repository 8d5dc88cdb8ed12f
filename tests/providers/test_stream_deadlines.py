"""The streaming deadlines at the provider handler and the timeout layer around it.

``first_token_timeout``: until a stream's first chunk carrying content arrives, nothing is
handed on, so a slow start is an ordinary timeout. ``stream_idle_timeout``: once handed
on, a silent stream ends as a failed stream (``stream_idle``) with the in-band error event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import httpx
import orjson
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from relaygate.config.model import Target
from relaygate.exchange import GatewayResponse
from relaygate.exporters import semconv as sc
from relaygate.middleware.timeout import TimeoutLayer
from relaygate.providers.handler import ProviderHandler
from relaygate.providers.registry import default_registry
from relaygate.telemetry import Telemetry
from tests.fakes import (
    ChunkStream,
    RecordingTransport,
    chunk_payload,
    gateway_request,
    sse_event,
    sse_response,
    target,
)

HOST = "http://upstream.invalid/v1"
ROLE = sse_event(
    {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
    }
)
KEEP_ALIVE = b": keep-alive\n\n"
HEL, LO, DONE = sse_event(chunk_payload("Hel")), sse_event(chunk_payload("lo")), b"data: [DONE]\n\n"


class Paced(httpx.AsyncByteStream):
    """A response body sending each chunk after its delay (seconds), then ending."""

    def __init__(self, paced: Sequence[tuple[float, bytes]]) -> None:
        self._paced = list(paced)
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for delay, chunk in self._paced:
            await asyncio.sleep(delay)
            yield chunk

    async def aclose(self) -> None:
        self.closed = True


def stream_target(**settings: int) -> Target:
    """An openai target at :data:`HOST` with the given timeouts."""
    return target("config", "openai", custom_host=HOST, **settings)


async def attempt(
    body: httpx.AsyncByteStream, tgt: Target, telemetry: Telemetry
) -> GatewayResponse:
    """One streamed attempt through the timeout layer and the provider handler."""
    client = RecordingTransport(sse_response(body)).client()  # type: ignore[arg-type]
    handler = TimeoutLayer(telemetry)(ProviderHandler(default_registry(), client))
    request_body = {"model": "gpt-4o-mini", "messages": [], "stream": True}
    return await handler(gateway_request(request_body, target=tgt, stream=True))


async def chunks(response: GatewayResponse) -> list[bytes]:
    """The chunks of a streamed response, as handed on."""
    assert response.stream is not None
    return [chunk async for chunk in response.stream]


async def test_with_a_first_token_bound_the_opening_is_handed_on_with_the_first_content(
    telemetry: Telemetry,
) -> None:
    body = ChunkStream([ROLE, KEEP_ALIVE, HEL, LO, DONE])
    response = await attempt(body, stream_target(first_token_timeout_ms=5000), telemetry)
    assert response.status == 200
    assert await chunks(response) == [ROLE + KEEP_ALIVE + HEL, LO, DONE]


async def test_without_a_first_token_bound_the_first_chunk_is_handed_on_alone(
    telemetry: Telemetry,
) -> None:
    response = await attempt(ChunkStream([ROLE, HEL, DONE]), stream_target(), telemetry)
    assert await chunks(response) == [ROLE, HEL, DONE]


async def test_no_content_within_the_first_token_timeout_is_a_408_timeout_and_releases_it(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    body = ChunkStream([ROLE, KEEP_ALIVE], stall=True)
    response = await attempt(body, stream_target(first_token_timeout_ms=50), telemetry)
    assert (response.status, response.failure, response.stream) == (408, "timeout", None)
    assert response.body is not None
    error = orjson.loads(response.body)["error"]
    assert (error["type"], error["code"]) == ("timeout_error", "first_token_timeout")
    assert "first_token_timeout: 50ms" in error["message"]
    assert body.closed
    (span,) = [s for s in spans.get_finished_spans() if s.name == sc.SPAN_TIMEOUT]
    assert span.attributes is not None
    assert span.attributes[sc.TIMEOUT_KIND] == "first_token"
    (event,) = span.events
    assert event.attributes == {sc.TIMEOUT_MS: 50, sc.TIMEOUT_KIND: "first_token"}


async def test_a_request_timeout_tighter_than_the_first_token_timeout_still_cuts_first(
    telemetry: Telemetry,
) -> None:
    body = ChunkStream([ROLE], stall=True)
    tgt = stream_target(first_token_timeout_ms=60_000, request_timeout_ms=50)
    response = await attempt(body, tgt, telemetry)
    assert response.status == 408
    assert response.body is not None
    assert orjson.loads(response.body)["error"]["code"] == "request_timeout"


async def test_the_idle_bound_does_not_cut_the_opening_the_first_token_bound_covers(
    telemetry: Telemetry,
) -> None:
    body = Paced([(0.0, ROLE), (0.3, HEL), (0.0, DONE)])
    tgt = stream_target(first_token_timeout_ms=10_000, stream_idle_timeout_ms=50)
    response = await attempt(body, tgt, telemetry)
    assert response.status == 200
    assert await chunks(response) == [ROLE + HEL, DONE]
    assert response.stream is not None and response.stream.failure is None


async def test_a_stream_silent_since_its_headers_is_a_408_stream_idle_that_falls_back(
    telemetry: Telemetry,
) -> None:
    body = ChunkStream([], stall=True)
    response = await attempt(body, stream_target(stream_idle_timeout_ms=50), telemetry)
    assert (response.status, response.failure, response.stream) == (408, "stream_idle", None)
    assert response.body is not None
    error = orjson.loads(response.body)["error"]
    assert (error["type"], error["code"]) == ("timeout_error", "stream_idle_timeout")
    assert body.closed


async def test_a_stall_after_the_hand_over_ends_with_the_error_event_as_stream_idle(
    telemetry: Telemetry,
) -> None:
    body = ChunkStream([ROLE, HEL], stall=True)
    tgt = stream_target(stream_idle_timeout_ms=50, request_timeout_ms=60_000)
    response = await attempt(body, tgt, telemetry)
    received = await chunks(response)
    assert received[:2] == [ROLE, HEL]
    (last,) = received[2:]
    error = orjson.loads(last.removeprefix(b"data: "))["error"]
    assert error["code"] == "upstream_stream_interrupted"
    assert "no data from upstream for 0.05s" in error["message"]
    assert response.stream is not None
    assert response.stream.failure == "stream_idle"
    assert body.closed


async def test_a_slow_but_started_stream_is_not_cut_by_the_first_token_timeout(
    telemetry: Telemetry,
) -> None:
    paced = [(0.0, ROLE), (0.0, HEL), (0.1, LO), (0.1, LO), (0.1, DONE)]
    response = await attempt(Paced(paced), stream_target(first_token_timeout_ms=50), telemetry)
    assert await chunks(response) == [ROLE + HEL, LO, LO, DONE]
    assert response.stream is not None and response.stream.failure is None


async def test_a_plain_request_is_not_bound_by_the_first_token_timeout(
    telemetry: Telemetry,
) -> None:
    async def slow(request: object) -> GatewayResponse:
        await asyncio.sleep(0.1)
        return GatewayResponse(status=200, body=b"{}")

    layer = TimeoutLayer(telemetry)(slow)
    response = await layer(gateway_request(target=stream_target(first_token_timeout_ms=10)))
    assert response.status == 200
