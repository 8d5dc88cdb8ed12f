"""Byte streams translated from one vendor's event format to another's, incrementally.

A :class:`StreamTranslator` is pure: it is fed bytes split anywhere and answers the
translated bytes of the complete events so far. :class:`TranslatedStream` runs one over a
:class:`~relaygate.exchange.ByteSource` and is one itself, so a translated stream plugs in
wherever a raw one does: the provider handler reads every vendor's stream through one (wire
format → OpenAI chunks, or chat chunks → Responses events), the Messages front door reads
the pipeline's answer through one (OpenAI chunks → Anthropic events). Translators compose:
:class:`Chained` feeds one's output to the next.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from relaygate.exchange import ByteSource

MAX_DRAIN_BYTES = 65536
"""Most bytes read and dropped after the translated stream has ended."""

UNREADABLE: tuple[type[Exception], ...] = (ValueError, TypeError, AttributeError, KeyError)
"""What a translator raises on bytes or a body of a shape it does not read: an invalid
answer, never a gateway failure."""


class StreamTranslator(Protocol):
    """Incremental translation of one stream (one instance per stream).

    ``feed`` takes the bytes as they arrive, in chunks cut anywhere, and answers the bytes
    they complete (possibly ``b""``); ``end`` answers what remains once the input ended
    cleanly (a closing usage event, ``data: [DONE]``). Both raise :class:`ValueError` when
    the input is not a valid stream, or ended before its answer did (the stream is then
    reported broken); an exception of the reader's own kind (a stream break) passes through
    as it is. ``done`` turns true once the translated stream is complete: nothing more of
    the input is translated.
    """

    @property
    def done(self) -> bool:
        """Whether the translated stream has ended."""
        ...

    def feed(self, data: bytes) -> bytes:
        """The translation of the complete events in what was fed so far (``b""`` if none)."""
        ...

    def end(self) -> bytes:
        """The last translated bytes at the end of the input."""
        ...


class Chained:
    """Two stream translators in a row: ``first``'s output is ``second``'s input (a
    vendor's wire format → chat chunks → Responses events)."""

    __slots__ = ("_first", "_second")

    def __init__(self, first: StreamTranslator, second: StreamTranslator) -> None:
        self._first = first
        self._second = second

    @property
    def done(self) -> bool:
        """Whether the second translator has ended."""
        return self._second.done

    def feed(self, data: bytes) -> bytes:
        """See :meth:`StreamTranslator.feed`."""
        middle = self._first.feed(data)
        return self._second.feed(middle) if middle else b""

    def end(self) -> bytes:
        """See :meth:`StreamTranslator.end`."""
        out = self._second.feed(self._first.end())
        return out if self._second.done else out + self._second.end()


class TranslatedStream:
    """``source`` read through ``translator``: each read answers the translation of one or
    more reads of the source (reads that translate to nothing are passed over); the
    source's exceptions (breaks, stalls) pass through unchanged. The stream ends when the
    source ends (``StopAsyncIteration`` or an empty chunk); once the translator is done,
    what the source still sends is read and dropped (up to :data:`MAX_DRAIN_BYTES`), so
    that a source with end-of-stream bookkeeping (a
    :class:`~relaygate.exchange.ResponseStream`'s telemetry) sees its end rather than an
    early close, and the connection is left clean for reuse; a source that
    breaks after the translated end does not make the complete answer a broken one.

    With ``invalid``, what the translator raises of :data:`UNREADABLE` (bytes it cannot
    read, an input that ended early) releases the source and is raised as
    ``invalid(message)`` (the provider handler's stream break); without, it passes through.
    """

    __slots__ = ("_ended", "_invalid", "_source", "_translator")

    def __init__(
        self,
        source: ByteSource,
        translator: StreamTranslator,
        invalid: Callable[[str], Exception] | None = None,
    ) -> None:
        self._source = source
        self._translator = translator
        self._invalid = invalid
        self._ended = False

    def __aiter__(self) -> TranslatedStream:
        return self

    async def __anext__(self) -> bytes:
        if self._invalid is None:
            return await self._next()
        try:
            return await self._next()
        except UNREADABLE as exc:
            await self._source.aclose()
            raise self._invalid(f"upstream stream unreadable: {exc}") from None

    async def _next(self) -> bytes:
        translator = self._translator
        while True:
            if self._ended:
                raise StopAsyncIteration
            if translator.done:
                self._ended = True
                await self._drain()
                raise StopAsyncIteration
            try:
                data: bytes = await self._source.__anext__()
            except StopAsyncIteration:
                data = b""
            if not data:
                self._ended = True
                tail = translator.end()
                if tail:
                    return tail
                raise StopAsyncIteration
            out = translator.feed(data)
            if out:
                return out

    async def _drain(self) -> None:
        """Read the source to its end (bounded), dropping what it sends."""
        left = MAX_DRAIN_BYTES
        while left > 0:
            try:
                data: bytes = await self._source.__anext__()
            except StopAsyncIteration:
                return
            except Exception:
                # The translated answer is complete: how the source ends after it (a reset,
                # a stall) is not the answer's failure.
                return
            if not data:
                return
            left -= len(data)

    async def aclose(self) -> None:
        """Release the source."""
        await self._source.aclose()
