"""The protocol-agnostic request and response that flow through the pipeline.

The edge (ASGI app or httpx transport) turns an HTTP request into a :class:`GatewayRequest`;
layers pass it inwards, each deriving a copy with more decided (config, target, attempt);
the innermost handler answers with a :class:`GatewayResponse`. Nothing here knows ASGI.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import orjson

from relaygate.config.model import RoutingConfig, Target
from relaygate.security.keys import KeyScope
from relaygate.sse import (
    FACT_KEYS,
    MAX_LINE_BYTES,
    choice_finish_reasons,
    string_field,
    usage_of,
    worth_parsing,
)
from relaygate.strategies.attempt_bound import idle_due
from relaygate.strategies.reasons import Reason


class Operation(StrEnum):
    """The API operation, named as the OpenTelemetry GenAI ``gen_ai.operation.name`` values."""

    CHAT = "chat"
    TEXT_COMPLETION = "text_completion"
    EMBEDDINGS = "embeddings"
    RESPONSES = "responses"
    """OpenAI's Responses API (``POST /v1/responses``)."""
    COUNT_TOKENS = "count_tokens"
    """Anthropic's token counting (``POST /v1/messages/count_tokens``): answered by
    ``anthropic`` targets, refused by the others (not a GenAI convention value)."""


