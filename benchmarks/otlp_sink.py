"""An OTLP/HTTP trace sink that answers 200 at once, discards the spans and counts them.

The benchmark points the gateway's span exporter here, so traces are really serialised and
sent (their full cost lands in the gateway process) while nothing is stored. Counting the
spans in each ``POST /v1/traces`` (a walk over the protobuf wire format, no decoding of the
spans themselves) lets the harness check that spans are not silently dropped under load:
``GET /stats`` answers ``{"exports": N, "spans": M, "bytes": B}``.

Run: ``python -m benchmarks.otlp_sink --port 9303``; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
from typing import Final, cast

from benchmarks.delay_upstream import content_length, serve_until_stopped

_HEADER_END: Final = b"\r\n\r\n"
_OK: Final = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\n"
    b"content-length: 0\r\nconnection: keep-alive\r\n\r\n"
)


def _varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def length_fields(message: bytes | memoryview, wanted: int) -> list[memoryview]:
    """The payloads of every length-delimited field number ``wanted`` in a protobuf message."""
    view = memoryview(message)
    out: list[memoryview] = []
    pos = 0
    end = len(view)
    while pos < end:
        key, pos = _varint(view, pos)
        wire = key & 7
        if wire == 0:
            _, pos = _varint(view, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            size, pos = _varint(view, pos)
            if key >> 3 == wanted:
                out.append(view[pos : pos + size])
            pos += size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return out


def count_spans(body: bytes) -> int:
    """Spans in an ``ExportTraceServiceRequest`` (resource_spans → scope_spans → spans)."""
    return sum(
        len(length_fields(scope, 2))
        for resource in length_fields(body, 1)
        for scope in length_fields(resource, 2)
    )


class SinkStats:
    """Running totals of what the sink received."""

    def __init__(self) -> None:
        self.exports = 0
        self.spans = 0
        self.bytes = 0
        self.bad = 0

    def as_json(self) -> bytes:
        """The totals as a JSON object."""
        return json.dumps(
            {"exports": self.exports, "spans": self.spans, "bytes": self.bytes, "bad": self.bad}
        ).encode()


class SinkProtocol(asyncio.Protocol):
    """One connection: counts each ``POST /v1/traces`` and answers ``GET /stats``."""

    def __init__(self, stats: SinkStats) -> None:
        self._stats = stats
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Remember the transport to answer on."""
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        """Buffer bytes and handle every complete request."""
        self._buffer += data
        while self._transport is not None:
            end = self._buffer.find(_HEADER_END)
            if end < 0:
                return
            head = bytes(self._buffer[:end])
            try:
                length = content_length(head)
            except ValueError:
                self._transport.close()
                return
            total = end + len(_HEADER_END) + length
            if len(self._buffer) < total:
                return
            body = bytes(self._buffer[end + len(_HEADER_END) : total])
            del self._buffer[:total]
            self._handle(head, body)

    def _handle(self, head: bytes, body: bytes) -> None:
        assert self._transport is not None
        request_line = head.split(b"\r\n", 1)[0]
        if request_line.startswith(b"GET /stats"):
            payload = self._stats.as_json()
            self._transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                + str(len(payload)).encode()
                + b"\r\n\r\n"
                + payload
            )
            return
        stats = self._stats
        stats.exports += 1
        stats.bytes += len(body)
        try:
            if b"content-encoding: gzip" in head.lower():
                body = gzip.decompress(body)
            stats.spans += count_spans(body)
        except (ValueError, IndexError, OSError, EOFError):
            stats.bad += 1
        self._transport.write(_OK)


async def serve(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    stats = SinkStats()
    await serve_until_stopped(lambda: SinkProtocol(stats), host, port)


def main() -> None:
    """Parse arguments and serve."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    ns = parser.parse_args()
    asyncio.run(serve(ns.host, ns.port))


if __name__ == "__main__":
    main()
