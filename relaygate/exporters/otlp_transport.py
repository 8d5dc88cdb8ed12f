"""The OTLP/HTTP span exporter's HTTP client: one kept plain-HTTP connection.

:class:`KeptHTTPTransport` is an ``opentelemetry-exporter-http-transport`` transport (the
interface the SDK's OTLP/HTTP exporter posts through, with its own retries, back-off,
``Retry-After``, compression and headers on top). An ``http://`` endpoint is posted to over
one kept TCP connection: the request head and body leave in one ``sendall``, and the answer
is parsed by llhttp through ``httptools`` (the parser uvicorn serves relaygate with: status,
headers, a body framed by ``Content-Length``, ``chunked`` or the connection's close;
informational ``1xx`` answers skipped). That is a fraction of the CPU of ``urllib3``'s pool
and of ``http.client``'s ``email``-based header parsing, and the export thread holds the
gateway's GIL while it posts (``python -m benchmarks.export_bench``). ``https://``
endpoints go through the ``tls`` transport given (urllib3, with the configured
certificates) unchanged.

Semantics: the connection is opened on first use and kept while the server keeps it
(``Connection: close``, an HTTP/1.0 answer or a body ended by close end it); ``timeout``
bounds the whole exchange (connecting, sending and reading). Failing to connect, or a kept
connection found closed before any answer byte, is a *connection error* (the exporter retries
those once at once, on a fresh connection); any other failure closes the connection and is
reported as the result's error. Header names or values holding CR or LF are refused (a
``ValueError``), never sent. Requests are serialized by a lock (the span processor exports
from one thread; a flush may come from another).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import httptools
from opentelemetry.exporter.http.transport._base import BaseHTTPResult, BaseHTTPTransport

__all__ = ["KeptHTTPTransport", "RawHTTPResult"]

MAX_HEAD_BYTES: Final = 64 * 1024
"""Longest response head (status line and headers) read before the answer is refused."""
MAX_BODY_BYTES: Final = 1024 * 1024
"""Longest answer body read before the answer is refused (a collector answers an export
with a few bytes: an empty or partial-success message, or an error status)."""

_RECV: Final = 65536


class ClosedBeforeAnswer(ConnectionError):
    """The server closed the connection before any byte of an answer (a stale kept
    connection, typically): a connection error, retried on a fresh connection."""


class ConnectFailed(ConnectionError):
    """The connection to the endpoint could not be opened."""


class BadAnswer(ValueError):
    """The server's answer is not HTTP/1.x as this reader understands it."""


@dataclass(frozen=True, slots=True)
class RawHTTPResult(BaseHTTPResult):
    """An answer read by :class:`KeptHTTPTransport`: status, reason, headers (names in lower
    case, repeated ones joined by ``", "``) and body, or the error instead."""

    answer_headers: Mapping[str, str] = field(default_factory=dict, compare=False)
    body: bytes = field(default=b"", compare=False)

    def content(self) -> bytes:
        """The answer's body (``b""`` for none)."""
        return self.body

    def headers(self) -> Mapping[str, str]:
        """The answer's headers, looked up by lower-case name."""
        return _LowerKeys(self.answer_headers)


