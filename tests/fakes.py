"""Scripted handlers and fake upstreams shared by the tests.

* :class:`ScriptedHandler` is the inner handler of a layer under test: it answers from a
  script of outcomes, one per call, and records every request it received (tower-test's
  mock pair).
* :class:`FakeUpstream` is an :class:`~relaygate.providers.client.UpstreamClient` answering
  from a script and recording every :class:`~relaygate.providers.base.UpstreamRequest`.
* :class:`RecordingTransport` is a function for ``httpx.MockTransport`` that records every
  outgoing ``httpx.Request``; :class:`ChunkStream` is a response body that arrives in chunks
  and may then break or stall.
* :class:`RecordingSleep` and :class:`ScriptedRand` replace ``asyncio.sleep`` and
  ``random.random`` so waits are recorded, never slept, and draws are chosen by the test.

Nothing here opens a socket.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import httpx
import orjson

from relaygate.config.model import Node, RetrySettings, RoutingConfig, Secret, Strategy, Target
from relaygate.exchange import GatewayRequest, GatewayResponse, Operation, RequestContext
from relaygate.providers.base import UpstreamRequest
from relaygate.providers.client import HttpxUpstream, UpstreamFailure, UpstreamResponse

Reply = Callable[[GatewayRequest], Awaitable[GatewayResponse]]
"""A scripted outcome computed from the request (e.g. one that waits)."""

Outcome = GatewayResponse | BaseException | Reply
"""One scripted answer: a response, an exception to raise, or a coroutine function to await."""


class ScriptedHandler:
    """An inner handler answering each call with the next scripted outcome.

    ``requests`` holds every request received, in order. A call beyond the end of the
    script fails the test with :class:`AssertionError`.
    """

    def __init__(self, *outcomes: Outcome) -> None:
        self._script: deque[Outcome] = deque(outcomes)
        self.requests: list[GatewayRequest] = []

    async def __call__(self, request: GatewayRequest) -> GatewayResponse:
        """Record ``request`` and play the next outcome."""
        self.requests.append(request)
        if not self._script:
            raise AssertionError(f"unscripted call #{len(self.requests)}")
        outcome = self._script.popleft()
        if isinstance(outcome, BaseException):
            raise outcome
        if isinstance(outcome, GatewayResponse):
            return outcome
        return await outcome(request)

    @property
    def remaining(self) -> int:
        """How many scripted outcomes were not played."""
        return len(self._script)

    @property
    def paths(self) -> list[str]:
        """The target path of each received request (``"-"`` when none was bound)."""
        return [r.target.path if r.target is not None else "-" for r in self.requests]


class StreamBody:
    """An async byte iterator standing in for a started stream; notes whether it was closed."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = list(chunks)
        self.closed = False

    def __aiter__(self) -> StreamBody:
        return self

    async def __anext__(self) -> bytes:
        if self.closed or not self._chunks:
            raise StopAsyncIteration
        return self._chunks.pop(0)

    async def aclose(self) -> None:
        """Mark the stream released."""
        self.closed = True


def chat_payload(content: str = "hi", model: str = "gpt-4o-mini") -> dict[str, Any]:
    """A minimal OpenAI chat completion object."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


def answer(
    status: int = 200,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    failure: str | None = None,
) -> GatewayResponse:
    """A complete response with ``status``; a chat completion body when none is given."""
    if body is None:
        if 200 <= status < 300:
            body = orjson.dumps(chat_payload())
        else:
            body = orjson.dumps({"error": {"message": f"status {status}", "type": "x"}})
    return GatewayResponse(
        status=status,
        headers={"content-type": "application/json", **(headers or {})},
        body=body,
        failure=failure,
    )


def target(
    path: str = "config",
    provider: str = "openai",
    *,
    name: str | None = None,
    api_key: str | None = None,
    attempts: int = 0,
    on_status_codes: Iterable[int] | None = None,
    use_retry_after_header: bool = False,
    request_timeout_ms: int | None = None,
    **kwargs: Any,
) -> Target:
    """A compiled target with the given settings."""
    retry = RetrySettings(attempts=attempts, use_retry_after_header=use_retry_after_header)
    if on_status_codes is not None:
        retry = RetrySettings(
            attempts=attempts,
            on_status_codes=frozenset(on_status_codes),
            use_retry_after_header=use_retry_after_header,
        )
    return Target(
        path=path,
        provider=provider,
        name=name,
        api_key=Secret(api_key) if api_key else None,
        retry=retry,
        request_timeout_ms=request_timeout_ms,
        **kwargs,
    )


def strategy(path: str, mode: Any, *children: Node, **kwargs: Any) -> Strategy:
    """A compiled strategy node over ``children``."""
    return Strategy(path=path, mode=mode, children=children, **kwargs)


def routing(root: Node, config_id: str = "test") -> RoutingConfig:
    """A compiled config with ``root`` and id ``config_id``."""
    return RoutingConfig(id=config_id, root=root)


def gateway_request(
    body: Mapping[str, Any] | None = None,
    *,
    raw_body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    operation: Operation = Operation.CHAT,
    config: RoutingConfig | None = None,
    target: Target | None = None,
    metadata: Mapping[str, Any] | None = None,
    deadline: float | None = None,
    stream: bool = False,
) -> GatewayRequest:
    """A request as the pipeline sees it after the edge parsed it.

    ``raw_body`` defaults to the JSON of ``body``; ``config`` defaults to one whose root is
    ``target`` when a target is given.
    """
    parsed = dict(body) if body is not None else {"model": "gpt-4o-mini", "messages": []}
    if config is None and target is not None:
        config = routing(target)
    ctx = RequestContext(
        request_id="req-1",
        trace_id="trace-1",
        metadata=dict(metadata or {}),
        deadline=deadline,
        config=config,
    )
    return GatewayRequest(
        operation=operation,
        body=parsed,
        raw_body=raw_body if raw_body is not None else orjson.dumps(parsed),
        headers=dict(headers or {}),
        ctx=ctx,
        stream=stream,
        config=config,
        target=target,
    )


class RecordingSleep:
    """A ``sleep`` that records the requested waits and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        """Record ``seconds``; yield to the loop once."""
        self.waits.append(seconds)
        await asyncio.sleep(0)


