"""Tests for relaygate's fault-simulating mock upstream provider."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from relaygate.mock import (
    Fault,
    MockSettings,
    add_mock_arguments,
    create_mock_app,
    parse_faults,
    settings_from_args,
)

CHAT_BODY: dict[str, Any] = {
    "model": "gpt-test",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello to the gateway."},
    ],
}
CHAT_PROMPT_TOKENS = (len("Be brief.") + len("Say hello to the gateway.")) // 4 + 1


@contextlib.asynccontextmanager
async def mock_client(settings: MockSettings | None = None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_mock_app(settings or MockSettings())
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://mock.test") as client:
        yield client


def sse_payloads(text: str) -> list[str]:
    """The `data:` payloads of an SSE body, checking the event framing."""
    assert text.endswith("\n\n")
    events = text.split("\n\n")[:-1]
    assert all(event.startswith("data: ") for event in events)
    return [event[len("data: ") :] for event in events]


def decode_float32(encoded: str) -> list[float]:
    raw = base64.b64decode(encoded)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


# ---------------------------------------------------------------------------
# Success shapes
# ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_chat_completion_returns_openai_chat_completion_json() -> None:
    async with mock_client(MockSettings(name="alpha")) as client:
        response = await client.post("/v1/chat/completions", json=CHAT_BODY)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-mock-name"] == "alpha"
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert isinstance(body["created"], int)
    assert body["model"] == "gpt-test"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello from alpha"},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {
        "prompt_tokens": CHAT_PROMPT_TOKENS,
        "completion_tokens": 3,
        "total_tokens": CHAT_PROMPT_TOKENS + 3,
    }


@pytest.mark.asyncio
async def test_chat_prompt_tokens_count_text_parts_of_multimodal_content() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 40}]}],
    }
    async with mock_client() as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.json()["usage"]["prompt_tokens"] == 11


@pytest.mark.asyncio
async def test_text_completion_returns_openai_text_completion_json() -> None:
    async with mock_client(MockSettings(name="beta")) as client:
        response = await client.post(
            "/v1/completions", json={"model": "davinci-test", "prompt": "Once upon a time"}
        )
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "text_completion"
    assert body["model"] == "davinci-test"
    assert body["choices"] == [
        {"text": "Hello from beta", "index": 0, "logprobs": None, "finish_reason": "stop"}
    ]
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


@pytest.mark.asyncio
async def test_embeddings_return_deterministic_eight_dimensional_float_vectors() -> None:
    request = {"model": "embed-test", "input": ["alpha", "beta", "alpha"]}
    async with mock_client() as client:
        first = (await client.post("/v1/embeddings", json=request)).json()
        second = (await client.post("/v1/embeddings", json=request)).json()
    assert first["object"] == "list"
    assert first["model"] == "embed-test"
    vectors = [item["embedding"] for item in first["data"]]
    assert [item["index"] for item in first["data"]] == [0, 1, 2]
    assert all(item["object"] == "embedding" for item in first["data"])
    assert all(len(vector) == 8 for vector in vectors)
    assert all(-1.0 <= value <= 1.0 for vector in vectors for value in vector)
    assert vectors[0] == vectors[2]
    assert vectors[0] != vectors[1]
    assert second["data"] == first["data"]
    assert first["usage"] == {"prompt_tokens": 4, "total_tokens": 4}  # 14 chars // 4 + 1


@pytest.mark.asyncio
async def test_embeddings_accept_a_single_string_input() -> None:
    async with mock_client() as client:
        single = (await client.post("/v1/embeddings", json={"model": "e", "input": "alpha"})).json()
        listed = (
            await client.post("/v1/embeddings", json={"model": "e", "input": ["alpha"]})
        ).json()
    assert len(single["data"]) == 1
    assert single["data"][0]["embedding"] == listed["data"][0]["embedding"]


@pytest.mark.asyncio
async def test_base64_embeddings_decode_to_the_float_vectors() -> None:
    async with mock_client() as client:
        floats = await client.post("/v1/embeddings", json={"model": "e", "input": ["a", "b"]})
        encoded = await client.post(
            "/v1/embeddings",
            json={"model": "e", "input": ["a", "b"], "encoding_format": "base64"},
        )
    float_vectors = [item["embedding"] for item in floats.json()["data"]]
    decoded = [decode_float32(item["embedding"]) for item in encoded.json()["data"]]
    assert decoded == float_vectors


@pytest.mark.asyncio
async def test_models_lists_one_model_owned_by_the_mock_name() -> None:
    async with mock_client(MockSettings(name="gamma")) as client:
        response = await client.get("/v1/models")
    assert response.status_code == 200
    assert response.json() == {
        "object": "list",
        "data": [{"id": "gamma", "object": "model", "created": 0, "owned_by": "gamma"}],
    }


# ---------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_chat_stream_sends_role_content_stop_usage_chunks_then_done() -> None:
    body = {**CHAT_BODY, "stream": True, "stream_options": {"include_usage": True}}
    async with mock_client(MockSettings(name="delta", stream_chunks=4)) as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    chunks = [orjson.loads(p) for p in payloads[:-1]]
    assert len(chunks) == 1 + 4 + 1 + 1
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["model"] == "gpt-test"
        assert chunk["id"] == chunks[0]["id"]
        assert isinstance(chunk["created"], int)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = "".join(c["choices"][0]["delta"]["content"] for c in chunks[1:5])
    assert content == "Hello from delta"
    assert all(c["choices"][0]["index"] == 0 for c in chunks[:6])
    assert chunks[5]["choices"][0]["finish_reason"] == "stop"
    assert chunks[6]["choices"] == []
    assert chunks[6]["usage"] == {
        "prompt_tokens": CHAT_PROMPT_TOKENS,
        "completion_tokens": 3,
        "total_tokens": CHAT_PROMPT_TOKENS + 3,
    }


@pytest.mark.asyncio
async def test_chat_stream_without_include_usage_has_no_usage_chunk() -> None:
    async with mock_client() as client:
        response = await client.post("/v1/chat/completions", json={**CHAT_BODY, "stream": True})
    payloads = sse_payloads(response.text)
    chunks = [orjson.loads(p) for p in payloads[:-1]]
    assert payloads[-1] == "[DONE]"
    assert len(chunks) == 1 + 5 + 1
    assert all("usage" not in chunk for chunk in chunks)


@pytest.mark.asyncio
async def test_text_completion_stream_sends_text_chunks_usage_then_done() -> None:
    body = {
        "model": "davinci-test",
        "prompt": "hi",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with mock_client(MockSettings(stream_chunks=2)) as client:
        response = await client.post("/v1/completions", json=body)
    payloads = sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    chunks = [orjson.loads(p) for p in payloads[:-1]]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks[:2]) == "Hello from mock"
    assert chunks[2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[3]["choices"] == []
    assert chunks[3]["usage"]["completion_tokens"] == 3


@pytest.mark.asyncio
async def test_streaming_request_with_error_fault_gets_json_error() -> None:
    async with mock_client(MockSettings(script=parse_faults("500"))) as client:
        response = await client.post("/v1/chat/completions", json={**CHAT_BODY, "stream": True})
    assert response.status_code == 500
    assert response.json()["error"]["message"] == "mock mock: simulated 500"


# ---------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_script_answers_statuses_in_order_with_retry_after_header() -> None:
    settings = MockSettings(name="s", script=parse_faults("503,429@retry_after=2,200"))
    async with mock_client(settings) as client:
        responses = [await client.post("/v1/chat/completions", json=CHAT_BODY) for _ in range(4)]
        stats = (await client.get("/_mock/stats")).json()
    assert [r.status_code for r in responses] == [503, 429, 200, 200]
    assert "retry-after" not in responses[0].headers
    assert responses[1].headers["retry-after"] == "2"
    assert responses[0].json() == {
        "error": {
            "message": "mock s: simulated 503",
            "type": "server_error",
            "param": None,
            "code": "service_unavailable",
        }
    }
    assert responses[1].json()["error"]["type"] == "rate_limit_error"
    assert stats == {"requests": 4, "by_status": {"200": 2, "429": 1, "503": 1}}


@pytest.mark.asyncio
async def test_retry_after_headers_keep_decimal_seconds_and_milliseconds() -> None:
    settings = MockSettings(script=parse_faults("429@retry_after=1.5@retry_after_ms=1500"))
    async with mock_client(settings) as client:
        response = await client.post("/v1/chat/completions", json=CHAT_BODY)
    assert response.headers["retry-after"] == "1.5"
    assert response.headers["retry-after-ms"] == "1500"


@pytest.mark.asyncio
async def test_looping_script_starts_over_when_exhausted() -> None:
    settings = MockSettings(script=parse_faults("503,200"), loop_script=True)
    async with mock_client(settings) as client:
        statuses = [
            (await client.post("/v1/chat/completions", json=CHAT_BODY)).status_code
            for _ in range(5)
        ]
    assert statuses == [503, 200, 503, 200, 503]


@pytest.mark.asyncio
async def test_exhausted_script_falls_back_to_error_rate() -> None:
    settings = MockSettings(script=parse_faults("200"), error_rate=1.0, error_status=502)
    async with mock_client(settings) as client:
        statuses = [
            (await client.post("/v1/chat/completions", json=CHAT_BODY)).status_code
            for _ in range(3)
        ]
    assert statuses == [200, 502, 502]


@pytest.mark.asyncio
async def test_seeded_error_rate_is_reproducible_and_close_to_the_rate() -> None:
    async def run() -> list[int]:
        settings = MockSettings(error_rate=0.3, error_status=503, seed=1234)
        async with mock_client(settings) as client:
            return [
                (await client.post("/v1/chat/completions", json=CHAT_BODY)).status_code
                for _ in range(200)
            ]

    first, second = await run(), await run()
    assert first == second
    assert set(first) == {200, 503}
    assert 40 <= first.count(503) <= 80


@pytest.mark.asyncio
async def test_garbage_fault_answers_200_with_html_body() -> None:
    async with mock_client(MockSettings(script=parse_faults("garbage"))) as client:
        response = await client.post("/v1/chat/completions", json=CHAT_BODY)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == "<html>upstream exploded</html>"
    with pytest.raises(ValueError):
        response.json()


@pytest.mark.asyncio
async def test_fault_latency_delays_the_response() -> None:
    async with mock_client(MockSettings(latency_ms=20)) as client:
        started = time.perf_counter()
        response = await client.post(
            "/v1/chat/completions", json=CHAT_BODY, headers={"x-mock-fault": "200@latency_ms=60"}
        )
        elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert elapsed >= 0.075


@pytest.mark.asyncio
async def test_x_mock_fault_header_overrides_script_without_consuming_it() -> None:
    async with mock_client(MockSettings(script=parse_faults("503"))) as client:
        overridden = await client.post(
            "/v1/chat/completions",
            json=CHAT_BODY,
            headers={"x-mock-fault": "418@retry_after_ms=250,500"},
        )
        scripted = await client.post("/v1/chat/completions", json=CHAT_BODY)
    assert overridden.status_code == 418
    assert overridden.headers["retry-after-ms"] == "250"
    assert scripted.status_code == 503


@pytest.mark.asyncio
async def test_invalid_x_mock_fault_header_gets_400() -> None:
    async with mock_client() as client:
        response = await client.post(
            "/v1/chat/completions", json=CHAT_BODY, headers={"x-mock-fault": "boom"}
        )
    assert response.status_code == 400
    assert "x-mock-fault" in response.json()["error"]["message"]


@pytest.mark.asyncio
async def test_concurrent_requests_each_consume_exactly_one_script_step() -> None:
    settings = MockSettings(script=parse_faults("200@latency_ms=5," * 10 + "503"))
    async with mock_client(settings) as client:
        responses = await asyncio.gather(
            *(client.post("/v1/chat/completions", json=CHAT_BODY) for _ in range(11))
        )
        stats = (await client.get("/_mock/stats")).json()
    assert sorted(r.status_code for r in responses) == [200] * 10 + [503]
    assert stats == {"requests": 11, "by_status": {"200": 10, "503": 1}}


# ---------------------------------------------------------------------------
# Validation, auth, routing
# ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_api_key_is_required_as_bearer_or_api_key_header() -> None:
    async with mock_client(MockSettings(api_key="sk-mock")) as client:
        missing = await client.post("/v1/chat/completions", json=CHAT_BODY)
        wrong = await client.post(
            "/v1/chat/completions", json=CHAT_BODY, headers={"authorization": "Bearer sk-other"}
        )
        bearer = await client.post(
            "/v1/chat/completions", json=CHAT_BODY, headers={"authorization": "Bearer sk-mock"}
        )
        azure = await client.post(
            "/v1/chat/completions", json=CHAT_BODY, headers={"api-key": "sk-mock"}
        )
    assert missing.status_code == 401
    assert wrong.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_api_key"
    assert bearer.status_code == 200
    assert azure.status_code == 200


@pytest.mark.asyncio
async def test_malformed_json_body_gets_openai_shaped_400() -> None:
    async with mock_client(MockSettings(script=parse_faults("503"))) as client:
        response = await client.post(
            "/v1/chat/completions",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        after = await client.post("/v1/chat/completions", json=CHAT_BODY)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "param", "code"}
    assert after.status_code == 503  # the rejected request did not consume the script


@pytest.mark.asyncio
async def test_azure_deployment_path_serves_chat_and_defaults_model_to_deployment() -> None:
    body = {"messages": CHAT_BODY["messages"]}
    async with mock_client() as client:
        chat = await client.post(
            "/openai/deployments/my-gpt/chat/completions?api-version=2024-06-01", json=body
        )
        embeddings = await client.post(
            "/openai/deployments/my-embed/embeddings?api-version=2024-06-01", json={"input": "x"}
        )
        completions = await client.post(
            "/openai/deployments/my-gpt/completions", json={"prompt": "x"}
        )
    assert chat.status_code == 200
    assert chat.json()["model"] == "my-gpt"
    assert embeddings.json()["model"] == "my-embed"
    assert completions.json()["object"] == "text_completion"


@pytest.mark.asyncio
async def test_routes_are_also_served_without_v1_prefix() -> None:
    async with mock_client() as client:
        chat = await client.post("/chat/completions", json=CHAT_BODY)
        completions = await client.post("/completions", json={"model": "m", "prompt": "p"})
        embeddings = await client.post("/embeddings", json={"model": "m", "input": "p"})
        models = await client.get("/models")
    assert chat.json()["object"] == "chat.completion"
    assert completions.json()["object"] == "text_completion"
    assert embeddings.json()["object"] == "list"
    assert models.json()["object"] == "list"


@pytest.mark.asyncio
async def test_unknown_path_gets_openai_shaped_404() -> None:
    async with mock_client() as client:
        response = await client.post("/v1/audio/speech", json={})
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


@pytest.mark.asyncio
async def test_embeddings_without_input_get_400() -> None:
    async with mock_client() as client:
        response = await client.post("/v1/embeddings", json={"model": "e"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input"


# ---------------------------------------------------------------------------
# Control endpoints
# ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_recorded_requests_show_method_path_query_headers_and_body() -> None:
    async with mock_client() as client:
        await client.post(
            "/openai/deployments/d1/chat/completions?api-version=2024-06-01",
            json={**CHAT_BODY, "temperature": 0.2},
            headers={"traceparent": "00-abc-def-01", "API-Key": "sk-forwarded"},
        )
        await client.post("/v1/chat/completions", content=b"oops")
        recorded = (await client.get("/_mock/requests")).json()
    assert len(recorded) == 2
    first, second = recorded
    assert first["method"] == "POST"
    assert first["path"] == "/openai/deployments/d1/chat/completions"
    assert first["query"] == "api-version=2024-06-01"
    assert first["headers"]["traceparent"] == "00-abc-def-01"
    assert first["headers"]["api-key"] == "sk-forwarded"
    assert first["body"] == {**CHAT_BODY, "temperature": 0.2}
    assert second["body"] is None


@pytest.mark.asyncio
async def test_recorded_requests_keep_only_the_last_hundred() -> None:
    async with mock_client() as client:
        for index in range(105):
            await client.post("/v1/embeddings", json={"model": "e", "input": str(index)})
        recorded = (await client.get("/_mock/requests")).json()
    assert len(recorded) == 100
    assert recorded[0]["body"]["input"] == "5"
    assert recorded[-1]["body"]["input"] == "104"


@pytest.mark.asyncio
async def test_script_endpoint_replaces_script_and_reset_clears_state() -> None:
    async with mock_client(MockSettings(script=parse_faults("500,500"))) as client:
        assert (await client.post("/v1/chat/completions", json=CHAT_BODY)).status_code == 500
        replaced = await client.post("/_mock/script", json={"script": "429,200", "loop": True})
        assert replaced.status_code == 200
        statuses = [
            (await client.post("/v1/chat/completions", json=CHAT_BODY)).status_code
            for _ in range(3)
        ]
        assert statuses == [429, 200, 429]
        assert (await client.post("/_mock/reset")).status_code == 200
        stats = (await client.get("/_mock/stats")).json()
        recorded = (await client.get("/_mock/requests")).json()
        after_reset = await client.post("/v1/chat/completions", json=CHAT_BODY)
    assert stats == {"requests": 0, "by_status": {}}
    assert recorded == []
    assert after_reset.status_code == 429  # script position restarted


@pytest.mark.asyncio
async def test_script_endpoint_rejects_bad_spec() -> None:
    async with mock_client() as client:
        response = await client.post("/_mock/script", json={"script": "503@nope=1"})
    assert response.status_code == 400
    assert "nope" in response.json()["error"]["message"]


@pytest.mark.asyncio
async def test_reset_reseeds_error_rate_rng() -> None:
    settings = MockSettings(error_rate=0.5, seed=7)
    async with mock_client(settings) as client:
        first = [
            (await client.post("/v1/chat/completions", json=CHAT_BODY)).status_code
            for _ in range(20)
        ]
        await client.post("/_mock/reset")
        second = [
            (await client.post("/v1/chat/completions", json=CHAT_BODY)).status_code
            for _ in range(20)
        ]
    assert first == second


# ---------------------------------------------------------------------------
# parse_faults, settings, CLI helpers
# ---------------------------------------------------------------------------


def test_parse_faults_reads_statuses_keywords_and_options() -> None:
    spec = "503, 429@retry_after=1 ,timeout,hang,garbage,200@latency_ms=50,200@cut_after_chunks=2"
    assert parse_faults(spec) == (
        Fault(status=503),
        Fault(status=429, retry_after=1.0),
        Fault(hang=True),
        Fault(hang=True),
        Fault(garbage=True),
        Fault(latency_ms=50.0),
        Fault(cut_after_chunks=2),
    )
    assert parse_faults("502@garbage=true@chunk_delay_ms=5@retry_after_ms=none") == (
        Fault(status=502, garbage=True, chunk_delay_ms=5.0),
    )
    assert parse_faults("  ") == ()


@pytest.mark.parametrize(
    "spec",
    [
        "abc",
        "503,,200",
        "99",
        "700",
        "200@latency_ms",
        "200@latency_ms=fast",
        "200@latency_ms=-1",
        "200@color=red",
        "200@status=503@status=504",
        "garbage@garbage=maybe",
        "200@cut_after_chunks=1.5",
    ],
)
def test_parse_faults_rejects_bad_input_with_value_error(spec: str) -> None:
    with pytest.raises(ValueError, match="fault #"):
        parse_faults(spec)


def test_settings_reject_out_of_range_values() -> None:
    with pytest.raises(ValueError, match="error_rate"):
        MockSettings(error_rate=1.5)
    with pytest.raises(ValueError, match="stream_chunks"):
        MockSettings(stream_chunks=0)
    with pytest.raises(ValueError, match="status"):
        Fault(status=42)


def test_settings_from_args_builds_settings_from_cli_options() -> None:
    parser = argparse.ArgumentParser()
    add_mock_arguments(parser)
    ns = parser.parse_args(
        [
            "--port",
            "9100",
            "--name",
            "primary",
            "--latency-ms",
            "5",
            "--error-rate",
            "0.25",
            "--error-status",
            "502",
            "--seed",
            "3",
            "--script",
            "503,200",
            "--loop",
            "--stream-chunks",
            "2",
            "--api-key",
            "sk-1",
        ]
    )
    assert (ns.host, ns.port) == ("127.0.0.1", 9100)
    assert settings_from_args(ns) == MockSettings(
        name="primary",
        latency_ms=5.0,
        error_rate=0.25,
        error_status=502,
        seed=3,
        script=(Fault(status=503), Fault()),
        loop_script=True,
        stream_chunks=2,
        api_key="sk-1",
    )
    defaults = parser.parse_args([])
    assert defaults.port == 9001
    assert settings_from_args(defaults) == MockSettings()


def test_add_mock_arguments_reports_bad_script_as_usage_error() -> None:
    parser = argparse.ArgumentParser()
    add_mock_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--script", "503@bogus=1"])


# ---------------------------------------------------------------------------
# Real HTTP server
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def running_server(settings: MockSettings) -> Iterator[str]:
    """Serve a mock app with uvicorn on a free 127.0.0.1 port in a background thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_mock_app(settings), log_level="warning", lifespan="off", loop="asyncio"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "mock server did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        assert not thread.is_alive(), "mock server did not shut down"


@pytest.mark.asyncio
async def test_real_server_cuts_streams_mid_body_and_hangs_until_client_timeout() -> None:
    with running_server(MockSettings(name="live")) as base_url:
        async with httpx.AsyncClient(base_url=base_url, trust_env=False) as client:
            received: list[str] = []
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                async with client.stream(
                    "POST",
                    "/v1/chat/completions",
                    json={**CHAT_BODY, "stream": True},
                    headers={"x-mock-fault": "200@cut_after_chunks=2@chunk_delay_ms=10"},
                ) as response:
                    assert response.status_code == 200
                    async for line in response.aiter_lines():
                        if line:
                            received.append(line)
            assert len(received) == 2
            assert "[DONE]" not in "".join(received)

            started = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                await client.post(
                    "/v1/chat/completions",
                    json=CHAT_BODY,
                    headers={"x-mock-fault": "hang"},
                    timeout=0.3,
                )
            assert time.monotonic() - started < 5

            healthy = await client.post("/v1/chat/completions", json=CHAT_BODY)
            assert healthy.json()["choices"][0]["message"]["content"] == "Hello from live"
            stats = (await client.get("/_mock/stats")).json()
    assert stats == {"requests": 3, "by_status": {"200": 2, "hang": 1}}
