"""Real local servers for tests: uvicorn in a thread, and `relaygate serve` as a process.

Everything binds 127.0.0.1 on a free port; nothing reaches beyond loopback.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import uvicorn
import yaml


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    """A server listening on loopback."""

    port: int
    log: IO[bytes] | None = None
    """The server process's combined stdout and stderr, when it is a process."""
    process: subprocess.Popen[bytes] | None = None
    """The server process, when it is one."""

    def output(self) -> str:
        """What the server process has written so far (empty when it is not a process)."""
        if self.log is None:
            return ""
        return os.pread(self.log.fileno(), 1 << 26, 0).decode(errors="replace")

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def serve_in_thread(app: Any, port: int | None = None) -> Iterator[RunningServer]:
    """Run an ASGI app under uvicorn in a daemon thread until the block ends."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield RunningServer(port)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def relaygate_process(
    config_path: Path, env: dict[str, str] | None = None, workers: int = 1
) -> Iterator[RunningServer]:
    """Run ``relaygate serve --config`` as a real process until the block ends."""
    port = free_port()
    proc_env = {**os.environ, **(env or {})}
    # The gateway's output goes to a file: an unread pipe fills up and blocks the gateway.
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed after the process ends
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "relaygate.cli",
            "serve",
            "--config",
            str(config_path),
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=proc_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                log.seek(0)
                output = log.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"relaygate exited {proc.returncode}: {output}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("relaygate did not become healthy")
            time.sleep(0.05)
        yield RunningServer(port, log, proc)
    finally:
        stop_process(proc, timeout=10)
        log.close()


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Terminate ``proc`` and wait for it; kill it if it is still running after ``timeout``."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def running_gateway(
    directory: Path,
    config: Mapping[str, Any],
    env: dict[str, str] | None = None,
    workers: int = 1,
) -> Iterator[RunningServer]:
    """Write ``config`` as YAML into ``directory`` and run ``relaygate serve`` on it (with
    ``env`` added to the environment) until the block ends."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "relaygate.yaml"
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    with relaygate_process(path, env, workers) as server:
        yield server
