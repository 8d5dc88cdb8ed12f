"""A 401 for a missing or unknown gateway key names the scheme (RFC 6750), on every edge,
and the openai SDK still raises its ``AuthenticationError``."""

from __future__ import annotations

import httpx
import openai
import pytest
from starlette.testclient import TestClient

import relaygate

CONFIG = {"auth": {"api_keys": ["rk-good"]}, "telemetry": {"logs": {"level": "error"}}}
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/embeddings"])
def test_the_app_answers_401_with_www_authenticate_bearer(path: str) -> None:
    with TestClient(relaygate.create_app(CONFIG)) as client:
        response = client.post(path, json=CHAT, headers={"authorization": "Bearer wrong"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "invalid_api_key"


async def test_the_transport_answers_401_with_www_authenticate_and_the_sdk_raises() -> None:
    transport = relaygate.AsyncTransport(CONFIG)
    async with httpx.AsyncClient(transport=transport) as http:
        raw = await http.post("http://relaygate/v1/chat/completions", json=CHAT)
        assert (raw.status_code, raw.headers["www-authenticate"]) == (401, "Bearer")
        client = openai.AsyncOpenAI(
            base_url="http://relaygate/v1", api_key="wrong", http_client=http, max_retries=0
        )
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(**CHAT)
