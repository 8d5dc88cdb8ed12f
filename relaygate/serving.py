"""How relaygate runs under uvicorn: its options, and a connection protocol that bounds clients.

uvicorn's httptools protocol has no time bound on a request's headers and no size bound on
them (httptools buffers a header of any length). :class:`EdgeProtocol` adds, per
connection, with the app's ``limits`` (handed over in the lifespan state, see
:class:`~relaygate.drain.EdgeState`):

* ``header_timeout_ms``: a request's headers must be complete this long after the
  connection opened (first request) or after the request's first byte (later requests on a
  keep-alive connection); otherwise 408 and close;
* ``max_header_bytes``: once the bytes of a request line and headers pass this, 431 and
  close, without feeding the parser another byte;
* ``max_connections``: a connection beyond this many open ones is answered 503 (OpenAI's
  error shape, ``connection: close``) as soon as its headers are in.

Each request's scope carries the connection's :class:`~relaygate.drain.ClientWatch` (under
``extensions``), which the protocol fires when the connection is lost: the API edge then
cuts the request at once without a task per request waiting for the disconnect.

Answers are OpenAI-shaped JSON errors. (uvicorn's own ``limit_concurrency`` is not used: it
answers ``text/plain`` and counts running tasks as well as connections.) It also starts the
app's shutdown drain when uvicorn begins its graceful shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import os
import signal
import socket
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState
from uvicorn.supervisors.multiprocess import Multiprocess

from relaygate.config.server import LimitsSettings, ServerConfig
from relaygate.drain import CLIENT_WATCH_KEY, EDGE_STATE_KEY, ClientWatch, EdgeState
from relaygate.errors import error_body

UVICORN_OPTIONS: dict[str, Any] = {
    "loop": "uvloop",
    "http": "relaygate.serving:EdgeProtocol",
    "log_level": "warning",
    "access_log": False,
    # relaygate reads neither the client address nor the scheme, so uvicorn's
    # X-Forwarded-* rewriting would be a middleware hop per request with no effect.
    "proxy_headers": False,
    "server_header": False,
}
"""How relaygate runs under uvicorn (``serve`` and ``demo``): its fastest loop, the
httptools parser behind :class:`EdgeProtocol`, relaygate's own request log instead of
uvicorn's access log."""

_SHUTDOWN_MARGIN_S = 2
"""uvicorn cancels what still runs this long after the drain deadline (the drain itself
ends every request first; the margin lets those endings be written)."""


def uvicorn_options(server: ServerConfig) -> dict[str, Any]:
    """:data:`UVICORN_OPTIONS` plus what follows from ``server``'s settings."""
    drain_s = server.shutdown.drain_timeout_ms / 1000
    return {
        **UVICORN_OPTIONS,
        "timeout_graceful_shutdown": math.ceil(drain_s) + _SHUTDOWN_MARGIN_S,
    }


class ReloadingMultiprocess(Multiprocess):
    """uvicorn's worker supervisor, except that SIGHUP reloads the config in every worker
    (forwarded to each; :mod:`relaygate.reload`) instead of restarting the workers, so
    requests in flight, open streams and what workers know of their upstreams survive."""

    def handle_hup(self) -> None:
        """Forward SIGHUP to every live worker."""
        for process in self.processes:
            pid = process.pid
            if pid is not None and process.exitcode is None:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGHUP)


_DEFAULT_LIMITS = LimitsSettings()

_LINGER_S = 1.0
"""After refusing a request mid-head, how long its connection is kept half-closed, reading
and dropping what the client still sends, so that the answer is read rather than lost to
a reset (a close with unread input resets the connection)."""


def _raw_answer(status: int, body: bytes, defaults: list[tuple[bytes, bytes]]) -> bytes:
    head = [STATUS_LINE[status]]
    for name, value in defaults:
        head += [name, b": ", value, b"\r\n"]
    head += [
        b"content-type: application/json\r\n",
        b"content-length: " + str(len(body)).encode() + b"\r\n",
        b"connection: close\r\n\r\n",
        body,
    ]
    return b"".join(head)


_BUSY_BODY = error_body(
    "the gateway is at its connection limit; retry shortly",
    type="server_error",
    code="too_many_connections",
)


