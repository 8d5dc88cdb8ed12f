"""``app.add_middleware`` wraps every route of the ASGI app, the API routes included."""

from __future__ import annotations

import subprocess
import sys

import httpx
import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relaygate.telemetry import Telemetry
from tests.fakes import RecordingTransport, chat_payload
from tests.inprocess import asgi_client, gateway_app

CONFIG = {
    "default_config": {
        "provider": "openai",
        "api_key": "sk-a",
        "custom_host": "http://upstream.invalid/v1",
    }
}


class Stamp:
    """A pure ASGI middleware adding ``x-stamped: yes`` to every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], (b"x-stamped", b"yes")]
            await send(message)

        await self.app(scope, receive, stamped)


async def test_added_middleware_wraps_the_api_routes_and_the_others(telemetry: Telemetry) -> None:
    upstream = RecordingTransport(httpx.Response(200, json=chat_payload()))
    app = gateway_app(CONFIG, telemetry, upstream)
    app.add_middleware(Stamp)
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": []})
    async with asgi_client(app) as client:
        chat = await client.post("/v1/chat/completions", content=body)
        refused = await client.get("/v1/chat/completions")
        health = await client.get("/health")
    assert chat.status_code == 200
    assert refused.status_code == 405
    assert health.status_code == 200
    assert [r.headers.get("x-stamped") for r in (chat, refused, health)] == ["yes"] * 3


async def test_without_added_middleware_the_api_routes_answer_as_usual(
    telemetry: Telemetry,
) -> None:
    upstream = RecordingTransport(httpx.Response(200, json=chat_payload()))
    app = gateway_app(CONFIG, telemetry, upstream)
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": []})
    async with asgi_client(app) as client:
        chat = await client.post("/v1/chat/completions", content=body)
    assert chat.status_code == 200
    assert "x-stamped" not in chat.headers


def test_the_in_process_transport_loads_neither_the_asgi_app_nor_starlette() -> None:
    code = (
        "import sys\n"
        "from relaygate import AsyncTransport\n"
        "import relaygate.transport\n"
        "loaded = [m for m in sys.modules if m == 'relaygate.app' or m.startswith('starlette')]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