class _LowerKeys(dict[str, str]):
    """Headers looked up case-insensitively (stored under lower-case names)."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)


@dataclass(slots=True)
class _Target:
    """Where one endpoint URL points: the address, the request target and the Host header."""

    host: str
    port: int
    path: bytes
    host_header: str


def _target(url: str) -> _Target:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host:
        raise ValueError(f"no host in the endpoint URL {url!r}")
    port = parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    shown = f"[{host}]" if ":" in host else host
    return _Target(host, port, path.encode("ascii"), shown if port == 80 else f"{shown}:{port}")


def _header_block(headers: Mapping[str, str]) -> bytes:
    """``headers`` as request-head lines (latin-1, as ``http.client`` sends them)."""
    lines = []
    for name, value in headers.items():
        text = f"{name}: {value}"
        if "\r" in text or "\n" in text:
            raise ValueError(f"header {name!r} holds a line break")
        lines.append(text)
    return "".join(f"{line}\r\n" for line in lines).encode("latin-1")


class _Connection:
    """One open socket, the bytes read past the current answer, and the exchange's deadline."""

    __slots__ = ("deadline", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline: float | None = None

    def _arm(self) -> None:
        """Bound the next socket operation by what is left of the exchange's deadline."""
        if self.deadline is None:
            self.sock.settimeout(None)
            return
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the OTLP export timed out")
        self.sock.settimeout(remaining)

    def send(self, data: bytes) -> None:
        self._arm()
        self.sock.sendall(data)

    def recv(self) -> bytes:
        """The next bytes the server sent (``b""`` at the end of the stream)."""
        self._arm()
        return self.sock.recv(_RECV)


class _Answer:
    """One answer as llhttp (``httptools``) parses it: headers, body, completion."""

    __slots__ = (
        "body",
        "body_bytes",
        "complete",
        "head_bytes",
        "headed",
        "headers",
        "keep",
        "parser",
        "reason",
    )

    def __init__(self) -> None:
        self.parser: Any = httptools.HttpResponseParser(self)
        self.keep = False
        """Whether the server keeps the connection after this answer (read when complete:
        llhttp answers it only while the message is current)."""
        self.reason = ""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.body_bytes = 0
        self.complete = False
        self.headed = False
        self.head_bytes = 0

    def on_status(self, reason: bytes) -> None:
        # llhttp may hand the reason phrase over in pieces (one per read it spans).
        self._count_head(len(reason))
        self.reason += reason.decode("latin-1")

    def _count_head(self, size: int) -> None:
        self.head_bytes += size
        if self.head_bytes > MAX_HEAD_BYTES:
            raise BadAnswer("answer head too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value))
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1").strip()
        headers = self.headers
        headers[key] = f"{headers[key]}, {text}" if key in headers else text

    def on_headers_complete(self) -> None:
        self.headed = True

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > MAX_BODY_BYTES:
            raise BadAnswer("answer body too long")
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep = self.parser.should_keep_alive()


class KeptHTTPTransport(BaseHTTPTransport):
    """Posts to ``http://`` endpoints over one kept connection (see the module docstring);
    ``https://`` requests go to ``tls``."""

    def __init__(self, tls: BaseHTTPTransport) -> None:
        """A transport with no connection yet, handing ``https://`` requests to ``tls``."""
        self.tls = tls
        self._lock = threading.Lock()
        self._connection: _Connection | None = None
        self._peer: tuple[str, int] | None = None
        self._targets: dict[str, _Target] = {}
        self._heads: dict[tuple[tuple[str, str], ...], bytes] = {}

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        data: bytes | None = None,
    ) -> BaseHTTPResult:
        """Send one request and read its answer; failures come back as the result's error."""
        if url[:7].lower() != "http://":
            return self.tls.request(method, url, headers=headers, timeout=timeout, data=data)
        try:
            target = self._targets.get(url)
            if target is None:
                target = _target(url)
                if len(self._targets) > 8:
                    self._targets.clear()
                self._targets[url] = target
            head = self._head(method, target, headers or {}, len(data or b""))
        except Exception as error:  # a bad URL or header: nothing was sent
            return RawHTTPResult(error=error)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            try:
                return self._exchange(method, target, head + (data or b""), deadline)
            except Exception as error:
                self._drop()
                return RawHTTPResult(error=error)

    def is_connection_error(self, exception: Exception | None) -> bool:
        """Whether ``exception`` means the connection failed (worth one more try)."""
        if isinstance(exception, ClosedBeforeAnswer | ConnectFailed):
            return True
        return self.tls.is_connection_error(exception)

    def close(self) -> None:
        """Close the kept connection and the ``tls`` transport's."""
        with self._lock:
            self._drop()
        self.tls.close()

    # -- internals --------------------------------------------------------------------

    def _head(self, method: str, target: _Target, headers: Mapping[str, str], size: int) -> bytes:
        key = (("", method), ("", target.host_header), *headers.items())
        block = self._heads.get(key)
        if block is None:
            request_line = f"{method} {target.path.decode('ascii')} HTTP/1.1\r\n".encode("ascii")
            names = {name.lower() for name in headers}
            fixed = {} if "host" in names else {"Host": target.host_header}
            block = request_line + _header_block({**fixed, **headers})
            if len(self._heads) > 8:
                self._heads.clear()
            self._heads[key] = block
        return block + b"Content-Length: %d\r\n\r\n" % size

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.sock.close()

    def _connect(self, target: _Target, deadline: float | None) -> _Connection:
        timeout = None if deadline is None else max(deadline - time.monotonic(), 0.001)
        try:
            sock = socket.create_connection((target.host, target.port), timeout)
        except OSError as error:
            raise ConnectFailed(
                f"cannot connect to {target.host}:{target.port}: {error}"
            ) from error
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Connection(sock)

    def _exchange(
        self, method: str, target: _Target, request: bytes, deadline: float | None
    ) -> RawHTTPResult:
        peer = (target.host, target.port)
        connection = self._connection
        if connection is None or self._peer != peer:
            self._drop()
            connection = self._connect(target, deadline)
            self._connection, self._peer = connection, peer
        connection.deadline = deadline
        try:
            connection.send(request)
            data = connection.recv()
        except (BrokenPipeError, ConnectionResetError) as error:
            raise ClosedBeforeAnswer(f"the OTLP endpoint closed the connection: {error}") from error
        if not data:
            raise ClosedBeforeAnswer("the OTLP endpoint closed the connection")
        answer = _Answer()
        parser = answer.parser
        keep = True
        try:
            while True:
                parser.feed_data(data)
                if answer.complete:
                    break
                data = connection.recv()
                if not data:
                    # The body ran to the connection's close (no length, not chunked): that
                    # is its end, once the head has been read.
                    if (
                        not answer.headed
                        or answer.headers.get("content-length")
                        or "chunked" in answer.headers.get("transfer-encoding", "")
                    ):
                        raise BadAnswer("connection closed inside the answer")
                    keep = False
                    break
        except httptools.HttpParserError as error:
            raise BadAnswer(f"not an HTTP/1.x answer: {type(error).__name__}") from error
        status = parser.get_status_code()
        answer.parser = None  # the parser holds the answer: no reference cycle per batch
        if not keep or not answer.keep:
            self._drop()
        return RawHTTPResult(
            status_code=status,
            reason=answer.reason,
            answer_headers=answer.headers,
            body=b"".join(answer.body),
        )
