"""A minimal streaming upstream for the stream scenarios: timed SSE chunks, stamped when sent.

The many-open-streams, long-stream and mixed-load scenarios (:mod:`benchmarks.streams`) need
an upstream that holds thousands of streams open and costs as little CPU as possible, so the
figures are the gateway's. This is a raw asyncio protocol (uvloop), no framework: one timer
per chunk, no coroutine per stream. Each ``chat.completion.chunk`` carries, as its content,
``t<ns>`` with the ``CLOCK_MONOTONIC`` time (in nanoseconds) at which it was written, so a
client on the same machine reads the delivery delay of every chunk through whatever sits
between (the monotonic clock is system-wide on Linux).

Routes (the path's prefix decides; the rest, such as ``/v1/chat/completions``, is ignored):

* ``/s/<count>/<interval_ms>/...``: a 200 ``text/event-stream`` (chunked) of ``count`` chunk
  events, the first at once and each next ``interval_ms`` after the previous one was due (an
  absolute schedule, no drift), then ``data: [DONE]``; ``interval_ms`` 0 sends them as fast
  as the event loop turns, one write per chunk;
* ``/fast/...``: a 200 chat completion;
* ``/fail/...``: an OpenAI-shaped 503;
* ``/flaky/...``: a 503 the first time a request's ``"user"`` value is seen, then a 200 (and
  the value is forgotten), so a gateway retrying once on 503 succeeds;
* ``/bad/...``: an OpenAI-shaped 400.

Run: ``python -m benchmarks.stream_upstream --port 9320``; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
from typing import Final, cast

from benchmarks.delay_upstream import CHAT_BODY, content_length, run_fast, serve_until_stopped

_HEADER_END: Final = b"\r\n\r\n"
_MAX_HEADER: Final = 64 * 1024
STAMP_MARK: Final = b'"content":"t'
"""What precedes every chunk's send stamp (decimal nanoseconds) in its event."""

_STREAM_HEAD: Final = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n"
)
_FAIL_BODY: Final = (
    b'{"error":{"message":"upstream overloaded","type":"server_error","param":null,'
    b'"code":"overloaded"}}'
)
_BAD_BODY: Final = (
    b'{"error":{"message":"messages is required","type":"invalid_request_error",'
    b'"param":"messages","code":null}}'
)


def _answer(status: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: keep-alive\r\n\r\n"
    )
    return head.encode("ascii") + body


OK_ANSWER: Final = _answer("200 OK", CHAT_BODY)
FAIL_ANSWER: Final = _answer("503 Service Unavailable", _FAIL_BODY)
BAD_ANSWER: Final = _answer("400 Bad Request", _BAD_BODY)
_LAST: Final = b"0\r\n\r\n"
_DONE_CHUNK: Final = b"e\r\ndata: [DONE]\n\n\r\n" + _LAST


def chunk_event(stamp_ns: int, first: bool) -> bytes:
    """One chunked-encoded SSE event whose content is ``t<stamp_ns>``."""
    role = '"role":"assistant",' if first else ""
    event = (
        'data: {"id":"chatcmpl-stream","object":"chat.completion.chunk","created":1700000000,'
        f'"model":"gpt-4o-mini","choices":[{{"index":0,"delta":{{{role}"content":"t{stamp_ns}'
        ' "},"finish_reason":null}]}\n\n'
    ).encode()
    return b"%x\r\n%s\r\n" % (len(event), event)


def parse_stream_path(path: bytes) -> tuple[int, float] | None:
    """``(count, interval_s)`` of an ``/s/<count>/<interval_ms>/...`` path, else None."""
    parts = path.split(b"/", 4)
    if len(parts) < 4 or parts[1] != b"s":
        return None
    try:
        return int(parts[2]), float(parts[3]) / 1000
    except ValueError:
        return None


def _user(body: bytes) -> bytes:
    start = body.find(b'"user":"')
    if start < 0:
        return b""
    start += 8
    return body[start : body.find(b'"', start)]


class StreamProtocol(asyncio.Protocol):
    """One connection: requests answered one at a time, in order (keep-alive)."""

    def __init__(self, flaky_seen: set[bytes]) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._busy = False
        self._flaky_seen = flaky_seen

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Remember the transport to answer on."""
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the transport: pending chunk timers stop at their next turn."""
        self._transport = None

    def data_received(self, data: bytes) -> None:
        """Buffer bytes; start answering when a complete request is in and none is running."""
        self._buffer += data
        self._next()

    def _next(self) -> None:
        transport = self._transport
        if self._busy or transport is None:
            return
        end = self._buffer.find(_HEADER_END)
        if end < 0:
            if len(self._buffer) > _MAX_HEADER:
                transport.close()
            return
        head = bytes(self._buffer[:end])
        try:
            length = content_length(head)
        except ValueError:
            transport.close()
            return
        total = end + len(_HEADER_END) + length
        if len(self._buffer) < total:
            return
        body = bytes(self._buffer[end + len(_HEADER_END) : total])
        del self._buffer[:total]
        path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"/"
        stream = parse_stream_path(path)
        if stream is not None:
            self._busy = True
            transport.write(_STREAM_HEAD)
            self._send_chunk(0, stream[0], stream[1], self._loop.time())
            return
        if path.startswith(b"/fail/"):
            transport.write(FAIL_ANSWER)
        elif path.startswith(b"/bad/"):
            transport.write(BAD_ANSWER)
        elif path.startswith(b"/flaky/"):
            user = _user(body)
            if user in self._flaky_seen:
                self._flaky_seen.discard(user)
                transport.write(OK_ANSWER)
            else:
                self._flaky_seen.add(user)
                transport.write(FAIL_ANSWER)
        else:
            transport.write(OK_ANSWER)
        self._next()

    def _send_chunk(self, index: int, count: int, interval_s: float, start: float) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if index >= count:
            transport.write(_DONE_CHUNK)
            self._busy = False
            self._next()
            return
        transport.write(chunk_event(time.monotonic_ns(), index == 0))
        if interval_s <= 0:
            self._loop.call_soon(self._send_chunk, index + 1, count, interval_s, start)
        else:
            due = start + (index + 1) * interval_s
            self._loop.call_at(due, self._send_chunk, index + 1, count, interval_s, start)


def raise_open_files_limit() -> int:
    """Raise this process's open-files soft limit to its hard limit; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def serve(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    seen: set[bytes] = set()
    await serve_until_stopped(lambda: StreamProtocol(seen), host, port, backlog=4096)


def main() -> None:
    """Parse arguments and serve (uvloop when installed)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    ns = parser.parse_args()
    raise_open_files_limit()
    run_fast(serve(ns.host, ns.port))


if __name__ == "__main__":
    main()
