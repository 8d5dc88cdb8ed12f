"""The protocol-agnostic request and response that flow through the pipeline.

The edge (ASGI app or httpx transport) turns an HTTP request into a :class:`GatewayRequest`;
layers pass it inwards, each deriving a copy with more decided (config, target, attempt);
the innermost handler answers with a :class:`GatewayResponse`. Nothing here knows ASGI.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import orjson

from relaygate.config.model import RoutingConfig, Target
from relaygate.security.keys import KeyScope
from relaygate.sse import (
    MAX_LINE_BYTES,
    USAGE_MARK,
    finish_reasons_of,
    string_field,
    usage_of,
)
from relaygate.strategies.reasons import Reason


class Operation(StrEnum):
    """The API operation, named as the OpenTelemetry GenAI ``gen_ai.operation.name`` values."""

    CHAT = "chat"
    TEXT_COMPLETION = "text_completion"
    EMBEDDINGS = "embeddings"


@dataclass(slots=True)
class AttemptRecord:
    """What one upstream attempt did: the unit of the route story and of per-target telemetry."""

    target: Target
    attempt: int
    status: int
    reason: str
    duration_s: float
    backoff_s: float = 0.0


class ClientLink:
    """The edge's word on one request's client side, shared with the telemetry that records it.

    ``cut`` stays ``None`` while the request is served normally; an edge that stops serving
    it early sets it to why (:data:`CLIENT_DISCONNECTED`, :data:`GATEWAY_SHUTTING_DOWN`)
    before cancelling the work, so attempts, streams and the request log name that outcome.
    """

    __slots__ = ("cut",)

    def __init__(self) -> None:
        self.cut: str | None = None


CLIENT_DISCONNECTED = "client_disconnected"
"""Outcome of a request (and of its running attempt) whose client went away mid-way."""

GATEWAY_SHUTTING_DOWN = "gateway_shutting_down"
"""Outcome of a request still running when the server's shutdown drain ended."""


@dataclass(slots=True)
class RequestContext:
    """Per-request state shared by every layer (the same object in every derived request).

    ``attempts`` accumulates in order as upstream attempts finish; ``deadline`` is an
    event-loop time after which no new attempt starts; ``config`` is the resolved config;
    ``principal`` is the scope of the caller's gateway key once authenticated (``None``
    before, and always when gateway auth is off); ``client`` is the edge's
    :class:`ClientLink`, when the edge provides one. ``attempts_started`` counts attempts
    begun (the retry layer counts them) against ``max_attempts``, the request's attempt
    budget (``None``: unbounded).
    """

    request_id: str
    trace_id: str
    metadata: Mapping[str, Any]
    deadline: float | None = None
    attempts: list[AttemptRecord] = field(default_factory=list)
    config: RoutingConfig | None = None
    fallbacks: int = 0
    principal: KeyScope | None = None
    client: ClientLink | None = None
    max_attempts: int | None = None
    attempts_started: int = 0


@dataclass(slots=True)
class GatewayRequest:
    """One client request as the pipeline sees it.

    ``body`` is the parsed JSON body and ``raw_body`` its exact bytes, forwarded unchanged when
    no ``override_params`` apply. ``headers`` has lower-case names. ``config``, ``target`` and
    ``attempt`` (with ``backoff_s``, the wait before it) are filled in by the config-resolve,
    fallback and retry layers in turn; so is ``circuit_alternatives`` by the fallback layer.
    """

    operation: Operation
    body: dict[str, Any]
    raw_body: bytes
    headers: Mapping[str, str]
    ctx: RequestContext
    stream: bool = False
    config: RoutingConfig | None = None
    target: Target | None = None
    attempt: int = 0
    backoff_s: float = 0.0
    circuit_alternatives: bool = False
    """Whether a strategy above has another child to use if this target's circuit is open:
    only then does an open circuit refuse the attempt (else it is tried anyway)."""

    def derive(self, **changes: Any) -> GatewayRequest:
        """A copy with ``changes`` applied; the shared :class:`RequestContext` is kept.

        The copy is a generated field-by-field assignment (as ``dataclasses`` generates its
        own methods): ``dataclasses.replace`` costs several times more, and this runs four
        times per attempt.
        """
        new: GatewayRequest = _copy_request(self)
        for name, value in changes.items():
            setattr(new, name, value)
        return new

    @property
    def model(self) -> str | None:
        """The model the client asked for, before any override."""
        model = self.body.get("model")
        return model if isinstance(model, str) else None


