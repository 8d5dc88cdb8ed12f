"""The glue between a provider that speaks its own wire format and the pipeline's OpenAI shape.

An adapter whose provider does not speak OpenAI's API carries a :class:`Translation` as its
``translation`` attribute (adapters without one are passed through as before). The provider
handler asks it to turn every complete answer (success or error, any status) into OpenAI's
shape (:meth:`Translation.answer`), and wraps a streamed answer's bytes in a
:class:`TranslatedStream` that yields OpenAI ``chat.completion.chunk`` SSE events, so the
pipeline's one stream type (:class:`~relaygate.exchange.ResponseStream`) reads usage, finish
reasons, model and id, and deadlines and mid-stream recovery work, unchanged.

The vendor modules keep the translation itself in pure functions; what lives here is
vendor-neutral: an incremental SSE event splitter, the :class:`EventTranslator` state
machine interface, the stream wrapper, and OpenAI error bodies by status.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from relaygate.errors import error_body
from relaygate.exchange import GatewayRequest
from relaygate.providers.client import StreamInterrupted, UpstreamResponse, UpstreamStream

DONE_EVENT = b"data: [DONE]\n\n"
"""The last event of a complete OpenAI stream."""

UNREADABLE = (ValueError, TypeError, AttributeError, KeyError)
"""What a translator raises on a body of a shape it does not read: an answer that is
invalid, never a gateway failure."""

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


class TranslatedStream:
    """An :class:`~relaygate.providers.client.UpstreamStream` seen through a translator.

    Yields OpenAI SSE bytes (one ``bytes`` per upstream chunk that made any); upstream
    chunks that make none are read past. The upstream's breaks and stalls pass through
    unchanged (:class:`~relaygate.providers.client.StreamInterrupted`,
    :class:`~relaygate.providers.client.StreamStalled`), as does ``idle_timeout_s``, which
    the provider handler sets on it as on the raw stream. An event the translator cannot
    read breaks the stream; a :class:`Refused` before anything was yielded propagates (the
    handler answers it as an error), after that it is yielded as an error event.
    """

    __slots__ = ("_done", "_source", "_splitter", "_started", "_translator")

    def __init__(self, source: UpstreamStream, translator: EventTranslator) -> None:
        self._source = source
        self._translator = translator
        self._splitter = SseSplitter()
        self._done = False
        self._started = False

    @property
    def idle_timeout_s(self) -> float | None:
        """The upstream's idle bound (see :class:`UpstreamStream`)."""
        return self._source.idle_timeout_s

    @idle_timeout_s.setter
    def idle_timeout_s(self, value: float | None) -> None:
        self._source.idle_timeout_s = value

    def __aiter__(self) -> TranslatedStream:
        return self

    async def __anext__(self) -> bytes:
        while not self._done:
            try:
                chunk = await self._source.__anext__()
            except StopAsyncIteration:
                self._done = True
                out = self._translate(self._splitter.close(), closing=True)
            else:
                try:
                    events = self._splitter.push(chunk)
                except ValueError as exc:
                    raise StreamInterrupted(str(exc)) from None
                out = self._translate(events, closing=False)
            if out:
                self._started = True
                return out
        raise StopAsyncIteration

    def _translate(self, events: list[tuple[str | None, bytes]], closing: bool) -> bytes:
        translator = self._translator
        out: list[bytes] = []
        try:
            for name, data in events:
                out.extend(translator.feed(name, data))
            if closing:
                out.extend(translator.end())
        except Refused as exc:
            if not self._started and not out:
                raise
            self._done = True
            out.append(b"data: " + exc.body + b"\n\n")
        except UNREADABLE as exc:
            raise StreamInterrupted(f"upstream stream unreadable: {exc}") from None
        return b"".join(out)

    async def aclose(self) -> None:
        """Release the upstream connection."""
        self._done = True
        await self._source.aclose()


class Translation(Protocol):
    """What an adapter for a non-OpenAI wire format adds (its ``translation`` attribute)."""

    def answer(self, request: GatewayRequest, response: UpstreamResponse) -> UpstreamResponse:
        """``response`` (a complete body, any status) in OpenAI's shape: a 2xx body as the
        OpenAI payload, an error as ``{"error": {...}}`` with the status the fallback rules
        should act on. Raises ``ValueError`` for a 2xx body that is not a valid answer."""
        ...

    def stream(self, request: GatewayRequest, source: UpstreamStream) -> TranslatedStream:
        """``source``, a 2xx streamed answer, as OpenAI chunks."""
        ...


@dataclass(frozen=True, slots=True)
class TranslationTable:
    """A :class:`Translation` made of pure functions, one vendor's row.

    ``success(request, payload)`` translates a parsed 2xx body (raising :class:`Refused` to
    answer it as an error), ``error(status, payload_or_none, raw)`` an error answer to
    ``(status, OpenAI error body)``, and ``translator(request)`` makes a stream's
    :class:`EventTranslator`.
    """

    success: Callable[[GatewayRequest, Any], Any]
    error: Callable[[int, Any], tuple[int, bytes]]
    translator: Callable[[GatewayRequest], EventTranslator]

    def answer(self, request: GatewayRequest, response: UpstreamResponse) -> UpstreamResponse:
        """See :meth:`Translation.answer`."""
        try:
            payload = orjson.loads(response.body) if response.body else None
        except orjson.JSONDecodeError:
            payload = None
        status = response.status
        if 200 <= status < 300:
            if not isinstance(payload, dict):
                raise ValueError("upstream answered with a body that is not a JSON object")
            try:
                out = self.success(request, payload)
            except Refused as exc:
                return _replaced(response, exc.status, exc.body)
            except UNREADABLE as exc:
                raise ValueError(f"upstream answer unreadable: {exc}") from None
            return _replaced(response, status, orjson.dumps(out))
        if 400 <= status < 600:
            new_status, body = self.error(status, payload)
            return _replaced(response, new_status, body)
        return response

    def stream(self, request: GatewayRequest, source: UpstreamStream) -> TranslatedStream:
        """See :meth:`Translation.stream`."""
        return TranslatedStream(source, self.translator(request))


_BODY_HEADERS = ("content-length", "content-encoding", "content-type", "transfer-encoding")


def _replaced(response: UpstreamResponse, status: int, body: bytes) -> UpstreamResponse:
    headers = {k: v for k, v in response.headers.items() if k not in _BODY_HEADERS}
    headers["content-type"] = "application/json"
    return UpstreamResponse(status=status, headers=headers, body=body)
