"""LeanOTLPSpanExporter posts what the SDK's OTLPSpanExporter posts, through its lean path."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from relaygate.exporters.otlp_http import LeanOTLPSpanExporter
from relaygate.exporters.spans import LeanTracer
from tests.servers import serve_in_thread


@pytest.fixture
def received() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An OTLP/HTTP receiver on loopback recording each request's headers and body."""
    posts: list[dict[str, Any]] = []

    async def traces(request: Request) -> Response:
        posts.append({"headers": dict(request.headers), "body": await request.body()})
        return Response(b"", media_type="application/x-protobuf")

    app = Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])
    with serve_in_thread(app) as server:
        yield f"{server.url}/v1/traces", posts


def _spans() -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    processor = SimpleSpanProcessor(memory)
    provider.add_span_processor(processor)
    tracer = LeanTracer.of(provider, processor)
    with tracer.start_as_current_span("POST /v1/chat/completions", kind=SpanKind.SERVER) as root:
        root.set_attributes({"http.response.status_code": 200, "relaygate.config.id": "prod"})
        span = tracer.start_span("chat gpt-4o", kind=SpanKind.CLIENT)
        span.set_attributes({"gen_ai.provider.name": "openai", "relaygate.attempt": 1})
        span.add_event("relaygate.retry", {"relaygate.backoff_s": 0.25})
        span.set_status(Status(StatusCode.ERROR))
        span.end()
    return list(memory.get_finished_spans())


def test_posts_the_same_request_as_the_sdk_exporter(
    received: tuple[str, list[dict[str, Any]]],
) -> None:
    url, posts = received
    spans = _spans()
    lean = LeanOTLPSpanExporter(endpoint=url, headers={"x-tenant": "t1"})
    sdk = OTLPSpanExporter(endpoint=url, headers={"x-tenant": "t1"})
    assert lean.lean, "the SDK exporter's internals moved: the lean path is not taken"
    assert lean.export(spans) is SpanExportResult.SUCCESS
    assert sdk.export(spans) is SpanExportResult.SUCCESS
    mine, theirs = posts
    assert ExportTraceServiceRequest.FromString(
        mine["body"]
    ) == ExportTraceServiceRequest.FromString(theirs["body"])
    for header in ("content-type", "x-tenant", "user-agent", "content-encoding"):
        assert mine["headers"].get(header) == theirs["headers"].get(header)
    decoded = ExportTraceServiceRequest.FromString(mine["body"])
    names = [s.name for s in decoded.resource_spans[0].scope_spans[0].spans]
    assert names == ["chat gpt-4o", "POST /v1/chat/completions"]


def test_a_batch_that_cannot_be_encoded_is_dropped_not_raised(
    received: tuple[str, list[dict[str, Any]]],
) -> None:
    url, posts = received
    bad = ReadableSpan(name="bad")  # no span context: cannot be encoded
    exporter = LeanOTLPSpanExporter(endpoint=url)
    assert exporter.export([bad]) is SpanExportResult.FAILURE
    assert posts == []


def test_after_shutdown_batches_are_refused(received: tuple[str, list[dict[str, Any]]]) -> None:
    url, posts = received
    exporter = LeanOTLPSpanExporter(endpoint=url)
    exporter.shutdown()
    assert exporter.export(_spans()) is SpanExportResult.FAILURE
    assert posts == []
