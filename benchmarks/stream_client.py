"""Time streamed answers: time to the first streamed byte and to the end of the stream.

A deliberately small HTTP/1.1 client on one keep-alive socket, so its own cost is tiny and
identical whether it talks to the upstream directly or through a gateway. For each of
``count`` sequential requests it records, from just before the request is written:

* ``ttfb``: when the first byte of the answer *body* (the first SSE event) arrives;
* ``total``: when the stream is complete (``data: [DONE]`` seen, or the body fully read).

Both ``content-length`` and ``chunked`` answers are handled. A request whose status is not
2xx, or that breaks, counts as an error; errors are reported, never timed.
"""

from __future__ import annotations

import json
import socket
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

_DONE = b"data: [DONE]"
_TIMEOUT_S = 30.0


@dataclass
class StreamTimings:
    """Per-request timings in seconds, plus the number of failed requests."""

    ttfb: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    errors: int = 0
    events: int = 0

    def summary(self) -> dict[str, Any]:
        """Medians and tail percentiles in milliseconds, request and error counts."""
        out: dict[str, Any] = {"requests": len(self.ttfb), "errors": self.errors}
        out["events_per_stream"] = self.events / len(self.ttfb) if self.ttfb else 0
        for name, values in (("ttfb", self.ttfb), ("total", self.total)):
            for pct in (50, 90, 99):
                out[f"{name}_p{pct}_ms"] = percentile(values, pct) * 1000 if values else None
            out[f"{name}_mean_ms"] = statistics.fmean(values) * 1000 if values else None
        return out


def percentile(values: list[float], pct: float) -> float:
    """The ``pct`` percentile of ``values`` by nearest rank."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


class _Conn:
    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=_TIMEOUT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed mid-answer")
        return data

    def close(self) -> None:
        self.sock.close()


def _read_head(conn: _Conn) -> tuple[int, dict[str, str]]:
    while b"\r\n\r\n" not in conn.buf:
        conn.buf += conn.recv()
    head, _, conn.buf = conn.buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


def _one(conn: _Conn, request: bytes) -> tuple[int, float, float, int]:
    """Send one request; return (status, ttfb_s, total_s, events)."""
    start = time.perf_counter()
    conn.sock.sendall(request)
    status, headers = _read_head(conn)
    first: float | None = None
    body = b""
    if "content-length" in headers:
        need = int(headers["content-length"])
        while len(conn.buf) < need:
            if conn.buf and first is None:
                first = time.perf_counter()
            conn.buf += conn.recv()
        if first is None:
            first = time.perf_counter()
        body, conn.buf = conn.buf[:need], conn.buf[need:]
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            while b"\r\n" not in conn.buf:
                conn.buf += conn.recv()
            size_line, _, conn.buf = conn.buf.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(conn.buf) < size + 2:
                conn.buf += conn.recv()
            chunk, conn.buf = conn.buf[:size], conn.buf[size + 2 :]
            if size == 0:
                break
            if first is None:
                first = time.perf_counter()
            body += chunk
    else:
        raise ConnectionError("answer has neither content-length nor chunked encoding")
    end = time.perf_counter()
    if first is None:
        first = end
    return status, first - start, end - start, body.count(b"data:")


def run(
    host: str, port: int, path: str, body: bytes, headers: dict[str, str], count: int
) -> StreamTimings:
    """Send ``count`` sequential streaming requests on one keep-alive connection."""
    lines = [f"POST {path} HTTP/1.1", f"host: {host}:{port}", "content-type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"content-length: {len(body)}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    timings = StreamTimings()
    conn: _Conn | None = None
    for _ in range(count):
        try:
            if conn is None:
                conn = _Conn(host, port)
            status, ttfb, total, events = _one(conn, request)
        except (OSError, ValueError, IndexError):
            timings.errors += 1
            if conn is not None:
                conn.close()
            conn = None
            continue
        if not 200 <= status < 300:
            timings.errors += 1
            continue
        timings.ttfb.append(ttfb)
        timings.total.append(total)
        timings.events += events
    if conn is not None:
        conn.close()
    return timings


def main() -> None:
    """Command line: print one JSON summary (used by the harness and by hand)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/v1/chat/completions")
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--header", action="append", default=[], help="name: value")
    ns = parser.parse_args()
    body = json.dumps(
        {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    headers = dict(h.split(": ", 1) for h in ns.header)
    print(json.dumps(run("127.0.0.1", ns.port, ns.path, body, headers, ns.count).summary()))


if __name__ == "__main__":
    main()
