"""relaygate's own CPU per streamed chunk, without an HTTP server or a wire client.

Drives the ASGI app returned by ``create_app`` directly (as ``inprocess_bench`` does)
against an in-memory upstream whose streamed answer is a run of small
``chat.completion.chunk`` events, all available at once. The per-chunk figure is the
difference in CPU time between requests streaming ``--chunks`` events and requests
streaming ``SHORT_CHUNKS``, over the difference in chunks, so what a request costs once
(routing, the pipeline, telemetry) cancels out. Each configuration runs in a fresh
interpreter, telemetry off; the figure is the best of ``--repeat`` runs.

Configurations: ``plain`` (one target, no idle bound: chunks pass straight through),
``idle`` (the target's ``request_timeout`` set, which bounds the gaps between chunks, so
every chunk passes the idle watchdog), and a two-target fallback whose first target answers,
with ``recover_streams`` on (``recover``, the default for fallback: the answer is a
recoverable stream, which keeps what it forwarded) or off (``norecover``).

Run: ``python -m benchmarks.stream_bench [--chunks 2000] [--requests 200] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from benchmarks.inprocess_bench import chat_scope
from benchmarks.systems import chat_body

KINDS = ("plain", "idle", "recover", "norecover")
"""The configurations measured (see the module docstring)."""

SHORT_CHUNKS = 10
"""Chunks of the short stream whose cost is subtracted."""

CHUNK = (
    b"data: "
    + orjson.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": {"content": "tok"}, "finish_reason": None}],
        }
    )
    + b"\n\n"
)
"""One streamed event: a typical token chunk."""


def server_config(kind: str) -> dict[str, Any]:
    """The server config of configuration ``kind`` (see the module docstring)."""
    target: dict[str, Any] = {
        "provider": "openai",
        "api_key": "bench-key",
        "custom_host": "http://up/v1",
    }
    if kind == "idle":
        target["request_timeout"] = 600_000
    config: dict[str, Any] = target
    if kind in ("recover", "norecover"):
        config = {
            "strategy": {"mode": "fallback", "recover_streams": kind == "recover"},
            "targets": [target, {**target, "provider": "groq"}],
        }
    return {
        "default_config": config,
        "telemetry": {
            "service_name": "relaygate-bench",
            "traces": {"exporter": "none", "detail": "off"},
            "metrics": {"enabled": False},
            "logs": {"level": "warning", "format": "json"},
        },
    }


def measure(kind: str, chunks: int, requests: int) -> float:
    """CPU seconds of ``requests`` streamed requests of ``chunks`` events each."""
    from relaygate.app import create_app
    from relaygate.exporters.logging import configure_logging
    from relaygate.gateway import GatewayDeps
    from relaygate.providers.client import UpstreamResponse, UpstreamStream

    class Upstream:
        async def send(self, request: Any) -> UpstreamResponse:
            async def events() -> AsyncIterator[bytes]:
                for _ in range(chunks):
                    yield CHUNK
                yield b"data: [DONE]\n\n"

            async def close() -> None:
                return None

            stream = UpstreamStream.of(events(), close, (OSError,), request.idle_timeout_s)
            return UpstreamResponse(
                status=200, headers={"content-type": "text/event-stream"}, stream=stream
            )

        async def aclose(self) -> None:
            return None

    configure_logging("warning", "json", env={})
    app = create_app(server_config(kind), GatewayDeps(upstream=Upstream()))
    body = chat_body(stream=True)
    scope = chat_scope(body)
    sent = [0]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent[0] += 1

    async def run(count: int) -> None:
        for _ in range(count):
            await app(dict(scope), receive, send)

    import uvloop

    uvloop.run(run(20))
    sent[0] = 0
    started = time.process_time()
    uvloop.run(run(requests))
    spent = time.process_time() - started
    if sent[0] < requests * (chunks + 1):
        raise SystemExit(f"only {sent[0]} body messages for {requests} requests")
    return spent


def _child(kind: str, chunks: int, requests: int) -> float:
    argv = ["--child", kind, str(chunks), "--requests", str(requests)]
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.stream_bench", *argv],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Print CPU µs per streamed chunk, without and with the idle bound."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "CHUNKS"), help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.child:
        print(f"{measure(ns.child[0], int(ns.child[1]), ns.requests):.6f}")
        return 0
    print(
        f"{ns.requests} requests per run, {ns.chunks} vs {SHORT_CHUNKS} chunks each, "
        f"best of {ns.repeat} runs, CPU µs per chunk"
    )
    for kind in KINDS:
        figures = []
        for _ in range(ns.repeat):
            long = _child(kind, ns.chunks, ns.requests)
            short = _child(kind, SHORT_CHUNKS, ns.requests)
            figures.append((long - short) / (ns.requests * (ns.chunks - SHORT_CHUNKS)) * 1e6)
        print(f"{kind:9} {min(figures):6.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
