"""KeptHTTPTransport: what it sends, how it reads each kind of answer, when it keeps the
connection, and how failures reach the SDK's OTLP client (retried or reported)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry.exporter.http.transport._base import BaseHTTPResult, BaseHTTPTransport
from opentelemetry.sdk.trace.export import SpanExportResult

from relaygate.exporters.otlp_http import LeanOTLPSpanExporter
from relaygate.exporters.otlp_transport import (
    BadAnswer,
    ClosedBeforeAnswer,
    ConnectFailed,
    KeptHTTPTransport,
    RawHTTPResult,
)
from tests.servers import free_port
from tests.telemetry.test_otlp_http_exporter import _spans

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 2\r\n\r\nok"


# What the server does with one request: answer these bytes, answer them and close
# (``Closing``), close without answering ("close"), never answer ("hang") or answer one byte
# every 50 ms ("drip").
@dataclass(frozen=True)
class Closing:
    answer: bytes


Reply = bytes | str | Closing


@dataclass
class Scripted:
    """A loopback HTTP server answering each request with the next scripted reply."""

    replies: list[Reply]
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)
    connections: int = 0
    port: int = 0


def _read_request(conn: socket.socket, buffer: bytearray) -> tuple[bytes, bytes] | None:
    while b"\r\n\r\n" not in buffer:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    size = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            size = int(value)
    buffer[:] = rest
    while len(buffer) < size:
        buffer += conn.recv(65536)
    body = bytes(buffer[:size])
    del buffer[:size]
    return head, body


@pytest.fixture
def scripted() -> Iterator[Callable[[list[Reply]], Scripted]]:
    """Start a scripted server (one thread per connection) for the test's replies."""
    listeners: list[socket.socket] = []
    hanging: list[socket.socket] = []

    def start(replies: list[Reply]) -> Scripted:
        state = Scripted(list(replies))
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)
        state.port = listener.getsockname()[1]

        def serve(conn: socket.socket) -> None:
            buffer = bytearray()
            with conn:
                while True:
                    request = _read_request(conn, buffer)
                    if request is None:
                        return
                    state.requests.append(request)
                    reply = state.replies.pop(0) if state.replies else OK
                    if reply == "close":
                        return
                    if reply == "hang":
                        hanging.append(conn)
                        time.sleep(2)
                        return
                    if reply == "drip":
                        with contextlib.suppress(OSError):  # the client gives up first
                            for byte in OK:
                                time.sleep(0.05)
                                conn.sendall(bytes((byte,)))
                        return
                    if isinstance(reply, Closing):
                        conn.sendall(reply.answer)
                        return
                    assert isinstance(reply, bytes)
                    conn.sendall(reply)

        def accept() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                state.connections += 1
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return state

    yield start
    for listener in listeners:
        listener.close()


