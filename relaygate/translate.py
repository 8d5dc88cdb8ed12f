"""Byte streams translated from one vendor's event format to another's, incrementally.

A :class:`Translator` is pure: it is fed bytes split anywhere and answers the translated
bytes of the complete events so far. :class:`TranslatedStream` runs one over a
:class:`~relaygate.exchange.ByteSource` and is one itself, so a translated stream plugs in
wherever a raw one does (the provider handler, the front doors).
"""

from __future__ import annotations

from typing import Protocol

from relaygate.exchange import ByteSource

MAX_DRAIN_BYTES = 65536
"""Most bytes read and dropped after the translated stream has ended."""


class Translator(Protocol):
    """Incremental translation of one stream."""

    @property
    def done(self) -> bool:
        """Whether the translated stream has ended (nothing more is read)."""
        ...

    def feed(self, data: bytes) -> bytes:
        """The translation of the complete events in what was fed so far (``b""`` if none)."""
        ...

    def close(self) -> bytes:
        """The last translated bytes at the end of the input; may raise when the input
        ended where it should not have."""
        ...


class TranslatedStream:
    """``source`` read through ``translator``: each read answers the translation of one or
    more reads of the source (reads that translate to nothing are passed over); the
    source's exceptions (breaks, stalls) pass through unchanged. The stream ends when the
    source ends; once the translator is done, what the source still sends is read and
    dropped (up to :data:`MAX_DRAIN_BYTES`), so that a source with end-of-stream
    bookkeeping (a :class:`~relaygate.exchange.ResponseStream`'s telemetry) sees its end
    rather than an early close, and the connection is left clean for reuse; a source that
    breaks after the translated end does not make the complete answer a broken one."""

    __slots__ = ("_source", "_translator")

    def __init__(self, source: ByteSource, translator: Translator) -> None:
        self._source = source
        self._translator = translator

    def __aiter__(self) -> TranslatedStream:
        return self

    async def __anext__(self) -> bytes:
        translator = self._translator
        while True:
            if translator.done:
                await self._drain()
                raise StopAsyncIteration
            try:
                data: bytes = await self._source.__anext__()
            except StopAsyncIteration:
                tail = translator.close()
                if tail:
                    return tail
                raise
            out = translator.feed(data)
            if out:
                return out

    async def _drain(self) -> None:
        """Read the source to its end (bounded), dropping what it sends."""
        left = MAX_DRAIN_BYTES
        while left > 0:
            try:
                left -= len(await self._source.__anext__())
            except StopAsyncIteration:
                return
            except Exception:
                # The translated answer is complete: how the source ends after it (a reset,
                # a stall) is not the answer's failure.
                return

    async def aclose(self) -> None:
        """Release the source."""
        await self._source.aclose()
