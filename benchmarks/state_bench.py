"""The cost of shared state per request: Redis configured or not, limits and the cache.

Drives the ASGI app in-process as :mod:`benchmarks.inprocess_bench` does (an in-memory
upstream that answers at once, telemetry off, so what is measured is relaygate itself),
each variant in a fresh interpreter, best of ``--repeat`` runs; CPU ms (this process) and
wall ms per request. A ``redis-server`` on a free loopback port is started for the Redis
variants (``scripts/ensure-redis.sh`` installs it) and stopped after.

- ``plain``: a gateway key, no limits, no cache (the ordinary request);
- ``plain+redis``: the same with ``state.redis`` configured (no round trip expected);
- ``limits`` / ``limits+redis``: the key has requests- and tokens-per-minute limits
  (one pipelined round trip before routing, one background write after);
- ``cache-hit`` / ``cache-hit+redis``: every request after the first is a cache hit.

Run: ``python -m benchmarks.state_bench [--requests 3000] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from benchmarks.inprocess_bench import ANSWER, CHAT_BODY, chat_scope

KEY = "rg-bench-key"
VARIANTS = ("plain", "limits", "cache-hit")


def server_config(variant: str, redis_url: str | None) -> dict[str, Any]:
    """The server config of ``variant`` (see the module docstring)."""
    from relaygate.security.keys import hash_key

    key: dict[str, Any] = {"name": "bench", "hash": hash_key(KEY)}
    if variant == "limits":
        key["limits"] = {"requests_per_minute": 10**9, "tokens_per_minute": 10**12}
    target: dict[str, Any] = {
        "provider": "openai",
        "api_key": "bench-key",
        "custom_host": "http://up/v1",
    }
    if variant == "cache-hit":
        target["cache"] = {"mode": "simple", "max_age": 600}
    config: dict[str, Any] = {
        "auth": {"keys": [key]},
        "default_config": target,
        "telemetry": {
            "traces": {"exporter": "none", "detail": "off"},
            "metrics": {"enabled": False},
            "logs": {"level": "warning", "format": "json"},
        },
    }
    if redis_url:
        config["state"] = {"redis": {"url": redis_url}}
    return config


def measure(variant: str, redis_url: str | None, requests: int) -> tuple[float, float]:
    """CPU and wall milliseconds per request of ``requests`` requests of ``variant``."""
    from relaygate.app import create_app
    from relaygate.exporters.logging import configure_logging
    from relaygate.gateway import GatewayDeps
    from relaygate.providers.client import UpstreamResponse

    class Upstream:
        async def send(self, request: Any) -> UpstreamResponse:
            return UpstreamResponse(
                status=200, headers={"content-type": "application/json"}, body=ANSWER
            )

        async def aclose(self) -> None:
            return None

    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - where log lines would go
    configure_logging("warning", "json", env={})
    app = create_app(server_config(variant, redis_url), GatewayDeps(upstream=Upstream()))
    scope = chat_scope(CHAT_BODY, (b"authorization", f"Bearer {KEY}".encode()))
    statuses: set[int] = set()
    gateway = app.state.gateway

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": CHAT_BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.add(message["status"])

    async def run(count: int) -> tuple[float, float]:
        for _ in range(200):
            await app(dict(scope), receive, send)
        await gateway.background.drain()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(count):
            await app(dict(scope), receive, send)
        await gateway.background.drain()
        spent = (time.process_time() - cpu, time.perf_counter() - wall)
        await gateway.aclose()
        return spent

    import uvloop

    cpu, wall = uvloop.run(run(requests))
    if statuses != {200}:
        raise SystemExit(f"unexpected statuses {statuses}")
    if redis_url and getattr(gateway.state, "up", True) is False:
        raise SystemExit("redis was not reachable during the run")
    return cpu * 1000 / requests, wall * 1000 / requests


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis() -> tuple[subprocess.Popen[bytes], str, tempfile.TemporaryDirectory[str]]:
    """A redis-server without persistence on a free loopback port, and its URL."""
    program = shutil.which("redis-server")
    if program is None:
        raise SystemExit("redis-server not found: run `bash scripts/ensure-redis.sh`")
    port = _free_port()
    workdir = tempfile.TemporaryDirectory()
    proc = subprocess.Popen(
        [program, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir.name],
        stdout=subprocess.DEVNULL,
    )
    import redis

    deadline = time.monotonic() + 20
    while True:
        try:
            if redis.Redis(port=port).ping():
                break
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0", workdir


def main(argv: list[str] | None = None) -> int:
    """Print CPU and wall ms per request of every variant, with and without Redis."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "REDIS_URL"))
    ns = parser.parse_args(argv)
    if ns.child:
        url = ns.child[1] if ns.child[1] != "-" else None
        cpu, wall = measure(ns.child[0], url, ns.requests)
        print(f"{cpu:.4f} {wall:.4f}", file=sys.__stdout__)
        return 0
    proc, url, workdir = start_redis()
    try:
        print(f"{ns.requests} requests per run, best of {ns.repeat}, telemetry off, ms per request")
        print(f"{'variant':16} {'CPU':>7} {'wall':>7} {'CPU / plain':>12}")
        plain_cpu = 0.0
        for variant in VARIANTS:
            for redis_url in (None, url):
                runs = []
                for _ in range(ns.repeat):
                    child = ["--requests", str(ns.requests), "--child", variant, redis_url or "-"]
                    out = subprocess.run(
                        [sys.executable, "-m", "benchmarks.state_bench", *child],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    cpu, wall = (float(x) for x in out.stdout.split())
                    runs.append((cpu, wall))
                cpu, wall = min(runs)
                if variant == "plain" and redis_url is None:
                    plain_cpu = cpu
                name = variant + ("+redis" if redis_url else "")
                print(f"{name:16} {cpu:7.3f} {wall:7.3f} {cpu / plain_cpu:11.2f}x")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        workdir.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
