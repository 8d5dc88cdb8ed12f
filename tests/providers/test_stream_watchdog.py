"""The idle watchdog of a streamed answer (the pipeline's ResponseStream over an upstream
stream): a stall ends it, a slow reader does not, and it costs one loop timer per idle period
rather than one per chunk."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from relaygate.exchange import ResponseStream
from relaygate.providers.client import StreamInterrupted, StreamStalled, UpstreamStream

IDLE_S = 0.2


class Source:
    """Chunks put by the test, read by the stream; ``closed`` once released."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        while (chunk := await self.queue.get()) is not None:
            yield chunk

    async def close(self) -> None:
        self.closed = True

    def stream(self, idle_s: float | None = IDLE_S) -> ResponseStream:
        return UpstreamStream.of(self.chunks(), self.close, (OSError,), idle_s).relay()


async def test_a_source_silent_for_the_idle_bound_ends_the_stream_stalled_and_is_released() -> None:
    source = Source()
    stream = source.stream()
    source.queue.put_nowait(b"data: 1\n\n")
    assert await stream.__anext__() == b"data: 1\n\n"
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
    assert (stream.failure, stream.detail) == ("stream_idle", "no data from upstream for 0.2s")
    assert stream.ended and source.closed
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # the watchdog's cancel was undone


async def test_a_stall_is_a_kind_of_interruption() -> None:
    assert issubclass(StreamStalled, StreamInterrupted)


async def test_a_stream_silent_since_its_headers_fails_its_opening_as_stalled() -> None:
    source = Source()
    stream = source.stream()
    with pytest.raises(StreamStalled, match=r"no data from upstream for 0\.2s"):
        await stream.open()
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # the watchdog's cancel was undone


async def test_chunks_within_the_bound_are_never_cut_however_long_the_stream() -> None:
    source = Source()
    stream = source.stream()

    async def produce() -> None:
        for n in range(8):  # 8 x IDLE_S / 4: twice the bound in all
            await asyncio.sleep(IDLE_S / 4)
            source.queue.put_nowait(b"x%d" % n)
        source.queue.put_nowait(None)

    producer = asyncio.create_task(produce())
    received = [chunk async for chunk in stream]
    await producer
    assert received == [b"x%d" % n for n in range(8)]


async def test_time_the_reader_spends_elsewhere_is_not_the_upstreams_silence() -> None:
    source = Source()
    stream = source.stream()
    source.queue.put_nowait(b"a")
    assert await stream.__anext__() == b"a"
    await asyncio.sleep(IDLE_S * 2)  # a slow client: the next chunk is already there
    source.queue.put_nowait(b"b")
    assert await stream.__anext__() == b"b"


async def test_a_cancellation_from_outside_passes_through_as_a_cancellation() -> None:
    source = Source()
    stream = source.stream(idle_s=60.0)
    reader = asyncio.create_task(stream.__anext__())
    await asyncio.sleep(0)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader


async def test_without_a_bound_a_silent_source_is_waited_for() -> None:
    source = Source()
    stream = source.stream(idle_s=None)
    reader = asyncio.create_task(stream.__anext__())
    await asyncio.sleep(IDLE_S * 2)
    assert not reader.done()
    source.queue.put_nowait(b"late")
    assert await reader == b"late"


async def test_one_timer_serves_many_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    armed: list[float] = []
    call_at = loop.call_at

    def counting(when: float, callback: Any, *args: Any, **kw: Any) -> asyncio.TimerHandle:
        armed.append(when)
        return call_at(when, callback, *args, **kw)

    monkeypatch.setattr(loop, "call_at", counting)
    source = Source()
    stream = source.stream(idle_s=60.0)
    for n in range(200):
        source.queue.put_nowait(b"%d" % n)
    source.queue.put_nowait(None)
    received = [chunk async for chunk in stream]
    assert len(received) == 200
    assert len(armed) == 1
