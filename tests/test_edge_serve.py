"""The socket edge of `relaygate serve` against slow, greedy and vanishing clients, and shutdown.

Every test drives a real `relaygate serve` process over real loopback sockets, with small
limits so that it stays quick; the upstream is a tiny local server that streams slowly and
records when relaygate's connection to it went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import RunningServer, running_gateway, serve_in_thread

WAIT_S = 10.0
"""Generous upper bound of every wait (a loaded machine is slow, never this slow)."""

CHAT = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
STREAM_CHAT = b'{"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
CHUNK = (
    b'data: {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m", '
    b'"choices": [{"index": 0, "delta": {"content": "tick"}, "finish_reason": null}]}\n\n'
)
ANSWER = {
    "id": "c",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


class SlowUpstream:
    """An OpenAI-like upstream that never finishes on its own: a stream ticks every 50 ms for
    a minute, a plain answer comes after a minute. It records each request's arrival and the
    moment relaygate's connection to it went away."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.gone = threading.Event()

    def reset(self) -> None:
        """Forget previous requests."""
        self.arrived.clear()
        self.gone.clear()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.arrived.set()
        gone = asyncio.ensure_future(receive())  # answers http.disconnect once relaygate left
        try:
            if json.loads(body).get("stream"):
                headers = [(b"content-type", b"text/event-stream")]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                for _ in range(1200):
                    await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
                    await asyncio.wait([gone], timeout=0.05)
                    if gone.done():
                        self.gone.set()
                        return
                await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
                return
            await asyncio.wait([gone], timeout=60)
            if gone.done():
                self.gone.set()
                return
            payload = json.dumps(ANSWER).encode()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
        finally:
            gone.cancel()


def edge_config(upstream: RunningServer, **sections: Any) -> dict[str, Any]:
    """A server config whose default target is ``upstream``, plus ``sections``."""
    return {
        "default_config": {
            "provider": "openai",
            "api_key": "sk-test",
            "custom_host": f"{upstream.url}/v1",
        },
        "telemetry": {"logs": {"level": "info", "format": "json"}},
        **sections,
    }


DRAIN = {"drain_timeout_ms": 500, "telemetry_flush_timeout_ms": 500}
"""Shutdown settings of the gateways that a test stops itself."""

EDGE_LIMITS = {
    "header_timeout_ms": 500,
    "body_idle_timeout_ms": 500,
    "max_connections": 4,
    "max_header_bytes": 16 * 1024,
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[SlowUpstream, RunningServer]]:
    app = SlowUpstream()
    with serve_in_thread(app) as server:
        yield app, server


