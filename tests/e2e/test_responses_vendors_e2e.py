"""The Responses API over every vendor, end to end through ``relaygate serve`` with the
official openai SDK's ``client.responses.create``.

The fault simulators answer in Anthropic's, Gemini's and Cohere's own wire formats; the
Responses request is translated to chat, then to the vendor's format, and the vendor's
answer (body or stream) back to chat and then to a ``response`` object or Responses events.
Cross-vendor fallback on ``/v1/responses``: Anthropic 529 → an OpenAI-compatible target,
and an OpenAI target (speaking Responses natively) 503 → Anthropic.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.e2e.helpers_e2e import (
    STREAMING,
    Mocks,
    MockUpstream,
    answer_of,
    config_header,
    openai_client,
    server_config,
)
from tests.servers import running_gateway

pytestmark = pytest.mark.gateway_process

MOCK_NAMES = ("claude", "gem", "coh", "gpt")

TOOLS: list[Any] = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]

TOOL_TURN: list[Any] = [
    {"role": "user", "content": "Weather in Paris?"},
    {"type": "function_call", "call_id": "call_1", "name": "get_weather",
     "arguments": '{"city": "Paris"}'},
    {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
]  # fmt: skip


def anthropic_target(mock: MockUpstream) -> dict[str, Any]:
    """An ``anthropic`` target calling ``mock`` in the Messages API's format."""
    return mock.target(name="claude", provider="anthropic", override_params={"model": "claude-x"})


def gemini_target(mock: MockUpstream) -> dict[str, Any]:
    """A ``google`` target calling ``mock`` in Gemini's format."""
    return mock.target(
        name="gemini",
        provider="google",
        custom_host=f"{mock.url}/v1beta",
        override_params={"model": "gemini-2.0-flash"},
    )


def cohere_target(mock: MockUpstream) -> dict[str, Any]:
    """A ``cohere`` target calling ``mock`` in Cohere's v2 format."""
    return mock.target(
        name="cohere",
        provider="cohere",
        custom_host=f"{mock.url}/v2",
        override_params={"model": "command-a-03-2025"},
    )


VENDORS = {
    "claude": ("anthropic", "/v1/messages"),
    "gem": ("gemini", "/v1beta/models/gemini-2.0-flash:"),
    "coh": ("cohere", "/v2/chat"),
}
"""Mock name → (config name, the path prefix the vendor's API is called at)."""

EACH_VENDOR = pytest.mark.parametrize("mock", sorted(VENDORS))


def _configs(mocks: Mocks) -> dict[str, Any]:
    claude, gpt = mocks["claude"], mocks["gpt"]
    return {
        "anthropic": anthropic_target(claude),
        "gemini": gemini_target(mocks["gem"]),
        "cohere": cohere_target(mocks["coh"]),
        "claude-first": {
            "strategy": {"mode": "fallback"},
            "targets": [anthropic_target(claude), gpt.target(name="gpt", provider="together-ai")],
        },
        "native-first": {
            "strategy": {"mode": "fallback"},
            "targets": [gpt.target(name="gpt", provider="openai"), anthropic_target(claude)],
        },
        "native-last": {
            "strategy": {"mode": "fallback"},
            "targets": [anthropic_target(claude), gpt.target(name="gpt", provider="openai")],
        },
    }


