"""A client that goes away mid-request: the work stops and telemetry says `client_disconnected`.

The ASGI app is driven directly with a ``receive`` that reports the disconnect on cue (as
uvicorn does once the connection is lost), against an upstream that never finishes on its
own, so every assertion is about what relaygate did when the client left.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import generate_latest

from relaygate.drain import CLIENT_WATCH_KEY, ClientWatch
from relaygate.exporters import semconv as sc
from relaygate.providers.base import UpstreamRequest
from relaygate.providers.client import UpstreamResponse, UpstreamStream
from relaygate.telemetry import Telemetry
from tests.fakes import chunk_payload, sse_event
from tests.inprocess import gateway_app

CONFIG = {
    "default_config": {
        "provider": "openai",
        "api_key": "sk-a",
        "custom_host": "http://upstream.invalid/v1",
    }
}
WAIT_S = 10.0


class EndlessUpstream:
    """An upstream whose answer never completes: a plain call hangs, a stream sends one
    chunk and then nothing. Records a cancelled call and a closed stream."""

    def __init__(self) -> None:
        self.called = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.stream_closed = asyncio.Event()

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        self.called.set()
        if b'"stream":true' not in request.content.replace(b" ", b""):
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        return UpstreamResponse(
            status=200,
            headers={"content-type": "text/event-stream"},
            stream=UpstreamStream.of(self._chunks(), self._close, (OSError,)),
        )

    async def _chunks(self) -> AsyncIterator[bytes]:
        yield sse_event(chunk_payload("first"))
        await asyncio.sleep(3600)

    async def _close(self) -> None:
        self.stream_closed.set()

    async def aclose(self) -> None:
        return None


SERVED_BY = ["asgi-disconnect", "relaygate-protocol"]
"""How the loss is reported: an ASGI ``http.disconnect`` message (relaygate mounted in any
server), or relaygate's own connection protocol firing the scope's :class:`ClientWatch`
while ``receive`` never reports anything more."""


async def leave_when(
    app: Any, body: dict[str, Any], cue: asyncio.Event | None, served_by: str = SERVED_BY[0]
) -> list[dict[str, Any]]:
    """Call ``app``; the client disconnects once ``cue`` is set (or its first body chunk
    arrives when ``cue`` is None), reported as ``served_by`` says. Returns what the app
    sent."""
    sent: list[dict[str, Any]] = []
    first_chunk = asyncio.Event()
    cue = cue or first_chunk
    messages = [{"type": "http.request", "body": orjson.dumps(body), "more_body": False}]
    watch = ClientWatch() if served_by == "relaygate-protocol" else None

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        if watch is not None:
            await asyncio.Event().wait()  # the protocol's watch reports the loss instead
        await cue.wait()
        return {"type": "http.disconnect"}

    async def lose_connection() -> None:
        await cue.wait()
        assert watch is not None
        watch.lost()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            first_chunk.set()

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
    }
    if watch is None:
        await asyncio.wait_for(app(scope, receive, send), WAIT_S)
        return sent
    scope["extensions"] = {CLIENT_WATCH_KEY: {"watch": watch}}
    server = asyncio.get_running_loop().create_task(lose_connection())
    await asyncio.wait_for(app(scope, receive, send), WAIT_S)
    await server
    return sent


def spans_by_kind(spans: InMemorySpanExporter) -> dict[SpanKind, Any]:
    return {span.kind: span for span in spans.get_finished_spans()}


def recorded_as_client_left(telemetry: Telemetry, spans: InMemorySpanExporter) -> tuple[Any, Any]:
    """Assert the request and its attempt are recorded as ended by a client that left, and
    nothing stays in flight; the SERVER and CLIENT spans."""
    by_kind = spans_by_kind(spans)
    server, client = by_kind[SpanKind.SERVER], by_kind[SpanKind.CLIENT]
    assert server.attributes[sc.OUTCOME] == "client_disconnected"
    assert client.attributes[sc.ERROR_TYPE] == "client_disconnected"
    text = generate_latest(telemetry.metrics.registry).decode()
    assert 'reason="client_disconnected"' in text
    assert telemetry.metrics.registry.get_sample_value(sc.M_IN_FLIGHT) == 0.0
    return server, client


@pytest.mark.parametrize("served_by", SERVED_BY)
async def test_a_stream_whose_client_left_is_closed_upstream_and_recorded(
    telemetry: Telemetry, spans: InMemorySpanExporter, served_by: str
) -> None:
    upstream = EndlessUpstream()
    app = gateway_app(CONFIG, telemetry, upstream)
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    sent = await leave_when(app, body, None, served_by)
    assert upstream.stream_closed.is_set()
    assert sent[0]["status"] == 200
    server, client = recorded_as_client_left(telemetry, spans)
    assert server.attributes[sc.ERROR_TYPE] == "client_disconnected"
    assert client.attributes[sc.OUTCOME] == "client_disconnected"


@pytest.mark.parametrize("served_by", SERVED_BY)
async def test_a_plain_call_whose_client_left_is_cancelled_and_recorded(
    telemetry: Telemetry, spans: InMemorySpanExporter, served_by: str
) -> None:
    upstream = EndlessUpstream()
    app = gateway_app(CONFIG, telemetry, upstream)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    sent = await leave_when(app, body, upstream.called, served_by)
    assert upstream.cancelled.is_set()
    assert sent == [], "nothing is written to a client that is gone"
    server, _ = recorded_as_client_left(telemetry, spans)
    assert server.attributes[sc.HTTP_RESPONSE_STATUS_CODE] == 499


async def test_a_client_that_stays_gets_its_whole_answer(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    """The watch does not cut a request whose response completes (the server then reports
    a disconnect too)."""

    class Quick(EndlessUpstream):
        async def send(self, request: UpstreamRequest) -> UpstreamResponse:
            payload = {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "m",
                "choices": [],
            }
            return UpstreamResponse(
                status=200,
                headers={"content-type": "application/json"},
                body=orjson.dumps(payload),
            )

    app = gateway_app(CONFIG, telemetry, Quick())
    done = asyncio.Event()
    done.set()  # the server answers every later receive with a disconnect at once
    sent = await leave_when(app, {"model": "m", "messages": []}, done)
    assert sent[0]["status"] == 200
    server = spans_by_kind(spans)[SpanKind.SERVER]
    assert server.attributes[sc.OUTCOME] == "ok"
    assert sc.ERROR_TYPE not in server.attributes
