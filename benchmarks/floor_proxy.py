"""The floor: a bare pass-through proxy, the least any Python gateway can cost per request.

A raw ASGI app (no routing, no pipeline, no telemetry) that reads the body, parses and
re-serialises it with orjson, posts it to ``$FLOOR_UPSTREAM`` (``/slow``: to
``$FLOOR_SLOW_UPSTREAM``; ``/stream``: to ``$FLOOR_STREAM_UPSTREAM``) through one pooled
aiohttp ``ClientSession`` and returns the answer, chunk by chunk when it is an event
stream. Served by uvicorn with uvloop and httptools, like ``relaygate serve``. The
benchmark reports relaygate's CPU per request as a ratio to this floor measured in the
same run, which stays comparable across machines and noisy runs, and its added latency
and time to first byte beside relaygate's.

Run: ``FLOOR_UPSTREAM=http://127.0.0.1:9301/fast/v1/chat/completions
uvicorn benchmarks.floor_proxy:app --port 9310 --loop uvloop --http httptools``.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp
import orjson

UPSTREAM = os.environ.get("FLOOR_UPSTREAM", "http://127.0.0.1:9301/fast/v1/chat/completions")
"""Where requests are forwarded (loopback), unless their path picks another upstream."""

UPSTREAMS = {
    "/slow": os.environ.get("FLOOR_SLOW_UPSTREAM", UPSTREAM),
    "/stream": os.environ.get("FLOOR_STREAM_UPSTREAM", UPSTREAM),
}
"""Upstreams chosen by request path."""

PASS_BASE = os.environ.get("FLOOR_PASS_BASE")
"""When set (``http://127.0.0.1:PORT``), every request goes to this base plus its own path
instead (the stream scenarios address their upstream's behaviours by path)."""

_session: aiohttp.ClientSession | None = None


def _client() -> aiohttp.ClientSession:
    global _session
    if _session is None:
        _session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=10_000), auto_decompress=False
        )
    return _session


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Forward a POST body upstream and relay status, content type and body."""
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    payload = orjson.dumps(orjson.loads(body))
    url = PASS_BASE + scope["path"] if PASS_BASE else UPSTREAMS.get(scope["path"], UPSTREAM)
    async with _client().post(
        url, data=payload, headers={"content-type": "application/json"}
    ) as response:
        status = response.status
        content_type = response.headers.get("content-type", "application/json")
        if content_type.startswith("text/event-stream"):
            await _relay_stream(response, status, content_type, send)
            return
        answer = await response.read()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode("latin-1")),
                (b"content-length", str(len(answer)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": answer})


async def forward(path: str, body: bytes) -> tuple[int, str, bytes]:
    """What :func:`app` does for a non-streamed request, framework-free: parse and
    re-serialise ``body``, post it to the upstream ``path`` picks, and return the answer's
    status, content type and body (the other floors of :mod:`benchmarks.stack_floors`)."""
    payload = orjson.dumps(orjson.loads(body))
    url = PASS_BASE + path if PASS_BASE else UPSTREAMS.get(path, UPSTREAM)
    async with _client().post(
        url, data=payload, headers={"content-type": "application/json"}
    ) as response:
        content_type = response.headers.get("content-type", "application/json")
        return response.status, content_type, await response.read()


async def _relay_stream(
    response: aiohttp.ClientResponse, status: int, content_type: str, send: Any
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode("latin-1"))],
        }
    )
    async for chunk in response.content.iter_any():
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
