"""LeanOTLPSpanExporter posts what the SDK's OTLPSpanExporter posts, through its lean path."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.http.transport._requests import RequestsHTTPTransport
from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport
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

from relaygate.exporters.otlp_http import LeanOTLPSpanExporter, kept_transport
from relaygate.exporters.otlp_transport import KeptHTTPTransport
from relaygate.exporters.spans import LeanTracer
from tests.servers import serve_in_thread


@pytest.fixture
def received() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An OTLP/HTTP receiver on loopback recording each request's headers, body and client
    address (one per connection)."""
    posts: list[dict[str, Any]] = []

    async def traces(request: Request) -> Response:
        posts.append(
            {
                "headers": dict(request.headers),
                "body": await request.body(),
                "client": request.client,
            }
        )
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


def _clear_transport_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.lower().endswith(("_proxy", "_ca_bundle")) or "CREDENTIAL_PROVIDER" in name:
            monkeypatch.delenv(name)


def test_batches_go_over_one_kept_connection_with_the_configured_headers_and_gzip(
    received: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _clear_transport_env(monkeypatch)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-tenant=t2")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")
    url, posts = received
    exporter = LeanOTLPSpanExporter(endpoint=url)
    transport = exporter._client._transport
    assert isinstance(transport, KeptHTTPTransport)
    assert isinstance(transport.tls, Urllib3HTTPTransport)  # for https:// endpoints
    spans = _spans()
    for _ in range(2):
        assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert len(posts) == 2
    for post in posts:
        assert post["headers"]["x-tenant"] == "t2"
        assert post["headers"]["content-encoding"] == "gzip"
        decoded = ExportTraceServiceRequest.FromString(gzip.decompress(post["body"]))
        assert len(decoded.resource_spans[0].scope_spans[0].spans) == 2
    # One connection carried both batches.
    assert len({post["client"] for post in posts}) == 1


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "http_proxy", "ALL_PROXY"])
def test_a_proxy_variable_keeps_the_requests_client_that_honours_it(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    _clear_transport_env(monkeypatch)
    monkeypatch.setenv(variable, "http://proxy.invalid:3128")
    exporter = LeanOTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces")
    assert isinstance(exporter._client._transport, RequestsHTTPTransport)


def test_the_ca_certificate_comes_from_the_otlp_variables_then_requests_bundle(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import certifi

    _clear_transport_env(monkeypatch)
    assert verify_of(kept_transport({})) == certifi.where()
    bundle, mine = str(tmp_path / "bundle.pem"), str(tmp_path / "mine.pem")
    assert verify_of(kept_transport({"REQUESTS_CA_BUNDLE": bundle})) == bundle
    env = {"REQUESTS_CA_BUNDLE": bundle, "OTEL_EXPORTER_OTLP_CERTIFICATE": mine}
    assert verify_of(kept_transport(env)) == mine
    assert verify_of(kept_transport(env, certificate_file="arg.pem")) == "arg.pem"


def verify_of(transport: Any) -> str:
    """The CA bundle the kept transport's urllib3 pool verifies HTTPS servers with."""
    assert isinstance(transport, KeptHTTPTransport)
    assert isinstance(transport.tls, Urllib3HTTPTransport)
    ca: str = transport.tls._pool.connection_pool_kw["ca_certs"]
    return ca
