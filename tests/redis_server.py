"""A real ``redis-server`` on a free loopback port, for the shared-state tests.

The tests that use it carry the ``redis`` marker; without the program they fail with the
install hint (``make test`` installs it through ``scripts/ensure-redis.sh``), never skip.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from benchmarks.replicas import redis_argv
from tests.servers import free_port
from tests.tools import require_tool

HINT = "redis-server is not installed: run `bash scripts/ensure-redis.sh` (make test does)"


class RedisServer:
    """One ``redis-server`` process without persistence; :meth:`kill` and :meth:`start`
    stop and restart it on the same port (an outage)."""

    def __init__(self, program: str) -> None:
        self.program = program
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory()

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A synchronous client of this server (for the test's own checks)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        self.process = subprocess.Popen(
            redis_argv(self.program, self.port, Path(self._dir.name)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(redis.RedisError):
                if self.client().ping():
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def kill(self) -> None:
        """Kill the server at once (SIGKILL) and wait for it to be gone."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.kill()
        self._dir.cleanup()


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A started :class:`RedisServer`, stopped after the block."""
    server = RedisServer(require_tool("redis", shutil.which("redis-server"), HINT))
    try:
        server.start()
        yield server
    finally:
        server.close()
