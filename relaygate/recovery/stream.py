"""Mid-stream recovery: a streamed answer that breaks after reaching the client goes on.

:func:`make_recoverable` turns a streamed 2xx answer that carries a ``resume`` (the rest of
its plan, see :attr:`~relaygate.exchange.GatewayResponse.resume`) into one whose stream is a
:class:`RecoveringStream`. While the first attempt's stream is healthy, the recovering
stream hands its chunks straight through (the attempt stream keeps a reference to each chunk
it yields; nothing is parsed). When it fails midway, the attempt ends (and is recorded as
it failed), and :class:`_Recovery` takes over:

1. it reads what the client received from the kept bytes;
2. it runs ``resume`` with the client's original request (remaining retries, then remaining
   fallback targets), within the request's deadline and attempt budget;
3. it forwards nothing from the new stream until its text has reproduced the delivered text
   (:class:`~relaygate.recovery.prefix.PrefixMatcher`), then forwards only what follows,
   rewritten as chunk objects with the original stream's ``id``/``model``/``created``, with
   the final chunk, usage and ``data: [DONE]``;
4. if the new stream breaks too, the rest of *its* plan is run the same way; if it diverges
   from the delivered text, or no target answers, the client gets the in-band error event
   as without recovery, saying why.

The break, the recovery and a divergence are span events on the request span, notes on the
recovering attempt in the route story (``200(recovered@412 chars)``) and debug log lines.

The delivered chunks are kept up to ``max_bytes`` (``limits.max_recovery_bytes``); a stream
that delivers more releases them and is no longer recovered (counted in
``relaygate_stream_recovery_given_up_total``, a ``recovery_given_up`` debug line): a later
break ends it with the in-band error event, as without recovery.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Coroutine
from typing import Any

import orjson
from opentelemetry import context as otel_context
from opentelemetry import trace

from relaygate.errors import synthesized
from relaygate.exchange import (
    GatewayResponse,
    KeptChunks,
    RequestContext,
    ResponseStream,
    Resume,
)
from relaygate.exporters import semconv as sc
from relaygate.providers.handler import stream_error_event
from relaygate.recovery.prefill import prefill_text
from relaygate.recovery.prefix import (
    Delivered,
    Diverged,
    PrefixMatcher,
    continued,
    data_lines,
    delivered_of,
    rewrite,
)
from relaygate.sse import MAX_LINE_BYTES
from relaygate.strategies.reasons import Reason
from relaygate.telemetry import Telemetry


def broken_answer(reason: Reason, detail: str) -> GatewayResponse:
    """The answer standing for a stream that broke midway, for retry and fallback to judge:
    408 for a timeout (a stalled stream), 502 otherwise, with ``reason`` as its failure."""
    status = 408 if reason is Reason.TIMEOUT else 502
    return synthesized(
        status,
        f"upstream stream interrupted: {detail}",
        type="upstream_error",
        code="upstream_stream_interrupted",
        failure=reason.value,
    )


def failure_reason(stream: ResponseStream) -> Reason:
    """The :class:`Reason` a failed stream names (``stream_error`` when it names none)."""
    try:
        return Reason(stream.failure or Reason.STREAM_ERROR.value)
    except ValueError:
        return Reason.STREAM_ERROR


def make_recoverable(
    response: GatewayResponse, ctx: RequestContext, tel: Telemetry, max_bytes: int
) -> None:
    """Give ``response`` a :class:`RecoveringStream` keeping up to ``max_bytes`` delivered
    when it is a streamed 2xx answer with a ``resume``; leave it as it is otherwise."""
    resume = response.resume
    stream = response.stream
    if resume is None or stream is None or not response.ok:
        return
    response.resume = None
    response.stream = RecoveringStream(stream, resume, ctx, tel, max_bytes, response)


class RecoveringStream(ResponseStream):
    """The client's stream of a recoverable answer (see the module docstring).

    Iterating it iterates the current source: the first attempt's stream, then, after a
    break, the recovery. Its facts (``failure``, ``detail``, ``usage``, ``finish_reasons``,
    ``closed_early``) are those of the attempt that ended it; ``model`` and ``response_id``
    stay the first attempt's, which every recovered chunk carries too. Past ``max_bytes``
    delivered, recovery is given up (see the module docstring).
    """

    __slots__ = ("_current", "_delivered")

    def __init__(
        self,
        first: ResponseStream,
        resume: Resume,
        ctx: RequestContext,
        tel: Telemetry,
        max_bytes: int,
        answer: GatewayResponse | None = None,
    ) -> None:
        super().__init__(first)

        def given_up() -> None:
            tel.guard(tel.metrics.recovery_given_up.inc)
            tel.guard(
                tel.logger.debug,
                "recovery_given_up",
                request_id=ctx.request_id,
                max_recovery_bytes=max_bytes,
            )

        kept = KeptChunks(max_bytes, given_up)
        self._delivered = kept
        recovery = _Recovery(self, resume, ctx, tel, kept, answer)
        self._current: Any = first
        first.recoverable(kept, recovery.take_over)
        first.on_end(self._attempt_ended)

    def __anext__(self) -> Coroutine[Any, Any, bytes]:
        # No coroutine of its own: the current source's is handed out as it is.
        current: Coroutine[Any, Any, bytes] = self._current.__anext__()
        return current

    def _attempt_ended(self, stream: ResponseStream) -> None:
        midway = stream.failure is not None and not stream.closed_early
        if midway and not self._delivered.overflowed:
            return  # it failed midway: the recovery takes over and ends this stream
        self.finish_from(stream)

    def switch(self, source: Any) -> None:
        """Iterate ``source`` from now on (the recovery, after the first attempt broke)."""
        self._current = source

    def finish_from(self, stream: ResponseStream | None, failure: str | None = None) -> None:
        """End with the facts of ``stream`` (the attempt that ended the answer), or with
        ``failure`` when the recovery itself ended it."""
        if self.ended:
            return
        if stream is not None:
            self.failure = stream.failure
            self.detail = stream.detail
            self.usage = stream.usage
            self.finish_reasons = stream.finish_reasons
            self.closed_early = self.closed_early or stream.closed_early
            if self.model is None:
                self.model = stream.model
                self.response_id = stream.response_id
        if failure is not None:
            self.failure = failure
        self._end()

    async def aclose(self) -> None:
        """Release the current source; the stream ends closed early if it had not ended."""
        current = self._current
        try:
            await current.aclose()
        finally:
            if not self.ended:
                if isinstance(current, ResponseStream) and current.failure is not None:
                    self.finish_from(current)  # it failed without handing over
                else:
                    self.closed_early = True
                    self._end()


class _Recovery:
    """The source of a :class:`RecoveringStream` once its first attempt broke."""

    def __init__(
        self,
        owner: RecoveringStream,
        resume: Resume,
        ctx: RequestContext,
        tel: Telemetry,
        kept: KeptChunks,
        answer: GatewayResponse | None,
    ) -> None:
        self._owner = owner
        self._answer = answer
        self._target: Any = None
        self._resume: Resume | None = resume
        self._ctx = ctx
        self._tel = tel
        self._kept = kept
        self._context = otel_context.get_current()
        self._out: deque[bytes] = deque()
        self._held: list[bytes] = []
        self._source: ResponseStream | None = None
        self._matcher: PrefixMatcher | None = None
        self._delivered: Delivered | None = None
        self._record: Any = None
        self._tail = b""
        self._saw_done = False
        self._continued = False
        self._done = False
        self._reason = Reason.STREAM_ERROR
        self._detail = ""
        self._ended_by: ResponseStream | None = None

    async def take_over(self, broken: ResponseStream) -> bytes:
        """The first attempt failed midway: become the client's source."""
        self._owner.switch(self)
        self._broke(broken)
        return await self.__anext__()

    def _broke(self, stream: ResponseStream) -> None:
        self._reason = failure_reason(stream)
        self._detail = stream.detail or self._reason.value
        self._source = None
        tel = self._tel
        tel.guard(
            tel.logger.debug,
            "stream_broke",
            request_id=self._ctx.request_id,
            reason=self._reason.value,
            detail=self._detail,
        )

    def __aiter__(self) -> _Recovery:
        return self

    async def __anext__(self) -> bytes:
        while not self._out:
            if self._done:
                ended_by = self._ended_by
                self._owner.finish_from(ended_by, None if ended_by else self._reason.value)
                raise StopAsyncIteration
            if self._source is None:
                await self._start()
            else:
                await self._pull(self._source)
        chunk = self._out.popleft()
        self._kept.keep(chunk)
        return chunk

    async def _start(self) -> None:
        """Run the rest of the plan and take its streamed answer as the new source."""
        resume = self._resume
        if self._kept.overflowed:
            self._fail("the delivered stream passed limits.max_recovery_bytes")
            return
        delivered = delivered_of(self._kept.chunks)
        if delivered is None:
            self._fail("the delivered stream ends inside an event")
            return
        if resume is None:
            self._fail("no target is left to continue")
            return
        token = otel_context.attach(self._context)
        try:
            response = await resume(self._reason, self._detail, prefill_text(delivered))
        finally:
            otel_context.detach(token)
        stream = response.stream
        if not response.ok or stream is None:
            await response.aclose()
            self._fail(f"no target continued it (last answer {response.status})")
            return
        self._resume = response.resume
        self._target = response.target
        self._source = stream
        self._delivered = delivered
        self._continued = response.continues
        # A continuation says only what follows: nothing to repeat, the same stream still.
        self._matcher = PrefixMatcher(continued(delivered) if response.continues else delivered)
        self._held = []
        self._tail = b""
        self._saw_done = False
        self._record = self._ctx.attempts[-1] if self._ctx.attempts else None
        if self._matcher.synced:
            self._synced()

    async def _pull(self, source: ResponseStream) -> None:
        """Read one chunk of the recovering stream and queue what it adds."""
        try:
            chunk = await source.__anext__()
        except StopAsyncIteration:
            chunk = None
        if source.failure is not None:
            # It broke too (its last chunk, if any, is its own break event): go on with the
            # rest of its plan, from what the client has received by now.
            await source.aclose()
            self._broke(source)
            return
        if chunk is None:
            self._end(source)
            return
        data = self._tail + chunk if self._tail else chunk
        cut = data.rfind(b"\n") + 1
        self._tail = data[cut:]
        if len(self._tail) > MAX_LINE_BYTES:
            await self._diverged(source, "the new stream sent a line too long to compare")
            return
        for line in data_lines(data[:cut]):
            if self._saw_done:
                break
            if line == b"[DONE]":
                if not self._saw_done:
                    self._saw_done = True
                    if await self._check_end(source):
                        self._out.append(b"data: [DONE]\n\n")
                return
            try:
                payload = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(payload, dict):
                continue
            if "error" in payload:
                self._queue(b"data: " + line + b"\n\n")
                continue
            matcher = self._matcher
            assert matcher is not None and self._delivered is not None
            was_synced = matcher.synced
            try:
                trimmed = matcher.feed(payload)
            except Diverged as exc:
                await self._diverged(source, str(exc))
                return
            if trimmed is not None:
                event = rewrite(trimmed, self._delivered.identity)
                (self._out if was_synced else self._held).append(event)
            if matcher.synced and not was_synced:
                self._synced()

    def _queue(self, event: bytes) -> None:
        matcher = self._matcher
        if matcher is not None and not matcher.synced:
            self._held.append(event)
        else:
            self._out.append(event)

    def _synced(self) -> None:
        """The new stream has repeated the delivered text: forward what it held back."""
        delivered = self._delivered
        assert delivered is not None
        chars = delivered.chars
        self._note(f"recovered@{chars} chars" + (", prefill" if self._continued else ""))
        if self._answer is not None and self._target is not None:
            self._answer.target = self._target  # the target serving the answer from now on
        self._event(sc.EVENT_STREAM_RECOVERED, {sc.RECOVERED_CHARS: chars})
        kept = self._kept.chunks
        if kept and not b"".join(kept[-2:]).endswith(b"\n\n"):
            self._out.append(b"\n")
        self._out.extend(self._held)
        self._held = []

    async def _check_end(self, source: ResponseStream) -> bool:
        """The new stream says it is complete: whether it repeated the delivered text."""
        matcher = self._matcher
        assert matcher is not None
        try:
            matcher.finished()
        except Diverged as exc:
            await self._diverged(source, str(exc))
            return False
        return True

    def _end(self, source: ResponseStream) -> None:
        """The new stream ended by itself: the client's stream ends with it."""
        if not self._saw_done:
            self._saw_done = True
            matcher = self._matcher
            assert matcher is not None
            try:
                matcher.finished()
            except Diverged as exc:
                self._note_diverged()
                self._fail(f"recovery diverged: {exc}")
                return
        self._done = True
        self._ended_by = source

    async def _diverged(self, source: ResponseStream, why: str) -> None:
        await source.aclose()
        self._note_diverged()
        self._fail(f"recovery diverged: {why}")

    def _note_diverged(self) -> None:
        delivered = self._delivered
        chars = delivered.chars if delivered is not None else 0
        self._note(f"diverged@{chars} chars")
        self._event(sc.EVENT_RECOVERY_DIVERGED, {sc.RECOVERED_CHARS: chars})

    def _fail(self, why: str) -> None:
        """End the client's stream with the in-band error event, saying why."""
        self._held = []
        self._out.append(stream_error_event(f"upstream stream interrupted: {self._detail}; {why}"))
        self._owner.detail = why
        self._done = True
        self._ended_by = None

    def _note(self, note: str) -> None:
        record = self._record
        if record is not None:
            record.note = note

    def _event(self, name: str, attrs: dict[str, Any]) -> None:
        span = trace.get_current_span(self._context)
        if span.is_recording():
            self._tel.guard(span.add_event, name, attrs)
        self._tel.guard(self._tel.logger.debug, name, request_id=self._ctx.request_id, **attrs)

    async def aclose(self) -> None:
        """Release the recovering stream, if one is being read."""
        source = self._source
        self._done = True
        if source is not None:
            await source.aclose()
