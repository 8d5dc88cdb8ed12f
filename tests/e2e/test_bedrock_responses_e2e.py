"""End to end through ``relaygate serve`` with the official openai SDK: Bedrock (Converse,
over the Bedrock wire-format simulator) in mixed-vendor fallback configs, and the
Responses API front door (translated through chat, and passed through natively).

The ``bedrock`` simulator checks each request's SigV4 ``authorization`` shape; ``openai`` is
an OpenAI-compatible simulator that also speaks ``/v1/responses`` natively.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.e2e.helpers_e2e import (
    MESSAGES,
    STREAMING,
    Mocks,
    MockUpstream,
    answer_of,
    chunk_text,
    config_header,
    openai_client,
    server_config,
)
from tests.servers import running_gateway

pytestmark = pytest.mark.gateway_process

MOCK_NAMES = ("bedrock", "openai")

MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def bedrock_target(mock: MockUpstream, **fields: Any) -> dict[str, Any]:
    """A ``bedrock`` target signing for the simulator with its own (fake) AWS keys."""
    return {
        "provider": "bedrock",
        "custom_host": mock.url,
        "aws_access_key_id": "AKIDE2ETEST",
        "aws_secret_access_key": "e2e-secret",
        "aws_region": "us-west-2",
        "override_params": {"model": MODEL_ID},
        **fields,
    }


def _configs(mocks: Mocks) -> dict[str, Any]:
    bedrock, compat = mocks["bedrock"], mocks["openai"]
    return {
        "fallback": {
            "strategy": {"mode": "fallback"},
            "targets": [bedrock_target(bedrock), compat.target(provider="together-ai")],
        },
        "bedrock": bedrock_target(bedrock),
        "responses-chat": compat.target(provider="together-ai"),
        "responses-native": compat.target(provider="openai"),
        "responses-fallback": {
            "strategy": {"mode": "fallback"},
            "targets": [bedrock_target(bedrock), compat.target(provider="together-ai")],
        },
    }


@pytest.fixture(scope="module")
def client(mocks: Mocks, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    """An openai SDK client of a relaygate process serving this module's configs."""
    config = server_config(_configs(mocks))
    with (
        running_gateway(tmp_path_factory.mktemp("bedrock"), config) as server,
        openai_client(f"{server.url}/v1") as sdk,
    ):
        yield sdk


def gateway_of(client: openai.OpenAI) -> str:
    return str(client.base_url)


@STREAMING
def test_bedrock_throttling_falls_back_to_an_openai_compatible_target_with_tools(
    client: openai.OpenAI, mocks: Mocks, stream: bool
) -> None:
    mocks["bedrock"].script("429")
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        tools=TOOLS,
        stream=stream,
        extra_headers=config_header("fallback"),
    )
    parsed = raw.parse()
    # Offered a tool, the OpenAI-compatible simulator answers with a call of it.
    if stream:
        names = [
            call.function.name
            for chunk in parsed  # type: ignore[union-attr]
            if chunk.choices
            for call in chunk.choices[0].delta.tool_calls or []
            if call.function and call.function.name
        ]
    else:
        calls = parsed.choices[0].message.tool_calls or []  # type: ignore[union-attr]
        names = [call.function.name for call in calls]  # type: ignore[union-attr]
    assert names == ["get_weather"]
    assert raw.headers["x-relaygate-route"] == "config.targets[0]:429>config.targets[1]:200"
    (sent,) = mocks["bedrock"].requests()
    action = "converse-stream" if stream else "converse"
    assert sent["path"] == f"/model/{MODEL_ID}/{action}"
    assert sent["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDE2ETEST/")
    assert sent["body"]["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"
    assert sent["body"]["messages"] == [
        {"role": "user", "content": [{"text": MESSAGES[0]["content"]}]}
    ]
    (forwarded,) = mocks["openai"].requests()
    assert forwarded["body"]["tools"] == TOOLS


@STREAMING
def test_bedrock_answers_a_tool_call_in_openai_shape(
    client: openai.OpenAI, mocks: Mocks, stream: bool
) -> None:
    headers = config_header("bedrock")
    if stream:
        chunks = list(
            client.chat.completions.create(
                model="any", messages=MESSAGES, tools=TOOLS, stream=True,
                stream_options={"include_usage": True}, extra_headers=headers,
            )
        )  # fmt: skip
        names = [
            call.function.name
            for chunk in chunks
            for choice in chunk.choices
            for call in choice.delta.tool_calls or []
            if call.function is not None and call.function.name
        ]
        arguments = "".join(
            call.function.arguments or ""
            for chunk in chunks
            for choice in chunk.choices
            for call in choice.delta.tool_calls or []
            if call.function is not None
        )
        finish = [c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason]
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    else:
        answer = client.chat.completions.create(
            model="any", messages=MESSAGES, tools=TOOLS, extra_headers=headers
        )
        calls = answer.choices[0].message.tool_calls or []
        names = [call.function.name for call in calls]  # type: ignore[union-attr]
        arguments = calls[0].function.arguments  # type: ignore[union-attr]
        finish = [answer.choices[0].finish_reason]
        assert answer.model == MODEL_ID
    assert names == ["get_weather"]
    assert arguments == '{"answer":"Hello from bedrock"}'
    assert finish == ["tool_calls"]


@STREAMING
def test_bedrock_503_falls_back(client: openai.OpenAI, mocks: Mocks, stream: bool) -> None:
    mocks["bedrock"].script("503")
    raw = client.chat.completions.with_raw_response.create(
        model="any", messages=MESSAGES, stream=stream, extra_headers=config_header("fallback")
    )
    parsed = raw.parse()
    text = chunk_text(parsed) if stream else parsed.choices[0].message.content  # type: ignore[union-attr,arg-type]
    assert text == answer_of("openai")
    assert raw.headers["x-relaygate-route"] == "config.targets[0]:503>config.targets[1]:200"


def test_a_bedrock_error_alone_is_an_openai_error_the_sdk_raises(
    client: openai.OpenAI, mocks: Mocks
) -> None:
    mocks["bedrock"].script("400")
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="any", messages=MESSAGES, extra_headers=config_header("bedrock")
        )
    assert caught.value.body == {
        "message": "bedrock ValidationException: mock bedrock: simulated ValidationException",
        "type": "invalid_request_error",
        "param": None,
        "code": "ValidationException",
    }


