"""A loopback TCP listener that records every connection and the bytes it received.

It plays a host an attacker names: anything relaygate sends it is kept for the test to
search, and it answers each request with a minimal OpenAI-shaped chat completion.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

_ANSWER = (
    b'{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"leaked"},"finish_reason":"stop"}]}'
)


@dataclass
class Listener:
    """What a :func:`listening` socket saw."""

    port: int
    received: list[bytes] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def everything(self) -> bytes:
        """All bytes received on every connection."""
        return b"".join(self.received)


def _serve(sock: socket.socket, listener: Listener, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            conn, _ = sock.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        with conn:
            conn.settimeout(2)
            data = b""
            with contextlib.suppress(OSError):
                while b"\r\n\r\n" not in data:
                    part = conn.recv(65536)
                    if not part:
                        break
                    data += part
            # Recorded before answering, so a client that has the answer sees the record.
            listener.received.append(data)
            head = (
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
                + f"content-length: {len(_ANSWER)}\r\n\r\n".encode()
            )
            with contextlib.suppress(OSError):
                conn.sendall(head + _ANSWER)


@contextlib.contextmanager
def listening() -> Iterator[Listener]:
    """Listen on a free loopback port until the block ends."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.1)
    listener = Listener(sock.getsockname()[1])
    stop = threading.Event()
    thread = threading.Thread(target=_serve, args=(sock, listener, stop), daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()