def _copier(cls: type[Any]) -> Callable[[Any], Any]:
    """A function copying every field of the slotted dataclass ``cls`` onto a new instance."""
    names = [f.name for f in dataclasses.fields(cls)]
    body = "".join(f"    new.{name} = old.{name}\n" for name in names)
    source = f"def copy(old):\n    new = new_instance(cls)\n{body}    return new\n"
    namespace: dict[str, Any] = {"new_instance": object.__new__, "cls": cls}
    exec(source, namespace)  # generated from the dataclass's own field names
    copy: Callable[[Any], Any] = namespace["copy"]
    return copy


_copy_request = _copier(GatewayRequest)


@dataclass(slots=True)
class GatewayResponse:
    """An answer travelling back out through the layers.

    Exactly one of ``body`` (a complete payload) or ``stream`` (a :class:`ResponseStream`,
    already started: its first chunk has arrived) is set. ``failure`` is the bounded
    reason of a synthesized or failed answer (timeout, connect_error, ...) and ``None`` when
    the upstream answered by itself; ``target`` is the target that produced it.
    """

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    stream: ResponseStream | None = None
    failure: str | None = None
    target: Target | None = None
    payload: Any = None

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300

    async def aclose(self) -> None:
        """Release a stream that will not be read (a failed attempt being discarded)."""
        stream = self.stream
        if stream is not None:
            self.stream = None
            await stream.aclose()


class ByteSource(Protocol):
    """Where a :class:`ResponseStream` reads its bytes: an async iterator that can be released."""

    def __anext__(self) -> Any:
        """The next chunk (an awaitable of ``bytes``); ``StopAsyncIteration`` at the end."""
        ...

    async def aclose(self) -> None:
        """Release the source (its connection) early; harmless once it has ended."""
        ...


MAX_FINISH_REASONS = 16
"""Most finish reasons a stream keeps (one per choice; an upstream's events are untrusted)."""

StreamEnd = Callable[["ResponseStream"], None]
"""A callback run once, with the stream, when a :class:`ResponseStream` ends."""