def test_a_model_stream_error_midway_is_recovered_by_the_fallback_target(
    client: openai.OpenAI, mocks: Mocks
) -> None:
    mocks["bedrock"].script("200@error_code=modelStreamErrorException")
    chunks = client.chat.completions.create(
        model="any", messages=MESSAGES, stream=True, extra_headers=config_header("fallback")
    )
    assert chunk_text(chunks) == answer_of("openai")
    assert mocks["openai"].hits() == 1


def test_a_model_stream_error_without_a_fallback_raises_in_the_sdk(
    client: openai.OpenAI, mocks: Mocks
) -> None:
    mocks["bedrock"].script("200@error_code=modelStreamErrorException")
    with pytest.raises(openai.APIError, match="modelStreamErrorException"):
        list(
            client.chat.completions.create(
                model="any", messages=MESSAGES, stream=True, extra_headers=config_header("bedrock")
            )
        )


# -- the Responses API front door -----------------------------------------------------------


def response_text(client: openai.OpenAI, config: str, *, stream: bool, **params: Any) -> str:
    """The output text of ``client.responses.create`` on ``config``."""
    headers = config_header(config)
    if not stream:
        answer = client.responses.create(model="gpt-4o-mini", extra_headers=headers, **params)
        assert answer.status == "completed"
        return answer.output_text
    events = list(
        client.responses.create(model="gpt-4o-mini", stream=True, extra_headers=headers, **params)
    )
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == events[-1].response.output_text
    return deltas


@STREAMING
def test_responses_are_translated_for_a_chat_only_target(
    client: openai.OpenAI, mocks: Mocks, stream: bool
) -> None:
    text = response_text(
        client, "responses-chat", stream=stream, input="Say hello.", instructions="Be brief."
    )
    assert text == answer_of("openai")
    (sent,) = mocks["openai"].requests()
    assert sent["path"] == "/v1/chat/completions"
    assert sent["body"]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello."},
    ]


@STREAMING
def test_responses_pass_through_to_a_target_that_speaks_them(
    client: openai.OpenAI, mocks: Mocks, stream: bool
) -> None:
    text = response_text(
        client, "responses-native", stream=stream, input="Say hello.", previous_response_id="resp_1"
    )
    assert text == answer_of("openai")
    (sent,) = mocks["openai"].requests()
    assert sent["path"] == "/v1/responses"
    assert sent["body"]["previous_response_id"] == "resp_1"


def test_previous_response_id_is_refused_for_a_chat_only_target(
    client: openai.OpenAI, mocks: Mocks
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="gpt-4o-mini",
            input="hi",
            previous_response_id="resp_1",
            extra_headers=config_header("responses-chat"),
        )
    assert caught.value.body["param"] == "previous_response_id"  # type: ignore[index]
    assert "does not speak the Responses API" in caught.value.body["message"]  # type: ignore[index]
    assert mocks["openai"].hits() == 0


@STREAMING
def test_responses_fall_back_from_throttled_bedrock_with_a_function_call(
    client: openai.OpenAI, mocks: Mocks, stream: bool
) -> None:
    mocks["bedrock"].script("429")
    tools: list[Any] = [
        {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    ]
    text = response_text(
        client,
        "responses-fallback",
        stream=stream,
        tools=tools,
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather",
             "arguments": '{"city": "Paris"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
        ],
    )  # fmt: skip
    assert text == answer_of("openai")
    (to_bedrock,) = mocks["bedrock"].requests()
    turns = to_bedrock["body"]["messages"]
    assert [turn["role"] for turn in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"][0]["toolUse"]["input"] == {"city": "Paris"}
    assert turns[2]["content"][0]["toolResult"]["toolUseId"] == "call_1"
    (to_compat,) = mocks["openai"].requests()
    assert to_compat["body"]["messages"][1]["tool_calls"][0]["id"] == "call_1"


@STREAMING
def test_responses_from_bedrock_carry_its_function_call(
    client: openai.OpenAI, stream: bool
) -> None:
    tools: list[Any] = [
        {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    ]
    headers = config_header("bedrock")
    if stream:
        events = list(
            client.responses.create(
                model="m", input="hi", tools=tools, stream=True, extra_headers=headers
            )
        )
        output = events[-1].response.output  # type: ignore[union-attr]
    else:
        output = client.responses.create(
            model="m", input="hi", tools=tools, extra_headers=headers
        ).output
    (call,) = output
    assert call.type == "function_call"
    assert (call.name, call.arguments) == ("get_weather", '{"answer":"Hello from bedrock"}')
