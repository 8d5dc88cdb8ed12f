"""The protocol-agnostic request and response that flow through the pipeline.

The edge (ASGI app or httpx transport) turns an HTTP request into a :class:`GatewayRequest`;
layers pass it inwards, each deriving a copy with more decided (config, target, attempt);
the innermost handler answers with a :class:`GatewayResponse`. Nothing here knows ASGI.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from relaygate.config.model import RoutingConfig, Target
from relaygate.security.keys import KeyScope


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
    fallback and retry layers in turn; the timeout layer sets ``attempt_timer`` (whose
    ``expired()`` tells an inner layer that a cancellation is this attempt's timeout, not the
    client going away) and whether it comes from the request's overall deadline.
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
    attempt_timer: asyncio.Timeout | None = None
    deadline_is_request: bool = False

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

    Exactly one of ``body`` (a complete payload) or ``stream`` (an async iterator of raw
    bytes, already started: its first chunk has arrived) is set. ``failure`` is the bounded
    reason of a synthesized or failed answer (timeout, connect_error, ...) and ``None`` when
    the upstream answered by itself; ``target`` is the target that produced it.
    """

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    stream: AsyncIterator[bytes] | None = None
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
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