class ResponseStream:
    """The one stream type of the pipeline: a streamed answer's bytes plus what they said.

    Iterating yields ``first`` (the chunk the provider handler waited for), then the
    source's chunks, unchanged. While they pass, complete SSE lines are read for telemetry:
    a line split across chunks is carried over in a line buffer, and only lines that can
    matter are parsed (the first ``data:`` event, and lines containing ``"usage"``). A chunk
    of whole lines without ``"usage"`` (nearly all of them) costs one byte search and no
    allocation.

    Typed facts, read by whoever registered an end callback:

    - ``failure``: ``None``, or the bounded reason the stream went wrong (``stream_error``
      when the source raised one of ``breaks`` midway; a layer may set the reason of the
      attempt that produced a non-2xx stream);
    - ``detail``: a human-readable note on the failure;
    - ``usage``: ``(input, output)`` tokens of the last usage event seen;
    - ``model``, ``response_id``, ``finish_reasons``: from the parsed events, when they say
      (the first ``data:`` line names model and id; the usage event may carry the choices'
      finish reasons; at most :data:`MAX_FINISH_REASONS` are kept). Finish reasons sent only
      in chunks without usage are not read: finding them would cost a search per chunk;
    - ``closed_early``: whether :meth:`aclose` ended it before the source had ended.

    When the source raises one of ``breaks``, ``break_event(detail)`` (if given) is yielded
    as a last chunk (so the client sees an error event, not a clean-looking end) and the
    stream then ends. Callbacks added with :meth:`on_end` run once, in the order added,
    when the stream ends, breaks, or is closed; a callback added after the end runs at once.
    """

    __slots__ = (
        "_break_event",
        "_breaks",
        "_ends",
        "_first",
        "_head",
        "_pending",
        "_skip",
        "_source",
        "_stopped",
        "_tail",
        "closed_early",
        "detail",
        "ended",
        "failure",
        "finish_reasons",
        "model",
        "response_id",
        "usage",
    )

    def __init__(
        self,
        source: ByteSource,
        first: bytes | None = None,
        *,
        breaks: tuple[type[Exception], ...] = (),
        break_event: Callable[[str], bytes] | None = None,
    ) -> None:
        self._source = source
        self._first = first
        self._breaks = breaks
        self._break_event = break_event
        self._ends: list[StreamEnd] = []
        self._stopped = False
        self._tail = b""
        self._skip = False
        self._head = True
        self._pending = True
        self.failure: str | None = None
        self.detail: str | None = None
        self.usage: tuple[int, int] | None = None
        self.model: str | None = None
        self.response_id: str | None = None
        self.finish_reasons: list[str] | None = None
        self.closed_early = False
        self.ended = False

    def on_end(self, callback: StreamEnd) -> None:
        """Run ``callback(self)`` once when the stream ends (at once if it already has)."""
        if self.ended:
            callback(self)
        else:
            self._ends.append(callback)

    def __aiter__(self) -> ResponseStream:
        return self

    async def __anext__(self) -> bytes:
        chunk = self._first
        if chunk is None:
            if self._stopped:
                self._end()
                raise StopAsyncIteration
            try:
                chunk = await self._source.__anext__()
            except StopAsyncIteration:
                self._end()
                raise
            except self._breaks as exc:
                return self._broke(exc)
            except Exception:
                self._end()
                raise
        else:
            self._first = None
        # The fast path, most chunks: whole lines (nothing to carry over) and nothing to read.
        if self._pending or chunk[-1:] != b"\n" or USAGE_MARK in chunk:
            self._feed(chunk)
        return chunk

    def _broke(self, exc: Exception) -> bytes:
        """The source broke midway: note why and end, after the break event if there is one."""
        self._stopped = True
        self.failure = Reason.STREAM_ERROR.value
        self.detail = str(exc)
        if self._break_event is None:
            self._end()
            raise StopAsyncIteration from None
        return self._break_event(self.detail)

    def _feed(self, chunk: bytes) -> None:
        """The SSE line buffer: scan the complete lines of the carried-over part plus
        ``chunk`` when they can matter, and carry the last partial line over."""
        tail = self._tail
        data = tail + chunk if tail else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            self._hold(data)
        else:
            start = 0
            if self._skip:
                self._skip = False
                start = data.find(b"\n") + 1
            if self._head or USAGE_MARK in data:
                self._scan(data[start : cut + 1] if start or cut + 1 < len(data) else data)
            self._tail = data[cut + 1 :]
        self._pending = self._head or self._skip or bool(self._tail)

    def _hold(self, data: bytes) -> None:
        """Carry a partial line over; one past :data:`MAX_LINE_BYTES` is skipped instead."""
        if len(data) > MAX_LINE_BYTES:
            self._tail = b""
            self._skip = True
        elif not self._skip:
            self._tail = data

    def _scan(self, block: bytes) -> None:
        """Read the telemetry facts of the complete SSE lines in ``block``."""
        for line in block.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            head = self._head
            if not (head or USAGE_MARK in line):
                continue
            self._head = False
            try:
                payload = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                continue
            if not isinstance(payload, dict):
                continue
            self.model = string_field(payload, "model") or self.model
            self.response_id = string_field(payload, "id") or self.response_id
            usage = usage_of(payload)
            if usage is not None:
                self.usage = usage
            reasons = finish_reasons_of(payload)
            if reasons:
                seen = self.finish_reasons or []
                self.finish_reasons = (seen + reasons)[:MAX_FINISH_REASONS]

    def _end(self) -> None:
        if self.ended:
            return
        self.ended = True
        ends, self._ends = self._ends, []
        for callback in ends:
            callback(self)

    async def aclose(self) -> None:
        """Release the source; if the stream had not ended, it ends now, closed early."""
        try:
            await self._source.aclose()
        finally:
            if not self.ended:
                self.closed_early = True
                self._end()