class ScriptedRand:
    """A ``random.random`` replacement returning the given values in a cycle."""

    def __init__(self, *values: float) -> None:
        self._values = itertools.cycle(values or (0.5,))
        self.calls = 0

    def __call__(self) -> float:
        """The next scripted value."""
        self.calls += 1
        return next(self._values)


UpstreamOutcome = UpstreamResponse | BaseException
"""One scripted upstream answer, or the exception :meth:`FakeUpstream.send` raises."""


class FakeUpstream:
    """An :class:`~relaygate.providers.client.UpstreamClient` answering from a script.

    ``sent`` holds every :class:`UpstreamRequest` in order. An exception in the script is
    raised from :meth:`send` (use :class:`UpstreamFailure` for network errors).
    """

    def __init__(self, *outcomes: UpstreamOutcome) -> None:
        self._script: deque[UpstreamOutcome] = deque(outcomes)
        self.sent: list[UpstreamRequest] = []
        self.closed = False

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """Record ``request`` and play the next outcome."""
        self.sent.append(request)
        if not self._script:
            raise AssertionError(f"unscripted upstream call #{len(self.sent)}")
        outcome = self._script.popleft()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def aclose(self) -> None:
        """Mark the client closed."""
        self.closed = True


def upstream_json(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> UpstreamResponse:
    """A complete upstream answer with a JSON body."""
    return UpstreamResponse(
        status=status,
        headers={"content-type": "application/json", **(headers or {})},
        body=orjson.dumps(payload),
    )


def connect_failure() -> UpstreamFailure:
    """The failure the upstream client raises when a connection is refused."""
    return UpstreamFailure("ConnectError calling upstream")


def sse_event(payload: Any) -> bytes:
    """One server-sent event carrying ``payload`` as JSON (or ``[DONE]`` for that string)."""
    data = payload.encode() if isinstance(payload, str) else orjson.dumps(payload)
    return b"data: " + data + b"\n\n"


def chunk_payload(content: str) -> dict[str, Any]:
    """A chat completion chunk carrying ``content``."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }


class ChunkStream(httpx.AsyncByteStream):
    """A response body that yields ``chunks``, then ends, raises ``error`` or stalls.

    With ``stall`` set the body waits forever after its chunks (until closed), which is how
    an upstream that stops sending looks. ``closed`` tells whether the body was released.
    """

    def __init__(
        self,
        chunks: Iterable[bytes],
        *,
        error: Exception | None = None,
        stall: bool = False,
    ) -> None:
        self._chunks = list(chunks)
        self._error = error
        self._stall = stall
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk
        if self._error is not None:
            raise self._error
        if self._stall:
            await asyncio.Event().wait()

    async def aclose(self) -> None:
        """Mark the body released."""
        self.closed = True


def sse_response(stream: ChunkStream, status: int = 200) -> httpx.Response:
    """A streamed ``text/event-stream`` answer whose body is ``stream``."""
    return httpx.Response(status, headers={"content-type": "text/event-stream"}, stream=stream)


TransportReply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]
"""One scripted answer of a :class:`RecordingTransport`."""


class RecordingTransport:
    """The handler of an ``httpx.MockTransport``: records requests, answers from a script.

    Each outcome is an ``httpx.Response``, an exception to raise (``httpx.ConnectError``
    for a refused connection), or a function of the request. With the script exhausted the
    last outcome repeats.
    """

    def __init__(self, *outcomes: TransportReply) -> None:
        if not outcomes:
            outcomes = (httpx.Response(200, json=chat_payload()),)
        self._script: deque[TransportReply] = deque(outcomes)
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        """Record ``request`` and play the next outcome."""
        self.requests.append(request)
        self.bodies.append(request.read())
        outcome = self._script.popleft() if len(self._script) > 1 else self._script[0]
        if isinstance(outcome, Exception):
            raise outcome
        if isinstance(outcome, httpx.Response):
            return outcome
        return outcome(request)

    def client(self) -> HttpxUpstream:
        """An :class:`HttpxUpstream` whose every request comes here."""
        return HttpxUpstream(httpx.AsyncClient(transport=httpx.MockTransport(self)))