async def _busy(scope: Any, receive: Any, send: Any) -> None:
    """The app a connection over ``max_connections`` gets instead of relaygate's."""
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_BUSY_BODY)).encode()),
                (b"retry-after", b"1"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _BUSY_BODY})


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header time and size bounds, a connection cap and
    the drain hook (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        edge = app_state.get(EDGE_STATE_KEY)
        self._edge = edge if isinstance(edge, EdgeState) else None
        limits = self._edge.limits if self._edge is not None else _DEFAULT_LIMITS
        self._header_cap = limits.max_header_bytes
        self._header_timeout_s = limits.header_timeout_ms / 1000
        self._max_connections = limits.max_connections
        # Bytes the current request's head may still take; None while a body is read.
        self._header_room: int | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._refused = False
        # When the current request's head began, until its timer is armed or it is in.
        self._head_since: float | None = None
        self._watch = ClientWatch()
        self._watch_extension: dict[object, object] = {"watch": self._watch}

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Count the connection against the cap and start the first request's header clock."""
        super().connection_made(transport)
        if len(self.connections) > self._max_connections:
            self.app = _busy
        self._header_room = self._header_cap
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the header clock, then as uvicorn, then cut the request being answered."""
        self._disarm_header_timer()
        super().connection_lost(exc)
        self._watch.lost()

    def data_received(self, data: bytes) -> None:
        """Feed the parser, never letting a request's head grow past ``max_header_bytes``."""
        if self._refused:
            return
        while True:
            room = self._header_room
            if room is None or len(data) <= room:
                if room is not None:
                    self._header_room = room - len(data)
                self._feed(data)
                return
            # Feed what the head may still take; the rest only if that completed it.
            head, data = data[:room], data[room:]
            self._header_room = 0
            if head:
                self._feed(head)
            if self.transport.is_closing() or self._refused:
                return
            if self._header_room == 0:
                self._refuse(
                    431,
                    f"request headers exceed {self._header_cap} bytes",
                    "request_header_fields_too_large",
                )
                return

    def on_message_begin(self) -> None:
        """A new request: start its header clock unless the connection's is running (the
        timer itself only if the head is still incomplete after this read)."""
        super().on_message_begin()
        self.scope["extensions"] = {CLIENT_WATCH_KEY: self._watch_extension}
        self._watch.body_complete = False
        if self._header_timer is None:
            self._head_since = self.loop.time()

    def on_headers_complete(self) -> None:
        """The head is in: stop the clock and the byte count, then as uvicorn."""
        self._header_room = None
        self._head_since = None
        self._disarm_header_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """The request is in: bytes that follow are the next request's head."""
        super().on_message_complete()
        self._watch.body_complete = True
        self._header_room = self._header_cap

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown has begun: start the app's drain, then as uvicorn."""
        if self._edge is not None:
            self._edge.drain.begin()
        super().shutdown()

    def _feed(self, data: bytes) -> None:
        """Parse ``data``; a head begun in it and still incomplete gets its timer now (most
        heads arrive whole: they never need one)."""
        super().data_received(data)
        since = self._head_since
        if since is not None and self._header_timer is None and not self._refused:
            self._head_since = None
            self._header_timer = self.loop.call_at(
                since + self._header_timeout_s, self._headers_late
            )

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self._header_timeout_s, self._headers_late)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self._refused:
            return
        ms = round(self._header_timeout_s * 1000)
        self._refuse(408, f"request headers not received within {ms} ms", "header_timeout")

    def _refuse(self, status: int, message: str, code: str) -> None:
        """Answer ``status`` (when no response is being written) and close the connection:
        half-closed at once, fully after :data:`_LINGER_S` (input meanwhile is dropped)."""
        self._disarm_header_timer()
        self._refused = True
        self._header_room = None
        transport = self.transport
        if self.cycle is not None and not self.cycle.response_complete:
            transport.close()
            return
        body = error_body(message, type="invalid_request_error", code=code)
        transport.write(_raw_answer(status, body, self.server_state.default_headers))
        try:
            transport.write_eof()
        except (NotImplementedError, OSError, RuntimeError):
            transport.close()
            return
        self.loop.call_later(_LINGER_S, transport.close)


_BACKLOG = 2048
"""Pending connections a bound listener queues (uvicorn's default backlog)."""


class PortInUse(OSError):
    """The address to listen on is taken (or cannot be bound); ``str()`` is one line for
    the person running the command."""


def bind_listener(
    host: str, port: int, *, hint: str = "pick another with --port N"
) -> socket.socket:
    """A TCP socket bound to ``host:port`` (``SO_REUSEADDR``, as uvicorn binds), handed to
    uvicorn so that nothing is announced before the address is really held.

    Raises :class:`PortInUse` naming the port, followed by ``hint`` (how to change it) when
    the port is in use.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(f"port {port} on {host} is already in use; {hint}") from None
        raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    # Listening at once: a client that connects before uvicorn accepts waits in the backlog.
    sock.listen(_BACKLOG)
    sock.set_inheritable(True)
    return sock


def run_on_socket(app: Any, sock: socket.socket, *, workers: int = 1, **options: Any) -> bool:
    """Run uvicorn for ``app`` (an import string with ``factory=True`` for several workers)
    on the already bound ``sock`` until it stops; ``options`` are :class:`uvicorn.Config`'s.

    Returns whether the server started (``False``: the app failed to load or start).
    """
    from uvicorn.server import Server

    host, port = sock.getsockname()[:2]
    config = Config(app, host=host, port=port, workers=workers, **options)
    if workers > 1:
        with contextlib.suppress(KeyboardInterrupt):
            ReloadingMultiprocess(config, sockets=[sock]).run()
        return True
    server = Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])
    return server.started
