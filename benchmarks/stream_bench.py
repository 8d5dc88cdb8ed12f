"""relaygate's own CPU per streamed chunk, without an HTTP server or a wire client.

Drives the ASGI app returned by ``create_app`` directly against an in-memory upstream that
streams ``N`` chat chunks at once, through a two-target fallback config whose first target
answers; ``recover_streams`` is on (the default, so the answer is a recoverable stream) or
off. The figure is the CPU per chunk: the CPU of a long stream minus that of a short one,
divided by the chunks between them, so the per-request cost cancels out. Each figure is
the best of ``--repeat`` runs, each in a fresh interpreter.

Run: ``python -m benchmarks.stream_bench [--requests 300] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from typing import Any

import orjson

from benchmarks.systems import chat_body

BODY = orjson.dumps({**orjson.loads(chat_body()), "stream": True})
CHUNK = (
    b"data: "
    + orjson.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": {"content": "token "}, "finish_reason": None}],
        }
    )
    + b"\n\n"
)
SHORT, LONG = 10, 1010
"""Chunks of the short and the long stream; the per-chunk figure is over the difference."""


def server_config(recover: bool) -> dict[str, Any]:
    """A fallback over two healthy in-memory targets, recovering streams or not."""
    target = {"provider": "openai", "api_key": "bench-key", "custom_host": "http://up/v1"}
    return {
        "default_config": {
            "strategy": {"mode": "fallback", "recover_streams": recover},
            "targets": [target, target],
        },
        "telemetry": {
            "traces": {"exporter": "none", "detail": "off"},
            "metrics": {"enabled": False},
            "logs": {"level": "warning", "format": "json"},
        },
    }


def measure(recover: bool, chunks: int, requests: int) -> float:
    """CPU seconds per streamed request of ``chunks`` chunks (this process)."""
    import uvloop

    from relaygate.app import create_app
    from relaygate.gateway import GatewayDeps
    from relaygate.providers.client import StreamInterrupted, UpstreamResponse, UpstreamStream

    async def noop() -> None:
        return None

    async def body() -> Any:
        for _ in range(chunks):
            yield CHUNK
        yield b"data: [DONE]\n\n"

    class Upstream:
        async def send(self, request: Any) -> UpstreamResponse:
            stream = UpstreamStream(body(), noop, (StreamInterrupted,))
            return UpstreamResponse(200, {"content-type": "text/event-stream"}, stream=stream)

        async def aclose(self) -> None:
            return None

    app = create_app(server_config(recover), GatewayDeps(upstream=Upstream()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"relaygate"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8787),
    }
    received: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            received.append(message["status"])

    async def run(count: int) -> None:
        for _ in range(count):
            await app(dict(scope), receive, send)

    uvloop.run(run(20))
    started = time.process_time()
    uvloop.run(run(requests))
    spent = time.process_time() - started
    if set(received) != {200}:
        raise SystemExit(f"unexpected statuses {set(received)}")
    return spent / requests


def _child(recover: str, chunks: int, requests: int) -> float:
    argv = ["--requests", str(requests), "--child", recover, str(chunks)]
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.stream_bench", *argv],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Print CPU µs per streamed chunk with stream recovery on and off."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", nargs=2, metavar=("RECOVER", "CHUNKS"), help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.child:
        figure = measure(ns.child[0] == "on", int(ns.child[1]), ns.requests)
        print(f"{figure:.9f}")
        return 0
    print(f"{ns.requests} streams per run, best of {ns.repeat} runs, CPU µs per chunk")
    for recover in ("off", "on"):
        short = min(_child(recover, SHORT, ns.requests) for _ in range(ns.repeat))
        long = min(_child(recover, LONG, ns.requests) for _ in range(ns.repeat))
        per_chunk = (long - short) / (LONG - SHORT) * 1e6
        print(f"recover_streams {recover:4} {per_chunk:8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
