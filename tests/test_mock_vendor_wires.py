"""The fault simulator's Gemini and Cohere wire formats: shapes, errors, refusals and the
existing stream faults applied to their streams."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from google.genai import types as genai

from relaygate.mock import MockSettings, create_mock_app, parse_faults
from relaygate.providers.translation import SseSplitter
from relaygate.rehearse import BUILTIN_SCENARIOS, format_report, load_rehearsal_config, rehearse
from tests.conftest import MockFactory

GEMINI = "/v1beta/models/gemini-x:generateContent"
GEMINI_STREAM = "/v1beta/models/gemini-x:streamGenerateContent?alt=sse"
CONTENTS = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
COHERE_CHAT = {"model": "command-a", "messages": [{"role": "user", "content": "hi"}]}


def _client(script: str = "", **settings: Any) -> httpx.AsyncClient:
    app = create_mock_app(MockSettings(name="m", script=parse_faults(script), **settings))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://mock")


def _events(raw: bytes) -> list[tuple[str | None, Any]]:
    splitter = SseSplitter()
    return [(name, orjson.loads(data)) for name, data in splitter.push(raw) + splitter.close()]


async def test_gemini_answers_validate_against_the_sdk_types() -> None:
    async with _client() as client:
        plain = await client.post(GEMINI, json=CONTENTS)
        streamed = await client.post(GEMINI_STREAM, json=CONTENTS)
    answer = genai.GenerateContentResponse.model_validate(plain.json())
    assert answer.candidates is not None and answer.text == "Hello from m"
    assert b"\r\n\r\n" in streamed.content
    events = [genai.GenerateContentResponse.model_validate(e) for _, e in _events(streamed.content)]
    assert "".join(e.text or "" for e in events) == "Hello from m"


@pytest.mark.parametrize(
    ("script", "check"),
    [
        ("safety_block", lambda a: a.prompt_feedback.block_reason == genai.BlockedReason.SAFETY),
        ("safety_finish", lambda a: a.candidates[0].finish_reason == genai.FinishReason.SAFETY),
    ],
)
async def test_gemini_refusals_are_2xx_answers(script: str, check: Any) -> None:
    async with _client(script) as client:
        answer = await client.post(GEMINI, json=CONTENTS)
    assert answer.status_code == 200
    assert check(genai.GenerateContentResponse.model_validate(answer.json()))


@pytest.mark.parametrize(("status", "name"), [(429, "RESOURCE_EXHAUSTED"), (503, "UNAVAILABLE")])
async def test_gemini_errors_are_google_rpc_status_bodies(status: int, name: str) -> None:
    async with _client(str(status)) as client:
        answer = await client.post(GEMINI, json=CONTENTS)
    assert answer.status_code == status
    assert answer.json()["error"] == {
        "code": status,
        "message": f"mock m: simulated {status}",
        "status": name,
    }


async def test_gemini_needs_its_key_in_its_header() -> None:
    async with _client(api_key="g") as client:
        refused = await client.post(GEMINI, json=CONTENTS)
        accepted = await client.post(GEMINI, json=CONTENTS, headers={"x-goog-api-key": "g"})
    assert refused.status_code == 401 and refused.json()["error"]["status"] == "UNAUTHENTICATED"
    assert accepted.status_code == 200


async def test_cohere_stream_events_and_errors() -> None:
    async with _client("503") as client:
        failed = await client.post("/v2/chat", json=COHERE_CHAT)
        streamed = await client.post("/v2/chat", json={**COHERE_CHAT, "stream": True})
    assert failed.status_code == 503 and failed.json()["message"] == "mock m: simulated 503"
    events = _events(streamed.content)
    assert [name for name, _ in events] == [e["type"] for _, e in events]
    assert events[0][0] == "message-start" and events[-1][0] == "message-end"
    text = "".join(
        e["delta"]["message"]["content"]["text"] for n, e in events if n == "content-delta"
    )
    assert text == "Hello from m"
    assert events[-1][1]["delta"]["finish_reason"] == "COMPLETE"


def test_stream_faults_apply_to_vendor_streams(mock_upstream: MockFactory) -> None:
    mock = mock_upstream(
        name="m", script="200@cut_after_chunks=2,200@cut_after_chunks=1", stream_chunks=3
    )
    with httpx.Client(base_url=mock.url, timeout=10) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.post("/v2/chat", json={**COHERE_CHAT, "stream": True})
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(GEMINI_STREAM, json=CONTENTS)


async def test_vendor_bodies_are_checked() -> None:
    async with _client() as client:
        gemini = await client.post(GEMINI, json={"contents": "hi"})
        embed = await client.post("/v2/embed", json={"model": "e", "texts": ["a"]})
        unknown = await client.post("/v1beta/models/g:countTokens", json=CONTENTS)
    assert gemini.status_code == 400 and gemini.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert embed.status_code == 400 and "input_type" in embed.json()["message"]
    assert unknown.status_code == 404


def test_rehearse_drives_gemini_and_cohere_targets(tmp_path: Path) -> None:
    config = {
        "strategy": {"mode": "fallback"},
        "targets": [
            {"provider": "google", "api_key": "g", "override_params": {"model": "gemini-x"}},
            {"provider": "cohere", "api_key": "c", "override_params": {"model": "command-a"}},
        ],
    }
    path = tmp_path / "vendors.json"
    path.write_text(orjson.dumps(config).decode())
    result = rehearse(load_rehearsal_config(path), BUILTIN_SCENARIOS["primary-down"], requests=2)
    report = format_report(result)
    assert "provider=google model=gemini-x status_class=5xx" in report
    assert "provider=cohere model=command-a status_class=2xx reason=ok" in report
    assert "exhausted requests: 0" in report
