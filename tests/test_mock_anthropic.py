"""The fault simulator's Anthropic wire format (``POST /v1/messages``), driven by the official
``anthropic`` SDK: successes, tool calls, errors and 529 overload in Anthropic's shapes, and
the stream faults (cut, stall, garbage, latency) behaving as on the OpenAI routes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import httpx2
import pytest

from relaygate.mock import MockSettings, create_mock_app
from tests.servers import RunningServer, serve_in_thread

ASK: dict[str, Any] = {
    "model": "claude-test",
    "max_tokens": 32,
    "messages": [{"role": "user", "content": "Tell me something."}],
}
KEY = "sk-ant-mock"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    settings = MockSettings(name="claude", api_key=KEY, hang_s=2.0)
    with serve_in_thread(create_mock_app(settings)) as running:
        yield running


def client(server: RunningServer, timeout: Any = 30) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key=KEY, max_retries=0, timeout=timeout)


def fault(spec: str) -> dict[str, Any]:
    return {**ASK, "extra_headers": {"x-mock-fault": spec}}


def test_a_success_is_a_message(server: RunningServer) -> None:
    message = client(server).messages.create(**ASK)
    assert message.type == "message" and message.role == "assistant"
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [
        ("text", "Hello from claude")
    ]
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens == 3


def test_tools_offered_are_called_then_a_tool_result_gets_text(server: RunningServer) -> None:
    tools: Any = [{"name": "lookup", "input_schema": {"type": "object"}}]
    sdk = client(server)
    called = sdk.messages.create(**ASK, tools=tools)
    (block,) = called.content
    assert block.type == "tool_use" and block.input == {"text": "Hello from claude"}
    assert called.stop_reason == "tool_use"
    with sdk.messages.stream(**ASK, tools=tools) as events:
        streamed = events.get_final_message()
    assert [b.type for b in streamed.content] == ["tool_use"]
    answered = sdk.messages.create(
        **{
            **ASK,
            "messages": [
                *ASK["messages"],
                {"role": "assistant", "content": [b.model_dump() for b in called.content]},
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": block.id, "content": "found"}
                    ],
                },
            ],
        },
        tools=tools,
    )
    assert answered.stop_reason == "end_turn"


def test_a_stream_is_anthropics_events(server: RunningServer) -> None:
    with client(server).messages.stream(**ASK) as events:
        kinds = [event.type for event in events]
        final = events.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "message_delta" in kinds
    assert final.content[0].text == "Hello from claude"  # type: ignore[union-attr]
    assert final.usage.output_tokens == 3


@pytest.mark.parametrize(
    ("spec", "status", "kind", "exception"),
    [
        ("529", 529, "overloaded_error", anthropic.InternalServerError),
        ("429", 429, "rate_limit_error", anthropic.RateLimitError),
        ("503", 503, "overloaded_error", anthropic.InternalServerError),
        ("400", 400, "invalid_request_error", anthropic.BadRequestError),
    ],
)
def test_errors_are_anthropics_shape_with_the_scripted_status(
    server: RunningServer, spec: str, status: int, kind: str, exception: type[Exception]
) -> None:
    with pytest.raises(exception) as caught:
        client(server).messages.create(**fault(spec))
    assert isinstance(caught.value, anthropic.APIStatusError)
    assert caught.value.status_code == status
    assert caught.value.body == {
        "type": "error",
        "error": {"type": kind, "message": f"mock claude: simulated {spec}"},
    }


def test_the_key_is_checked_as_x_api_key(server: RunningServer) -> None:
    wrong = anthropic.Anthropic(base_url=server.url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        wrong.messages.create(**ASK)


def test_a_cut_stream_is_cut(server: RunningServer) -> None:
    with (
        pytest.raises((anthropic.APIConnectionError, httpx2.RemoteProtocolError)),
        client(server).messages.stream(**fault("200@cut_after_chunks=2")) as events,
    ):
        list(events)


def test_a_stalled_stream_stalls(server: RunningServer) -> None:
    stalled = client(server, timeout=httpx2.Timeout(30, read=0.5))
    with (
        pytest.raises((anthropic.APITimeoutError, httpx2.ReadTimeout)),
        stalled.messages.stream(**fault("200@stall_after_chunks=2")) as events,
    ):
        list(events)


def test_garbage_stays_garbage(server: RunningServer) -> None:
    answer = httpx.post(
        f"{server.url}/v1/messages",
        json=ASK,
        headers={"x-api-key": KEY, "x-mock-fault": "garbage"},
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.text == "<html>upstream exploded</html>"


def test_an_invalid_messages_request_is_a_400_in_anthropics_shape(server: RunningServer) -> None:
    answer = httpx.post(
        f"{server.url}/v1/messages", json={"model": "m"}, headers={"x-api-key": KEY}
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"


def test_the_request_is_recorded_as_it_came(server: RunningServer) -> None:
    httpx.post(f"{server.url}/_mock/reset")
    client(server).messages.create(**ASK)
    (recorded,) = httpx.get(f"{server.url}/_mock/requests").json()
    assert recorded["path"] == "/v1/messages"
    assert recorded["body"]["max_tokens"] == 32
    assert "x-api-key" in recorded["headers"] or "authorization" in recorded["headers"]


def test_count_tokens_counts_the_words_of_the_system_and_message_texts(
    server: RunningServer,
) -> None:
    counted = client(server).messages.count_tokens(
        model="claude-x",
        system="Be brief.",
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "one two three"}]},
            {"role": "assistant", "content": "four"},
        ],
    )
    assert counted.input_tokens == 2 + 3 + 1


def test_count_tokens_answers_scripted_errors_and_a_wrong_key_in_anthropics_shape(
    server: RunningServer,
) -> None:
    httpx.post(f"{server.url}/_mock/script", json={"script": "429"}, timeout=30)
    ask: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(anthropic.RateLimitError) as limited:
        client(server).messages.count_tokens(**ask)
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    wrong = anthropic.Anthropic(base_url=server.url, api_key="nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        wrong.messages.count_tokens(**ask)
