"""A fixed-answer HTTP/1.1 upstream that waits a set time before each answer.

The benchmark's "slow upstream" (a provider that takes 50 ms to answer). nginx serves the
immediate answers, but has no standard way to wait before answering, so this small asyncio
server does: it reads each request on a keep-alive connection (headers, then
``content-length`` bytes of body), and ``--delay-ms`` later writes one fixed chat-completion
answer. No framework and no per-request coroutine: a timer per request, so the server itself
costs tens of microseconds per request and does not distort the gateway's measurements.

Run: ``python -m benchmarks.delay_upstream --port 9302 --delay-ms 50``; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any, Final, cast

CHAT_BODY: Final = (
    b'{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,'
    b'"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant",'
    b'"content":"Hello from the benchmark upstream."},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}'
)
"""The answer body: the same chat completion nginx serves on its fast route."""

_HEADER_END: Final = b"\r\n\r\n"
_MAX_HEADER: Final = 64 * 1024


def response_bytes(body: bytes = CHAT_BODY) -> bytes:
    """The complete HTTP/1.1 200 answer (keep-alive) carrying ``body`` as JSON."""
    head = (
        "HTTP/1.1 200 OK\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: keep-alive\r\n\r\n"
    )
    return head.encode("ascii") + body


def content_length(head: bytes) -> int:
    """The `content-length` of a request head (0 when absent); ValueError when malformed."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


class DelayProtocol(asyncio.Protocol):
    """One connection: answers each complete request ``delay_s`` after it arrived."""

    def __init__(self, delay_s: float, answer: bytes) -> None:
        self._delay_s = delay_s
        self._answer = answer
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Remember the transport to answer on."""
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the transport: timers still pending for it write nothing."""
        self._transport = None

    def data_received(self, data: bytes) -> None:
        """Buffer bytes and schedule one answer per complete request."""
        self._buffer += data
        while True:
            end = self._buffer.find(_HEADER_END)
            if end < 0:
                if len(self._buffer) > _MAX_HEADER and self._transport is not None:
                    self._transport.close()
                return
            try:
                length = content_length(bytes(self._buffer[:end]))
            except ValueError:
                if self._transport is not None:
                    self._transport.close()
                return
            total = end + len(_HEADER_END) + length
            if len(self._buffer) < total:
                return
            del self._buffer[:total]
            self._loop.call_later(self._delay_s, self._answer_one)

    def _answer_one(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(self._answer)


async def serve_until_stopped(
    factory: Callable[[], asyncio.Protocol], host: str, port: int, backlog: int = 1024
) -> None:
    """Serve connections with protocols from ``factory`` until SIGTERM or SIGINT (the
    loopback servers of the benchmark share this)."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, host, port, backlog=backlog)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def run_fast(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop when it is installed (it comes with uvicorn[standard]),
    else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        asyncio.run(main)
    else:
        uvloop.run(main)


async def serve(host: str, port: int, delay_ms: float) -> None:
    """Serve until SIGTERM or SIGINT."""
    answer = response_bytes()
    await serve_until_stopped(lambda: DelayProtocol(delay_ms / 1000, answer), host, port)


def main() -> None:
    """Parse arguments and serve (uvloop when installed)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    ns = parser.parse_args()
    run_fast(serve(ns.host, ns.port, ns.delay_ms))


if __name__ == "__main__":
    main()