@pytest.fixture(scope="module")
def gateway(
    upstream: tuple[SlowUpstream, RunningServer], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    config = edge_config(upstream[1], limits=EDGE_LIMITS)
    with running_gateway(tmp_path_factory.mktemp("edge"), config) as gw:
        yield gw


@pytest.fixture
def draining_gateway(
    upstream: tuple[SlowUpstream, RunningServer], tmp_path: Path
) -> Iterator[tuple[RunningServer, subprocess.Popen[bytes]]]:
    """A gateway process of the test's own (to stop with a signal) over the slow upstream,
    whose earlier requests are forgotten; it drains for at most 500 ms."""
    upstream[0].reset()
    with running_gateway(tmp_path, edge_config(upstream[1], shutdown=DRAIN)) as gw:
        assert gw.process is not None
        yield gw, gw.process


def connect(server: RunningServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (bounded by WAIT_S)."""
    data = b""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    return data


def status_and_json(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


def request_head(body: bytes, path: str = "/v1/chat/completions") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def request_logs(server: RunningServer) -> list[dict[str, Any]]:
    lines = []
    for line in server.output().splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("event") == "request":
                lines.append(record)
    return lines


def wait_for(predicate: Any) -> Any:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    return predicate()


def test_headers_that_arrive_too_slowly_are_answered_408_and_the_connection_closed(
    gateway: RunningServer,
) -> None:
    with connect(gateway) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n")
        answer = b""
        for i in range(int(WAIT_S / 0.1)):  # one header line every 100 ms, never the end
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable:
                answer = read_until_closed(sock)
                break
            with contextlib.suppress(OSError):
                sock.sendall(f"x-drip-{i}: a\r\n".encode())
    status, body = status_and_json(answer)
    assert status == 408
    assert body["error"]["code"] == "header_timeout"


def read_response(sock: socket.socket) -> bytes:
    """One response with a content-length, read off a connection that stays open."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_each_request_on_a_keep_alive_connection_gets_its_own_header_clock(
    gateway: RunningServer,
) -> None:
    get = b"GET /health HTTP/1.1\r\nhost: gw\r\n\r\n"
    with connect(gateway) as sock:
        sock.sendall(get)
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(0.8)  # idle between requests is not header time
        sock.sendall(get)
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /health HTTP/1.1\r\n")  # the third one never completes
        status, body = status_and_json(read_until_closed(sock))
    assert status == 408
    assert body["error"]["code"] == "header_timeout"


def test_an_idle_connection_that_sends_nothing_is_closed(gateway: RunningServer) -> None:
    with connect(gateway) as sock:
        status, _ = status_and_json(read_until_closed(sock))
    assert status == 408


def test_a_header_block_over_the_cap_gets_431_without_growing_the_process(
    gateway: RunningServer,
) -> None:
    assert gateway.process is not None
    pid = gateway.process.pid
    before = rss_kib(pid)
    with connect(gateway) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nx-big: ")
        with contextlib.suppress(OSError):
            sock.sendall(b"a" * (1024 * 1024))
        status, body = status_and_json(read_until_closed(sock))
    assert status == 431
    assert body["error"]["code"] == "request_header_fields_too_large"
    # A client that goes on sending (32 MiB of one header) is not buffered either.
    with connect(gateway) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nx-big: ")
        with contextlib.suppress(OSError):
            for _ in range(512):
                sock.sendall(b"a" * 65536)
    assert rss_kib(pid) - before < 16 * 1024
    assert httpx.get(f"{gateway.url}/health", timeout=WAIT_S).status_code == 200


def test_headers_within_the_cap_still_reach_the_gateway(gateway: RunningServer) -> None:
    headers = {"x-padding": "p" * 12_000, "content-type": "application/json"}
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions", content=b"{", headers=headers, timeout=WAIT_S
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_a_stalled_body_is_answered_408(gateway: RunningServer) -> None:
    with connect(gateway) as sock:
        sock.sendall(request_head(CHAT) + CHAT[:10])
        status, body = status_and_json(read_until_closed(sock))
    assert status == 408
    assert body["error"]["code"] == "body_timeout"
    assert body["error"]["type"] == "invalid_request_error"


def test_connections_over_the_cap_get_503_in_openai_shape(
    gateway: RunningServer, upstream: tuple[SlowUpstream, RunningServer]
) -> None:
    held: list[socket.socket] = []
    try:
        for _ in range(EDGE_LIMITS["max_connections"]):
            upstream[0].reset()
            sock = connect(gateway)
            held.append(sock)
            sock.sendall(request_head(CHAT) + CHAT)  # held open by the slow upstream
            assert upstream[0].arrived.wait(WAIT_S)
        with connect(gateway) as extra:
            extra.sendall(request_head(CHAT) + CHAT)
            status, body = status_and_json(read_until_closed(extra))
        assert status == 503
        assert body["error"]["code"] == "too_many_connections"
    finally:
        for sock in held:
            sock.close()
    # Once they are gone, connections are accepted again.
    assert wait_for(lambda: _health_ok(gateway))


def _health_ok(server: RunningServer) -> bool:
    try:
        return httpx.get(f"{server.url}/health", timeout=WAIT_S).status_code == 200
    except httpx.HTTPError:
        return False


def leave_early(
    gateway: RunningServer,
    slow: SlowUpstream,
    body: bytes,
    until: Callable[[socket.socket], None],
) -> dict[str, Any]:
    """Send ``body`` and close the connection once ``until`` returns; asserts the upstream
    call went away and the request is logged as a client that left; its log line."""
    slow.reset()
    seen = len(request_logs(gateway))
    with connect(gateway) as sock:
        sock.sendall(request_head(body) + body)
        until(sock)
    assert slow.gone.wait(WAIT_S), "the upstream call went on"
    line: dict[str, Any] = wait_for(lambda: request_logs(gateway)[seen:])[-1]
    assert line["outcome"] == "client_disconnected"
    assert line["attempts"][-1]["reason"] == "client_disconnected"
    return line


def test_a_client_leaving_mid_stream_closes_the_upstream_stream_at_once(
    gateway: RunningServer, upstream: tuple[SlowUpstream, RunningServer]
) -> None:
    def first_chunk(sock: socket.socket) -> None:
        assert b"200" in sock.recv(65536).split(b"\r\n")[0]

    line = leave_early(gateway, upstream[0], STREAM_CHAT, first_chunk)
    assert line["stream"] is True
    metrics = httpx.get(f"{gateway.url}/metrics", timeout=WAIT_S).text
    assert 'reason="client_disconnected"' in metrics


def test_a_client_leaving_before_the_answer_cancels_the_upstream_call(
    gateway: RunningServer, upstream: tuple[SlowUpstream, RunningServer]
) -> None:
    def arrived(_: socket.socket) -> None:
        assert upstream[0].arrived.wait(WAIT_S)

    line = leave_early(gateway, upstream[0], CHAT, arrived)
    assert line["status"] == 499


def test_sigterm_ends_an_open_stream_with_an_error_event_and_exits_0(
    upstream: tuple[SlowUpstream, RunningServer],
    draining_gateway: tuple[RunningServer, subprocess.Popen[bytes]],
) -> None:
    gw, proc = draining_gateway
    with connect(gw) as sock:
        sock.sendall(request_head(STREAM_CHAT) + STREAM_CHAT)
        received = sock.recv(65536)
        proc.send_signal(signal.SIGTERM)
        received += read_until_closed(sock)
    assert proc.wait(timeout=WAIT_S) == 0
    logs = request_logs(gw)
    assert b"tick" in received
    tail = received.rstrip().rsplit(b"data: ", 1)[-1].split(b"\r\n")[0]
    assert json.loads(tail)["error"]["code"] == "gateway_shutting_down"
    assert received.endswith(b"0\r\n\r\n"), "the chunked stream was cut, not ended"
    assert upstream[0].gone.wait(WAIT_S)
    assert logs[-1]["outcome"] == "gateway_shutting_down"


@contextlib.contextmanager
def blackhole() -> Iterator[int]:
    """A loopback port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for sock in held:
            sock.close()
        listener.close()


def test_sigterm_with_a_blackholed_otlp_endpoint_exits_well_within_the_grace_period(
    upstream: tuple[SlowUpstream, RunningServer], tmp_path: Path
) -> None:
    with blackhole() as port:
        config = edge_config(
            upstream[1],
            shutdown={"drain_timeout_ms": 500, "telemetry_flush_timeout_ms": 1000},
            telemetry={
                "logs": {"level": "warning", "format": "json"},
                "traces": {"exporter": "otlp", "endpoint": f"http://127.0.0.1:{port}"},
            },
        )
        # Exports start 100 ms after a span ends: one is hanging by the time of the SIGTERM.
        with running_gateway(tmp_path, config, env={"OTEL_BSP_SCHEDULE_DELAY": "100"}) as gw:
            proc = gw.process
            assert proc is not None
            for _ in range(2):
                for _ in range(3):
                    bad = httpx.post(f"{gw.url}/v1/chat/completions", content=b"{", timeout=WAIT_S)
                    assert bad.status_code == 400
                time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            # Unbounded, the hanging export and then the final one take the SDK's 10 s each;
            # bounded, it is drain + flush (1.5 s) and the process's exit.
            assert proc.wait(timeout=15) == 0


def test_sigterm_answers_a_request_still_unanswered_at_the_drain_deadline_with_503(
    upstream: tuple[SlowUpstream, RunningServer],
    draining_gateway: tuple[RunningServer, subprocess.Popen[bytes]],
) -> None:
    gw, proc = draining_gateway
    with connect(gw) as sock:
        sock.sendall(request_head(CHAT) + CHAT)
        assert upstream[0].arrived.wait(WAIT_S)
        proc.send_signal(signal.SIGTERM)
        status, body = status_and_json(read_until_closed(sock))
    assert proc.wait(timeout=WAIT_S) == 0
    assert status == 503
    assert body["error"]["code"] == "gateway_shutting_down"
    assert upstream[0].gone.wait(WAIT_S)
