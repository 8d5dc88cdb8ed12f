"""The API edge's in-flight requests, and how they are cut short.

Every API request registers its task and :class:`~relaygate.exchange.ClientLink` with the
app's :class:`Drain` while it is being answered. Two things cut a request: its client going
away (:data:`~relaygate.exchange.CLIENT_DISCONNECTED`), and the end of the shutdown drain
(:data:`~relaygate.exchange.GATEWAY_SHUTTING_DOWN`), which :meth:`Drain.begin` schedules
when the server starts shutting down. A cut names its reason in the link, then cancels the
task; the edge turns that cancellation into the right ending for the client.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from relaygate.config.server import LimitsSettings
from relaygate.exchange import CLIENT_DISCONNECTED, GATEWAY_SHUTTING_DOWN, ClientLink

EDGE_STATE_KEY = "relaygate.edge"
"""Key of the app's :class:`EdgeState` in the ASGI lifespan state (read by the server's
connection protocol, :mod:`relaygate.serving`)."""

CLIENT_WATCH_KEY = "relaygate.client_watch"
"""Key of the extension in a request scope's ``extensions`` whose ``"watch"`` is the
connection's :class:`ClientWatch`, set by relaygate's own connection protocol
(:mod:`relaygate.serving`)."""


class Drain:
    """The in-flight API requests of one app, and the shutdown drain's deadline."""

    __slots__ = ("_active", "_timer", "timeout_s")

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        """How long in-flight requests may go on after :meth:`begin`."""
        self._active: dict[asyncio.Task[object], ClientLink] = {}
        self._timer: asyncio.TimerHandle | None = None

    @property
    def draining(self) -> bool:
        """Whether :meth:`begin` has been called."""
        return self._timer is not None

    def __len__(self) -> int:
        return len(self._active)

    def enter(self, task: asyncio.Task[object], link: ClientLink) -> None:
        """Register a request being answered by ``task``."""
        self._active[task] = link

    def leave(self, task: asyncio.Task[object]) -> None:
        """Unregister ``task``'s request (its answer is complete); idempotent."""
        self._active.pop(task, None)

    def cut(self, task: asyncio.Task[object], reason: str) -> bool:
        """Cut ``task``'s request for ``reason`` if it is still in flight and not yet cut."""
        link = self._active.get(task)
        if link is None or link.cut is not None:
            return False
        link.cut = reason
        task.cancel()
        return True

    def cut_all(self, reason: str = GATEWAY_SHUTTING_DOWN) -> int:
        """Cut every request still in flight; returns how many were cut."""
        return sum(self.cut(task, reason) for task in list(self._active))

    def begin(self) -> None:
        """Start the drain on the running loop: :meth:`cut_all` after ``timeout_s``.

        Idempotent: the deadline is set by the first call.
        """
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.timeout_s, self.cut_all)


@dataclass(frozen=True, slots=True)
class EdgeState:
    """What the app hands its server through the lifespan state: the limits to enforce on
    connections and the drain to start when the server shuts down."""

    limits: LimitsSettings
    drain: Drain


class ClientWatch:
    """One connection's watch on the request it is answering: when the connection is lost,
    that request is cut as :data:`~relaygate.exchange.CLIENT_DISCONNECTED`.

    relaygate's connection protocol owns one per connection and hands it to the app in the
    request scope (:data:`CLIENT_WATCH_KEY`); the app holds the request's task while
    answering (:meth:`hold`) and releases it after (:meth:`release`), so no task per request
    waits for a disconnect.
    An HTTP/1.1 connection answers one request at a time, so one slot suffices.
    """

    __slots__ = ("_drain", "_task", "body_complete")

    def __init__(self) -> None:
        self._drain: Drain | None = None
        self._task: asyncio.Task[object] | None = None
        self.body_complete = False
        """Whether the last request the connection parsed has all its body in (requests are
        parsed in order, so then every earlier one has too): reading it cannot stall, and
        the app reads it without an idle timer."""

    def hold(self, drain: Drain, task: asyncio.Task[object]) -> None:
        """Watch ``task`` (registered in ``drain``) until :meth:`release`."""
        self._drain = drain
        self._task = task

    def release(self, task: asyncio.Task[object]) -> None:
        """Stop watching ``task`` (a no-op when another task is held)."""
        if self._task is task:
            self._drain = None
            self._task = None

    def lost(self) -> bool:
        """The connection is gone: cut the held request if it is still in flight."""
        drain, task = self._drain, self._task
        self._drain = self._task = None
        if drain is None or task is None:
            return False
        return drain.cut(task, CLIENT_DISCONNECTED)
