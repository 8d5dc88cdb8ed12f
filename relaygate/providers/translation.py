"""Vendor-neutral parts of the translators for providers whose stream is SSE events.

The vendor modules keep the translation itself in pure functions; what lives here is
shared: an incremental SSE event splitter (:class:`SseSplitter`), the per-event
:class:`EventTranslator` interface a vendor's stream state machine implements, and
:class:`SseEvents`, which makes one a byte-level
:class:`~relaygate.translate.StreamTranslator` (the one stream translation interface every
translating adapter answers: :class:`~relaygate.providers.base.TranslatingAdapter`);
:class:`Refused` for a 2xx answer that is a refusal; and OpenAI error bodies by status.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from relaygate.errors import error_body
from relaygate.translate import UNREADABLE as UNREADABLE

DONE_EVENT = b"data: [DONE]\n\n"
"""The last event of a complete OpenAI stream."""


MAX_EVENT_BYTES = 1 << 20
"""Longest SSE event a translated stream buffers; a longer one breaks the stream."""


def data_event(payload: Any) -> bytes:
    """One OpenAI SSE ``data:`` event carrying ``payload`` as JSON."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def error_type_for(status: int) -> str:
    """OpenAI's ``error.type`` for an HTTP status (``server_error`` for 5xx)."""
    known = _ERROR_TYPES.get(status)
    if known is not None:
        return known
    return "server_error" if status >= 500 else "invalid_request_error"


def openai_error(status: int, message: str, code: str | None, param: str | None = None) -> bytes:
    """An OpenAI-shaped error body for ``status`` (``type`` from :func:`error_type_for`)."""
    return error_body(message, type=error_type_for(status), code=code, param=param)


class Refused(Exception):
    """A 2xx answer that is a refusal to be answered as an error (Gemini's prompt block).

    ``status`` and ``body`` (OpenAI-shaped) are what the client gets instead. Raised by a
    translated stream only before it has handed anything on, so nothing reached the client.
    """

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"refused with {status}")
        self.status = status
        self.body = body


class EventTranslator(Protocol):
    """Turns one provider stream's SSE events into OpenAI SSE events; one per stream.

    ``feed`` takes one event (its ``event:`` name or ``None``, and its ``data`` bytes) and
    returns the OpenAI events it makes (maybe none); ``end`` is called when the upstream's
    bytes ended and returns the closing events (usage, ``[DONE]``), or raises
    :class:`~relaygate.providers.client.StreamInterrupted` when the stream ended before its
    answer did. ``feed`` raises :class:`Refused` for a refusal, ``ValueError`` for an event
    that breaks the format.
    """

    def feed(self, event: str | None, data: bytes) -> list[bytes]:
        """OpenAI events for one upstream event."""
        ...

    def end(self) -> list[bytes]:
        """OpenAI events closing the stream."""
        ...

    @property
    def done(self) -> bool:
        """Whether the answer is complete (the closing events have been made)."""
        ...


@dataclass(slots=True)
class SseSplitter:
    """Splits an SSE byte stream into ``(event name, data)`` pairs, however it is chunked.

    Lines end in ``\\n``, ``\\r\\n`` or ``\\r``; several ``data:`` lines of one event are
    joined with ``\\n``; comments (``:``) and other fields are ignored; a blank line ends an
    event. Pure and incremental: :meth:`push` returns the events completed by ``chunk``.
    """

    _buffer: bytes = b""
    _event: str | None = None
    _data: list[bytes] = field(default_factory=list)

    def push(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        """The events completed by ``chunk``; ``ValueError`` past :data:`MAX_EVENT_BYTES`."""
        data = self._buffer + chunk
        held = b""
        if data.endswith(b"\r"):
            # Maybe the first half of a CRLF: decided by the next chunk.
            data, held = data[:-1], b"\r"
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, rest = data.split(b"\n")
        self._buffer = rest + held
        if len(self._buffer) > MAX_EVENT_BYTES:
            raise ValueError("an upstream stream event is too long")
        events: list[tuple[str | None, bytes]] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append((self._event, b"\n".join(self._data)))
                self._event, self._data = None, []
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
            elif line.startswith(b"event:"):
                self._event = line[6:].strip().decode("utf-8", "replace")
        return events

    def close(self) -> list[tuple[str | None, bytes]]:
        """The last event when the bytes ended without its blank line."""
        events = self.push(b"\n\n") if self._buffer or self._data else []
        return events


def translate_all(
    translator: EventTranslator, chunks: Sequence[bytes], splitter: SseSplitter | None = None
) -> list[bytes]:
    """Every OpenAI event a whole upstream stream makes (tests and fixtures; pure)."""
    splitter = splitter or SseSplitter()
    out: list[bytes] = []
    for chunk in chunks:
        for name, data in splitter.push(chunk):
            out.extend(translator.feed(name, data))
    for name, data in splitter.close():
        out.extend(translator.feed(name, data))
    out.extend(translator.end())
    return out


class SseEvents:
    """A :class:`~relaygate.translate.StreamTranslator` made of an SSE splitter and a
    vendor's :class:`EventTranslator`: the byte-level translator of a vendor whose stream is
    SSE events (Gemini, Cohere). Bytes that do not split into events within
    :data:`MAX_EVENT_BYTES`, or an event the translator cannot read, raise ``ValueError``
    (a broken stream); a :class:`Refused` (only ever before any output) passes through."""

    __slots__ = ("_events", "_splitter")

    def __init__(self, events: EventTranslator) -> None:
        self._events = events
        self._splitter = SseSplitter()

    @property
    def done(self) -> bool:
        """Whether the vendor's answer is complete."""
        return self._events.done

    def feed(self, data: bytes) -> bytes:
        """See :meth:`relaygate.translate.StreamTranslator.feed`."""
        events = self._events
        pairs = self._splitter.push(data)
        return b"".join(out for name, raw in pairs for out in events.feed(name, raw))

    def end(self) -> bytes:
        """See :meth:`relaygate.translate.StreamTranslator.end`."""
        events = self._events
        tail = [out for name, raw in self._splitter.close() for out in events.feed(name, raw)]
        return b"".join(tail + events.end())
