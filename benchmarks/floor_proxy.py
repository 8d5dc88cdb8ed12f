"""The floor: a bare pass-through proxy, the least any Python gateway can cost per request.

A raw ASGI app (no routing, no pipeline, no telemetry) that reads the body, parses and
re-serialises it with orjson, posts it to ``$FLOOR_UPSTREAM`` through one pooled aiohttp
``ClientSession`` and returns the answer. Served by uvicorn with uvloop and httptools, like
``relaygate serve``. The benchmark reports relaygate's CPU per request as a ratio to this
floor measured in the same run, which stays comparable across machines and noisy runs.

Run: ``FLOOR_UPSTREAM=http://127.0.0.1:9301/fast/v1/chat/completions
uvicorn benchmarks.floor_proxy:app --port 9310 --loop uvloop --http httptools``.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp
import orjson

UPSTREAM = os.environ.get("FLOOR_UPSTREAM", "http://127.0.0.1:9301/fast/v1/chat/completions")
"""Where every request is forwarded (loopback)."""

_session: aiohttp.ClientSession | None = None


def _client() -> aiohttp.ClientSession:
    global _session
    if _session is None:
        _session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1000), auto_decompress=False
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
    async with _client().post(
        UPSTREAM, data=payload, headers={"content-type": "application/json"}
    ) as response:
        answer = await response.read()
        status = response.status
        content_type = response.headers.get("content-type", "application/json")
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