class FakeTLS(BaseHTTPTransport):
    """Records what reaches the HTTPS side."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.closed = False

    def request(self, method: str, url: str, **kwargs: Any) -> BaseHTTPResult:
        self.urls.append(url)
        return RawHTTPResult(status_code=200, reason="OK")

    def is_connection_error(self, exception: Exception | None) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


def post(transport: KeptHTTPTransport, port: int, body: bytes = b"spans") -> BaseHTTPResult:
    return transport.request(
        "POST",
        f"http://127.0.0.1:{port}/v1/traces",
        headers={"Content-Type": "application/x-protobuf", "X-Tenant": "t1"},
        timeout=5,
        data=body,
    )


def test_two_posts_share_one_connection_and_send_head_and_body(scripted: Any) -> None:
    server = scripted([OK, OK])
    transport = KeptHTTPTransport(FakeTLS())
    for body in (b"first", b"second" * 1000):
        result = post(transport, server.port, body)
        assert (result.status_code, result.reason, result.content()) == (200, "OK", b"ok")
        assert result.headers().get("Content-Type") == "application/x-protobuf"
    assert server.connections == 1
    (head, first), (_, second) = server.requests
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/traces HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}".encode() in lines
    assert b"X-Tenant: t1" in lines and b"Content-Length: 5" in lines
    assert (first, second) == (b"first", b"second" * 1000)


def test_chunked_and_informational_answers_are_read_and_the_connection_kept(
    scripted: Any,
) -> None:
    chunked = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    server = scripted([chunked, OK])
    transport = KeptHTTPTransport(FakeTLS())
    assert post(transport, server.port).content() == b"abcde"
    assert post(transport, server.port).content() == b"ok"
    assert server.connections == 1


@pytest.mark.parametrize(
    "answer",
    [
        Closing(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"),
        Closing(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        Closing(b"HTTP/1.1 200 OK\r\n\r\nok"),  # no length: the body ends at the close
    ],
    ids=["connection-close", "http-1.0", "read-to-close"],
)
def test_an_answer_that_ends_the_connection_opens_a_new_one_next_time(
    scripted: Any, answer: Closing
) -> None:
    server = scripted([answer, OK])
    transport = KeptHTTPTransport(FakeTLS())
    first = post(transport, server.port)
    assert (first.status_code, first.content()) == (200, b"ok")
    assert post(transport, server.port).status_code == 200
    assert server.connections == 2


def test_a_stale_kept_connection_is_a_connection_error_and_the_export_retries_it(
    scripted: Any,
) -> None:
    server = scripted([OK, "close", OK])
    transport = KeptHTTPTransport(FakeTLS())
    assert post(transport, server.port).status_code == 200
    stale = post(transport, server.port)
    assert isinstance(stale.error, ClosedBeforeAnswer)
    assert transport.is_connection_error(stale.error)
    # Through the exporter: the SDK's client retries a connection error once, at once.
    server.replies = [OK, "close", OK]
    exporter = LeanOTLPSpanExporter(endpoint=f"http://127.0.0.1:{server.port}/v1/traces")
    assert isinstance(exporter._client._transport, KeptHTTPTransport)
    spans = _spans()
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert len(server.requests) == 2 + 3


def test_a_retryable_status_is_retried_after_its_retry_after(scripted: Any) -> None:
    busy = b"HTTP/1.1 503 Busy\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n"
    server = scripted([busy, OK])
    exporter = LeanOTLPSpanExporter(endpoint=f"http://127.0.0.1:{server.port}/v1/traces")
    assert exporter.export(_spans()) is SpanExportResult.SUCCESS
    assert len(server.requests) == 2
    assert server.connections == 1


def test_a_refused_connection_is_a_connection_error_that_names_no_header() -> None:
    transport = KeptHTTPTransport(FakeTLS())
    result = transport.request(
        "POST",
        f"http://127.0.0.1:{free_port()}/v1/traces",
        headers={"Authorization": "Bearer sk-secret-value"},
        timeout=2,
        data=b"x",
    )
    assert isinstance(result.error, ConnectFailed)
    assert transport.is_connection_error(result.error)
    assert "sk-secret" not in str(result.error)


@pytest.mark.parametrize("reply", ["hang", "drip"])
def test_an_endpoint_too_slow_to_answer_times_out_within_the_bound(
    scripted: Any, reply: str
) -> None:
    # The bound is the whole exchange's: an answer trickling in byte by byte still ends it.
    server = scripted([reply])
    transport = KeptHTTPTransport(FakeTLS())
    result = transport.request(
        "POST", f"http://127.0.0.1:{server.port}/v1/traces", headers={}, timeout=0.3, data=b"x"
    )
    assert isinstance(result.error, TimeoutError)
    assert not transport.is_connection_error(result.error)


@pytest.mark.parametrize(
    "answer",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"h" * (64 * 1024 + 1) + b"\r\n\r\n",
        b"HTTP/1.1 200 " + b"O" * (64 * 1024 + 1) + b"\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1048577\r\n\r\n" + b"b" * 1048577,
    ],
    ids=["not-http", "bad-header", "head-too-long", "reason-too-long", "body-too-long"],
)
def test_a_garbled_answer_is_an_error_and_drops_the_connection(
    scripted: Any, answer: bytes
) -> None:
    server = scripted([answer, OK])
    transport = KeptHTTPTransport(FakeTLS())
    result = post(transport, server.port)
    assert isinstance(result.error, BadAnswer)
    assert not transport.is_connection_error(result.error)
    assert post(transport, server.port).status_code == 200
    assert server.connections == 2


def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(scripted: Any) -> None:
    server = scripted([OK])
    transport = KeptHTTPTransport(FakeTLS())
    result = transport.request(
        "POST",
        f"http://127.0.0.1:{server.port}/v1/traces",
        headers={"X-Tenant": "t1\r\nX-Injected: 1"},
        timeout=2,
        data=b"x",
    )
    assert isinstance(result.error, ValueError)
    assert server.connections == 0


def test_https_goes_to_the_tls_transport_and_close_closes_both(scripted: Any) -> None:
    tls = FakeTLS()
    transport = KeptHTTPTransport(tls)
    result = transport.request("POST", "https://collector.example:4318/v1/traces", data=b"x")
    assert result.status_code == 200
    assert tls.urls == ["https://collector.example:4318/v1/traces"]
    transport.close()
    assert tls.closed


def test_a_reason_phrase_read_in_pieces_is_kept_whole() -> None:
    from relaygate.exporters.otlp_transport import _Answer

    answer = _Answer()
    for piece in (b"HTTP/1.1 503 Service Una", b"vailable\r\nContent-Length: 0\r\n\r\n"):
        answer.parser.feed_data(piece)
    assert answer.complete
    assert answer.reason == "Service Unavailable"