@dataclass(slots=True)
class AttemptRecord:
    """What one upstream attempt did: the unit of the route story and of per-target telemetry.

    ``status`` is the status line the upstream sent, as sent (a garbage ``200`` stays 200,
    its ``reason`` says ``invalid_response``), and ``None`` when nothing was answered
    (timeout, connect error, deadline, a client that left first): the gateway's synthesized
    status is the client's answer, never an attempt's. ``duration_s`` covers the whole
    attempt, a stream's until it ended; ``ttfc_s`` is a streamed attempt's time to its first
    chunk. ``span_id`` is the hex id of the attempt's CLIENT span, when one was made.
    """

    target: Target
    attempt: int
    status: int | None
    reason: str
    duration_s: float
    backoff_s: float = 0.0
    ttfc_s: float | None = None
    span_id: str | None = None
    note: str = ""
    """What became of a streamed attempt beyond its outcome: ``recovered@N chars`` for one
    that took over a broken stream, ``diverged@N chars`` for one that could not."""


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
    budget (``None``: unbounded). ``outcome`` is the request's outcome
    (:mod:`relaygate.strategies.outcome`) once the observe layer has decided it, when the
    answer was delivered (``None`` until then).
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
    outcome: str | None = None
    route_note: str | None = None
    """The route story of a request answered without any attempt (``cache:hit``)."""


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
    prefill: str | None = None
    """While a broken stream is recovered: the text its client already received. A target
    with ``supports_prefill`` is asked to continue it (:mod:`relaygate.recovery.prefill`)."""
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
    ``upstream_status`` is, for a synthesized answer, the status line the upstream had sent
    before the gateway judged its answer failed (a garbage body, a stream that broke before
    its first chunk), ``None`` when nothing was answered; see :attr:`status_as_sent`.
    """

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    stream: ResponseStream | None = None
    failure: str | None = None
    target: Target | None = None
    payload: Any = None
    upstream_status: int | None = None
    resume: Resume | None = None
    """For a streamed 2xx answer: the rest of the plan (remaining retries, then remaining
    fallback targets), run if the stream breaks midway (see :mod:`relaygate.recovery`)."""
    continues: bool = False
    """The answer continues a recovered stream's delivered text (it was asked with an
    assistant prefill) instead of saying it again."""

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300

    @property
    def status_as_sent(self) -> int | None:
        """The status the upstream sent: ``status`` for the upstream's own answer
        (``failure`` unset), else ``upstream_status`` (``None``: nothing was answered)."""
        return self.status if self.failure is None else self.upstream_status

    async def aclose(self) -> None:
        """Release a stream that will not be read (a failed attempt being discarded)."""
        stream = self.stream
        if stream is not None:
            self.stream = None
            await stream.aclose()


Resume = Callable[[Reason, str, str | None], Awaitable["GatewayResponse"]]
"""``resume(reason, detail, prefill)``: what the rest of a request's plan answers after its
streamed answer broke midway for ``reason``; ``prefill`` is the delivered text, offered to
targets that accept an assistant prefill (``None``: none is offered). A streamed 2xx answer
may carry its own ``resume``."""


class ByteSource(Protocol):
    """Where a :class:`ResponseStream` reads its bytes: an async iterator that can be released.

    A source ends by raising ``StopAsyncIteration`` or by answering an empty chunk (as a
    wire client's raw read does); it yields no empty chunk before its end.
    """

    def __anext__(self) -> Any:
        """The next chunk (an awaitable of ``bytes``); ``StopAsyncIteration`` or ``b""`` at
        the end."""
        ...

    async def aclose(self) -> None:
        """Release the source (its connection) early; harmless once it has ended."""
        ...


class StreamInterrupted(Exception):
    """A stream ended abnormally after it had started (connection cut or idle timeout)."""


class StreamStalled(StreamInterrupted):
    """A stream sent nothing for longer than its idle bound (reason ``stream_idle``)."""


STREAM_BROKE = "upstream stream broke: the connection closed mid-stream"
"""The detail of a stream whose connection broke, independent of the wire client."""


MAX_FINISH_REASONS = 16
"""Most finish reasons a stream keeps (one per choice; an upstream's events are untrusted)."""

_NULL_START = ord("n")
"""The first byte of ``null``."""

StreamEnd = Callable[["ResponseStream"], None]
"""A callback run once, with the stream, when a :class:`ResponseStream` ends."""

Recover = Callable[["ResponseStream"], Awaitable[bytes]]
"""Called by a stream that failed midway, instead of yielding its break event: answers the
chunk the client gets next (or raises ``StopAsyncIteration``)."""


class KeptChunks:
    """The chunks a recoverable stream delivered to its client, kept (by reference) for
    mid-stream recovery, up to ``max_bytes`` in all.

    Past the cap the chunks are released at once, ``overflowed`` is set and ``on_overflow``
    (if given) is called once: recovery for that stream is given up, and memory stays
    bounded however long the stream runs.
    """

    __slots__ = ("_on_overflow", "chunks", "overflowed", "room")

    def __init__(self, max_bytes: int, on_overflow: Callable[[], None] | None = None) -> None:
        self.chunks: list[bytes] = []
        self.room = max_bytes
        """Bytes that may still be kept."""
        self.overflowed = False
        self._on_overflow = on_overflow

    def keep(self, chunk: bytes) -> bool:
        """Keep ``chunk``; ``False`` (the chunks released) once the cap is passed."""
        self.room -= len(chunk)
        if self.room >= 0:
            self.chunks.append(chunk)
            return True
        self.overflow()
        return False

    def overflow(self) -> None:
        """The cap is passed: release the chunks and report it (once)."""
        if not self.overflowed:
            self.overflowed = True
            self.chunks = []
            if self._on_overflow is not None:
                self._on_overflow()


class ResponseStream:
    """The one stream type of the pipeline: a streamed answer's bytes plus what they said.

    Iterating yields ``first`` (the chunk the provider handler waited for), then the
    source's chunks, unchanged. While they pass, complete SSE lines are read for telemetry:
    a line split across chunks is carried over in a line buffer, and only lines that can
    matter are parsed (the first ``data:`` event, and lines whose ``"usage"`` or
    ``"finish_reason"`` is not null: OpenAI sends ``"usage":null`` in every chunk when asked
    for usage, and ``"finish_reason":null`` in every chunk but a choice's last). A chunk of
    whole lines whose last usage and finish reason keys are null or absent (nearly all of
    them) costs two backward byte searches and no allocation. Upstreams send one choice per
    chunk, so the last finish reason of a chunk is its only one; a chunk holding several
    events is judged by its last, and a finish reason followed in the same chunk by another
    choice's null one is not read.

    Typed facts, read by whoever registered an end callback:

    - ``failure``: ``None``, or the bounded reason the stream went wrong (``stream_error``
      when the source raised one of ``breaks`` or ``drops`` midway, ``stream_idle`` when it
      stalled: a :class:`StreamStalled`, raised by the idle watchdog below or by the
      source; a layer may set the reason of the attempt that produced a non-2xx stream);
    - ``detail``: a human-readable note on the failure (a break's message; for a drop,
      :data:`STREAM_BROKE`, whichever wire client raised it);
    - ``usage``: ``(input, output)`` tokens of the last usage event seen;
    - ``model``, ``response_id``, ``finish_reasons``: from the parsed events, when they say
      (the first ``data:`` line names model and id; the finish reasons are one per choice,
      in choice order, however many events repeat them; at most
      :data:`MAX_FINISH_REASONS` choices are kept);
    - ``closed_early``: whether :meth:`aclose` ended it before the source had ended.

    The stream reads its source directly, one frame per chunk: ``drops`` are the wire
    client's exception types meaning the connection broke, ``breaks`` those of a reader in
    between (a translator's :class:`StreamInterrupted`). When the source ends, breaks or
    stalls, it is released at once. When it breaks (a stall included),
    ``break_event(detail)`` (if given) is yielded as a last chunk (so the client sees an
    error event, not a clean-looking end) and the stream then ends. A stream made
    recoverable (:meth:`recoverable`) keeps every chunk it yields in a :class:`KeptChunks`
    and, when it fails midway, ends at once and hands over to its ``recover`` callback
    instead of yielding the break event; once the kept chunks pass their byte cap, it is no
    longer recoverable. Callbacks added with :meth:`on_end` run once, in the order added,
    when the stream ends, breaks, or is closed; a callback added after the end runs at once.

    ``idle_timeout_s`` bounds each wait for the source's next chunk (``None``: unbounded; it
    may be changed between reads, as the provider handler does while it holds a stream's
    opening, which the first-token bound covers instead). The bound is a watchdog, not a
    timer per chunk: a read notes when it started waiting, and one loop timer, re-armed only
    when it fires, looks at that note (:func:`~relaygate.strategies.attempt_bound.idle_due`).
    A stall cancels the waiting read as ``asyncio.timeout`` would, and the read fails with
    :class:`StreamStalled`. Time the reader spends elsewhere (a slow client) is not counted
    as the source's silence.
    """

    __slots__ = (
        "_break_event",
        "_breaks",
        "_cancelling",
        "_choices",
        "_drops",
        "_ends",
        "_first",
        "_head",
        "_kept",
        "_loop",
        "_next",
        "_pending",
        "_recover",
        "_since",
        "_skip",
        "_source",
        "_stalled",
        "_stopped",
        "_tail",
        "_task",
        "_timer",
        "closed_early",
        "detail",
        "ended",
        "failure",
        "finish_reasons",
        "idle_timeout_s",
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
        drops: tuple[type[Exception], ...] = (),
        idle_timeout_s: float | None = None,
    ) -> None:
        self._source = source
        self._next = source.__anext__
        self._first = first
        self._drops = drops
        self._breaks: tuple[type[Exception], ...] = (*breaks, *drops, StreamStalled)
        self._break_event = break_event
        self._ends: list[StreamEnd] = []
        self._stopped = False
        self._tail = b""
        self._skip = False
        self._head = True
        self._pending = True
        self._choices: dict[int, str] = {}
        self._kept: KeptChunks | None = None
        self._recover: Recover | None = None
        self.idle_timeout_s = idle_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[Any] | None = None
        self._since: float | None = None
        self._stalled = False
        self._cancelling = 0
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

    def recoverable(self, kept: KeptChunks, recover: Recover) -> None:
        """Keep every chunk yielded from now on in ``kept``, and call ``recover`` (once)
        when the stream fails midway, in place of yielding the break event; past ``kept``'s
        byte cap, neither (the break event is yielded as without recovery)."""
        self._kept = kept
        self._recover = recover

    def __aiter__(self) -> ResponseStream:
        return self

    async def __anext__(self) -> bytes:
        chunk = self._first
        if chunk is None:
            if self._stopped:
                self._end()
                raise StopAsyncIteration
            try:
                if self.idle_timeout_s is None:
                    chunk = await self._next()
                else:
                    self._waiting()
                    try:
                        chunk = await self._next()
                    finally:
                        self._since = None
            except StopAsyncIteration:
                chunk = b""
            except asyncio.CancelledError:
                stall = self._stall()
                if stall is None:
                    raise
                return await self._broken(stall)
            except self._breaks as exc:
                return await self._broken(exc)
            except Exception:
                self._end()
                raise
            if not chunk:
                self._stopped = True
                try:
                    await self._release()
                finally:
                    self._end()
                raise StopAsyncIteration
        else:
            self._first = None
        # The fast path, most chunks: whole lines (nothing to carry over) and nothing to read.
        if self._pending or chunk[-1:] != b"\n":
            self._feed(chunk)
        else:
            # Whole lines: read them when the last usage or finish reason key of the chunk
            # has a value that is not null (the byte after a key exists: the chunk ends in a
            # newline, the keys have none; a space there reads as maybe, for the scan).
            for key in FACT_KEYS:
                at = chunk.rfind(key)
                if at >= 0 and chunk[at + len(key)] != _NULL_START:
                    self._feed(chunk)
                    break
        kept = self._kept
        if kept is not None:
            # KeptChunks.keep, inlined: this runs for every chunk of a recoverable stream.
            room = kept.room = kept.room - len(chunk)
            if room >= 0:
                kept.chunks.append(chunk)
            else:
                kept.overflow()
                self._kept = None
                self._recover = None
        return chunk

    async def open(self, more: Callable[[bytes], bool] | None = None) -> None:
        """Read the stream's opening before it is handed on: the source's first chunk, then
        (with ``more``) further chunks while ``more(opening so far)`` is true and the source
        has not ended. The opening is yielded as one first chunk when the stream is iterated;
        nothing is read from it until then.

        Raises ``StopAsyncIteration`` when the source sent nothing, :class:`StreamStalled`
        when it stayed silent past ``idle_timeout_s``, :class:`StreamInterrupted` when it
        broke (a drop: :data:`STREAM_BROKE`), and what else the source raises, as raised; the
        caller then releases the stream (:meth:`aclose`).
        """
        held = await self._raw()
        if not held:
            raise StopAsyncIteration
        while more is not None and more(held):
            chunk = await self._raw()
            if not chunk:
                break
            held += chunk
        self._first = held

    async def _raw(self) -> bytes:
        """The source's next chunk as it comes (``b""`` at the end), for :meth:`open`."""
        try:
            if self.idle_timeout_s is not None:
                self._waiting()
            chunk: bytes = await self._next()
        except StopAsyncIteration:
            return b""
        except asyncio.CancelledError:
            stall = self._stall()
            if stall is None:
                raise
            raise stall from None
        except self._drops as exc:
            raise StreamInterrupted(STREAM_BROKE) from exc
        finally:
            self._since = None
        return chunk

    def _waiting(self) -> None:
        """A read under the idle bound begins: note when, and arm the watchdog if it rests."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._since = now = loop.time()
        if self._timer is None:
            idle = self.idle_timeout_s
            assert idle is not None
            self._timer = loop.call_at(now + idle, self._watch)

    def _stall(self) -> StreamStalled | None:
        """The stall a cancelled read is, when the watchdog alone cancelled it (the
        cancellation then undone), else ``None`` (a cancellation from elsewhere)."""
        if not self._stalled:
            return None
        self._stalled = False
        task = self._task
        if task is None or task.uncancel() > self._cancelling:
            return None
        return StreamStalled(f"no data from upstream for {self.idle_timeout_s:g}s")

    def _watch(self) -> None:
        """The watchdog's timer: cancel a read that has waited too long, else look again."""
        self._timer = None
        idle = self.idle_timeout_s
        loop = self._loop
        if idle is None or loop is None:
            return
        since = self._since
        due = idle_due(since, idle, loop.time())
        if due is None:
            task = self._task
            if task is not None and not task.done():
                self._stalled = True
                self._cancelling = task.cancelling()
                task.cancel()
            return
        if since is not None:
            # Not looked at again while nobody waits: the next read re-arms it.
            self._timer = loop.call_at(due, self._watch)

    async def _release(self) -> None:
        """Stop the watchdog and release the source (it ended, broke or stalled)."""
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.cancel()
        await self._source.aclose()

    async def _broken(self, exc: Exception) -> bytes:
        """The source broke (or stalled) midway: release it, note why, and end."""
        await self._release()
        self._broke(exc)
        return await self._failed_midway()

    def _broke(self, exc: Exception) -> None:
        """The source broke midway: note why."""
        self._stopped = True
        stalled = isinstance(exc, StreamStalled)
        self.failure = (Reason.STREAM_IDLE if stalled else Reason.STREAM_ERROR).value
        self.detail = STREAM_BROKE if isinstance(exc, self._drops) else str(exc)

    async def _failed_midway(self) -> bytes:
        """The one exit of a stream that failed midway (``failure`` and ``detail`` set): hand
        over to the recover callback, else end after the break event if there is one."""
        recover = self._recover
        if recover is not None:
            self._recover = None
            self._end()
            return await recover(self)
        if self._break_event is None:
            self._end()
            raise StopAsyncIteration from None
        return self._break_event(self.detail or "")

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
            if self._head or worth_parsing(data):
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
            if not (self._head or worth_parsing(line)):
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
            reasons = choice_finish_reasons(payload)
            if reasons:
                self._finished(reasons)

    def _finished(self, reasons: list[tuple[int, str]]) -> None:
        """Note choices' finish reasons (one per choice index, the first kept, bounded)."""
        choices = self._choices
        for index, reason in reasons:
            if index not in choices and len(choices) < MAX_FINISH_REASONS:
                choices[index] = reason
        self.finish_reasons = [choices[i] for i in sorted(choices)]

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
            await self._release()
        finally:
            if not self.ended:
                self.closed_early = True
                self._end()