@pytest.fixture(scope="module")
def client(mocks: Mocks, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    """An openai SDK client of a relaygate process serving this module's configs."""
    config = server_config(_configs(mocks))
    with (
        running_gateway(tmp_path_factory.mktemp("responses"), config) as server,
        openai_client(f"{server.url}/v1") as sdk,
    ):
        yield sdk


def respond(client: openai.OpenAI, config: str, *, stream: bool, **params: Any) -> Any:
    """The final ``response`` of ``client.responses.create`` on ``config``; a stream's
    events are checked to tell the same story as its last one."""
    headers = config_header(config)
    if not stream:
        return client.responses.create(model="any", extra_headers=headers, **params)
    events = list(
        client.responses.create(model="any", stream=True, extra_headers=headers, **params)
    )
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response  # type: ignore[union-attr]
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == final.output_text
    arguments = "".join(
        e.delta for e in events if e.type == "response.function_call_arguments.delta"
    )
    assert arguments == "".join(i.arguments for i in final.output if i.type == "function_call")
    return final


@EACH_VENDOR
@STREAMING
def test_each_vendor_answers_a_responses_request_with_text(
    client: openai.OpenAI, mocks: Mocks, mock: str, stream: bool
) -> None:
    config, path = VENDORS[mock]
    answer = respond(client, config, stream=stream, instructions="Be brief.", input="Say hello.")
    assert answer.status == "completed"
    assert answer.output_text == answer_of(mock)
    assert answer.usage is not None and answer.usage.output_tokens > 0
    (sent,) = mocks[mock].requests()
    assert sent["path"].startswith(path)
    assert "input" not in sent["body"] and "instructions" not in sent["body"]
    assert "Be brief." in str(sent["body"]) and "Say hello." in str(sent["body"])


@EACH_VENDOR
@STREAMING
def test_each_vendor_answers_with_a_function_call_item(
    client: openai.OpenAI, mocks: Mocks, mock: str, stream: bool
) -> None:
    config, _ = VENDORS[mock]
    answer = respond(client, config, stream=stream, input="Weather in Paris?", tools=TOOLS)
    (call,) = answer.output
    assert call.type == "function_call"
    assert call.name == "get_weather"
    # Each vendor simulator fills the arguments its own way, naming itself.
    arguments = json.loads(call.arguments)
    assert isinstance(arguments, dict) and mock in call.arguments
    assert call.call_id


@EACH_VENDOR
@STREAMING
def test_each_vendor_takes_a_function_call_output_and_answers_text(
    client: openai.OpenAI, mocks: Mocks, mock: str, stream: bool
) -> None:
    config, _ = VENDORS[mock]
    answer = respond(client, config, stream=stream, input=TOOL_TURN, tools=TOOLS)
    assert answer.output_text == answer_of(mock)
    (sent,) = mocks[mock].requests()
    # The call and its result reached the vendor in its own format, with the call's id
    # (Gemini pairs them by name).
    wire = str(sent["body"])
    assert "get_weather" in wire and "18C" in wire
    if mock != "gem":
        assert "call_1" in wire


@STREAMING
def test_an_overloaded_anthropic_falls_back_to_an_openai_compatible_target(
    client: openai.OpenAI, mocks: Mocks, stream: bool
) -> None:
    mocks["claude"].script("529")
    answer = respond(client, "claude-first", stream=stream, input=TOOL_TURN, tools=TOOLS)
    assert answer.output_text == answer_of("gpt")
    (to_claude,) = mocks["claude"].requests()
    assert to_claude["path"] == "/v1/messages"
    (to_gpt,) = mocks["gpt"].requests()
    assert to_gpt["path"] == "/v1/chat/completions"
    assert to_gpt["body"]["messages"][1]["tool_calls"][0]["id"] == "call_1"


@STREAMING
def test_a_failing_native_target_falls_back_to_anthropic(
    client: openai.OpenAI, mocks: Mocks, stream: bool
) -> None:
    mocks["gpt"].script("503")
    raw = client.responses.with_raw_response.create(
        model="any",
        input="Say hello.",
        stream=stream,
        extra_headers=config_header("native-first"),
    )
    assert raw.headers["x-relaygate-route"] == "config.targets[0]:503>config.targets[1]:200"
    parsed: Any = raw.parse()
    if stream:
        events = list(parsed)
        assert events[-1].type == "response.completed"
        parsed = events[-1].response
    assert parsed.output_text == answer_of("claude")
    (to_gpt,) = mocks["gpt"].requests()
    assert to_gpt["path"] == "/v1/responses"
    (to_claude,) = mocks["claude"].requests()
    assert to_claude["path"] == "/v1/messages"


@EACH_VENDOR
def test_a_stateful_request_is_a_clear_400_from_a_vendor_alone(
    client: openai.OpenAI, mocks: Mocks, mock: str
) -> None:
    config, _ = VENDORS[mock]
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="any",
            input="hi",
            previous_response_id="resp_1",
            extra_headers=config_header(config),
        )
    body: Any = caught.value.body
    assert body["param"] == "previous_response_id"
    assert "does not speak the Responses API" in body["message"]
    assert mocks[mock].hits() == 0


def test_a_stateful_request_moves_on_from_anthropic_to_a_target_speaking_responses(
    client: openai.OpenAI, mocks: Mocks
) -> None:
    raw = client.responses.with_raw_response.create(
        model="any",
        input="hi",
        previous_response_id="resp_1",
        extra_headers=config_header("native-last"),
    )
    assert raw.headers["x-relaygate-route"] == "config.targets[0]:400>config.targets[1]:200"
    assert raw.parse().output_text == answer_of("gpt")
    assert mocks["claude"].hits() == 0
    (to_gpt,) = mocks["gpt"].requests()
    assert to_gpt["body"]["previous_response_id"] == "resp_1"
