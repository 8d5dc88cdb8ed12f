"""CPU per relayed chunk over aiohttp's own stream reader, one event-loop wake-up per chunk.

:mod:`benchmarks.stream_bench` feeds the app chunks that are all there at once, so a read
never waits and the coroutines a chunk passes through are never resumed from the loop;
:mod:`benchmarks.stream_type_bench` measures :class:`~relaygate.exchange.ResponseStream`
alone. This one relays a recorded chat stream (``--chunks`` content chunks) read from an
``aiohttp.StreamReader`` that is fed one chunk per loop iteration, as a socket would, so
every chunk wakes the reading task and resumes every frame between it and the wire
client's read: what the pipeline stream costs on a live connection, the wire client's
reader included. The stream is built the way the provider handler builds it for an
aiohttp upstream (``UpstreamStream(reader.readany, ...).relay()``). The figure is the best
of ``--repeat`` passes of ``--streams`` streams, CPU µs per chunk.

Run: ``python -m benchmarks.stream_wire_bench [--streams 300] [--chunks 200] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp
import uvloop
from aiohttp.streams import StreamReader

from benchmarks.stream_type_bench import recorded_stream
from relaygate.providers.client import UpstreamStream


class _Protocol:
    """The little of aiohttp's connection protocol a ``StreamReader`` asks about."""

    connected = True
    _reading_paused = False

    def pause_reading(self) -> None:
        return None

    def resume_reading(self, resume_parser: bool = True) -> None:
        return None


async def _released() -> None:
    return None


async def _relay(chunks: list[bytes]) -> int:
    loop = asyncio.get_running_loop()
    reader = StreamReader(_Protocol(), 2**16, loop=loop)  # type: ignore[arg-type]
    stream = UpstreamStream(reader.readany, _released, (aiohttp.ClientError, OSError)).relay()

    def feed(index: int = 0) -> None:
        if index < len(chunks):
            reader.feed_data(chunks[index])
            loop.call_soon(feed, index + 1)
        else:
            reader.feed_eof()

    loop.call_soon(feed)
    relayed = 0
    async for _chunk in stream:
        relayed += 1
    return relayed


async def _pass(chunks: list[bytes], streams: int) -> float:
    for _ in range(20):  # warm up
        await _relay(chunks)
    started = time.process_time()
    for _ in range(streams):
        if await _relay(chunks) != len(chunks):
            raise SystemExit("a stream lost chunks")
    return (time.process_time() - started) * 1e6 / (streams * len(chunks))


def main(argv: list[str] | None = None) -> int:
    """Print the best CPU µs per relayed chunk."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    ns = parser.parse_args(argv)
    chunks = recorded_stream(ns.chunks)
    best = min(uvloop.run(_pass(chunks, ns.streams)) for _ in range(ns.repeat))
    print(f"{ns.streams} streams of {len(chunks)} chunks, best of {ns.repeat} passes")
    print(f"{best:.3f} µs per chunk")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
