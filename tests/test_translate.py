"""TranslatedStream: one incremental translator over a byte source."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from relaygate.translate import TranslatedStream


class Upper:
    """Upper-cases complete lines; done after a line ``END``."""

    def __init__(self) -> None:
        self.done = False
        self._tail = b""

    def feed(self, data: bytes) -> bytes:
        data = self._tail + data
        lines = data.split(b"\n")
        self._tail = lines.pop()
        out = b""
        for line in lines:
            if line == b"END":
                self.done = True
                return out + b"<end>"
            out += line.upper()
        return out

    def end(self) -> bytes:
        if not self.done:
            raise ValueError("ended early")
        return b""


class Source:
    def __init__(self, chunks: Iterable[bytes], error: Exception | None = None) -> None:
        self._chunks = list(chunks)
        self._error = error
        self.read = 0
        self.closed = False

    async def __anext__(self) -> bytes:
        if self.read < len(self._chunks):
            self.read += 1
            return self._chunks[self.read - 1]
        if self._error is not None:
            raise self._error
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.closed = True


async def collect(stream: TranslatedStream) -> list[bytes]:
    return [chunk async for chunk in stream]


async def test_reads_that_translate_to_nothing_are_passed_over() -> None:
    source = Source([b"a", b"b\nc", b"\nEND\n"])
    assert await collect(TranslatedStream(source, Upper())) == [b"AB", b"C<end>"]


async def test_after_the_end_the_source_is_read_to_its_end_and_dropped() -> None:
    source = Source([b"x\nEND\n", b"trailing", b"more"])
    assert await collect(TranslatedStream(source, Upper())) == [b"X<end>"]
    assert source.read == 3


async def test_a_source_that_breaks_after_the_end_does_not_break_the_answer() -> None:
    source = Source([b"x\nEND\n"], error=ConnectionResetError("reset"))
    assert await collect(TranslatedStream(source, Upper())) == [b"X<end>"]


async def test_a_break_before_the_end_passes_through() -> None:
    source = Source([b"x\n"], error=ConnectionResetError("reset"))
    stream = TranslatedStream(source, Upper())
    assert await stream.__anext__() == b"X"
    with pytest.raises(ConnectionResetError):
        await stream.__anext__()


async def test_a_source_ending_early_is_the_translators_call() -> None:
    stream = TranslatedStream(Source([b"x\n"]), Upper())
    assert await stream.__anext__() == b"X"
    with pytest.raises(ValueError, match="ended early"):
        await stream.__anext__()


async def test_aclose_releases_the_source() -> None:
    source = Source([])
    await TranslatedStream(source, Upper()).aclose()
    assert source.closed
