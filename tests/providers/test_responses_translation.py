"""The Responses API over chat: request translation (golden fixture), stateful requests
refused, answers and streaming events held to the openai SDK's own types."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import CompletionCreateParams
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from relaygate.errors import GatewayError
from relaygate.providers.responses.answer import from_chat
from relaygate.providers.responses.events import ResponsesEvents
from relaygate.providers.responses.request import to_chat
from relaygate.sse import carries_content
from tests.fakes import chat_payload

GOLDEN: dict[str, Any] = json.loads(
    (Path(__file__).parent / "fixtures" / "responses" / "input_items.json").read_text()
)
EVENT = TypeAdapter(ResponseStreamEvent)


def test_input_items_become_the_golden_chat_request() -> None:
    chat = to_chat(GOLDEN["responses_request"], "together-ai")
    assert chat == GOLDEN["chat_request"]
    TypeAdapter(CompletionCreateParams).validate_python(chat)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("previous_response_id", "resp_123"),
        ("conversation", "conv_1"),
        ("store", True),
        ("background", True),
        ("prompt", {"id": "pmpt_1"}),
    ],
)
def test_stateful_requests_are_refused_with_400(field: str, value: Any) -> None:
    with pytest.raises(GatewayError) as caught:
        to_chat({"model": "m", "input": "hi", field: value}, "bedrock")
    error = caught.value
    assert (error.status, error.code, error.param) == (400, "unsupported_parameter", field)
    assert "'bedrock' does not speak the Responses API" in error.message
    assert "openai, azure-openai" in error.message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools[0]"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0]",
        ),
        ({"input": []}, "input"),
    ],
)
def test_what_chat_cannot_carry_is_refused_with_400(body: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as caught:
        to_chat({"model": "m", "input": "hi", **body}, "groq")
    assert (caught.value.status, caught.value.param) == (400, param)


def test_store_false_and_a_plain_string_input_are_stateless() -> None:
    chat = to_chat({"model": "m", "input": "hi", "store": False}, "groq")
    assert chat == {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_a_chat_completion_becomes_a_response_the_sdk_reads() -> None:
    completion = chat_payload("Hello there")
    completion["choices"][0]["message"]["tool_calls"] = [
        {"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    ]
    request = {"model": "gpt-4o-mini", "input": "hi", "instructions": "be nice"}
    answer = Response.model_validate(from_chat(completion, request, created=5))
    assert answer.output_text == "Hello there"
    assert answer.status == "completed"
    assert answer.instructions == "be nice"
    call = answer.output[1]
    assert call.type == "function_call"
    assert (call.call_id, call.name, call.arguments) == ("call_9", "f", "{}")


def test_a_length_finish_is_an_incomplete_response() -> None:
    completion = chat_payload("cut")
    completion["choices"][0]["finish_reason"] = "length"
    answer = Response.model_validate(from_chat(completion, {"input": "x"}, created=5))
    assert answer.status == "incomplete"
    assert answer.incomplete_details is not None
    assert answer.incomplete_details.reason == "max_output_tokens"


def chat_stream() -> bytes:
    """A chat stream with text, a tool call split in pieces, a finish and usage."""
    base = {"id": "chatcmpl-7", "object": "chat.completion.chunk", "created": 1, "model": "m"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                               "function": {"name": "f", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}),
        chunk({}, "tool_calls"),
        {**base, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4,
                                          "total_tokens": 7}},
    ]  # fmt: skip
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


STREAM = chat_stream()


def translate(pieces: list[bytes]) -> bytes:
    events = ResponsesEvents({"model": "m", "input": "hi"}, created=1)
    return b"".join(events.feed(p) for p in pieces) + events.end()


def parsed_events(raw: bytes) -> list[Any]:
    out = []
    for block in raw.strip().split(b"\n\n"):
        event_line, data_line = block.split(b"\n")
        payload = orjson.loads(data_line.removeprefix(b"data: "))
        assert event_line == b"event: " + payload["type"].encode()
        out.append(EVENT.validate_python(payload))
    return out


def test_a_chat_stream_becomes_responses_events_the_sdk_reads() -> None:
    events = parsed_events(translate([STREAM]))
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response
    assert final.output_text == "Hello"
    assert final.output[1].arguments == '{"a": 1}'
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (3, 4)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=10))
def test_a_chat_stream_cut_anywhere_gives_the_same_events(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    pieces = [STREAM[a:b] for a, b in itertools.pairwise(bounds)]
    assert translate(pieces) == translate([STREAM])


def test_an_in_band_error_is_passed_on_and_nothing_follows() -> None:
    events = ResponsesEvents({"input": "x"}, created=1)
    error = b'data: {"error": {"message": "boom", "type": "upstream_error"}}\n\n'
    assert events.feed(error) == error
    assert events.end() == b""


def test_a_chat_stream_that_ends_without_a_finish_is_broken() -> None:
    events = ResponsesEvents({"input": "x"}, created=1)
    events.feed(STREAM.split(b"\n\n")[1] + b"\n\n")
    with pytest.raises(ValueError, match="before its finish reason"):
        events.end()


def test_only_the_opening_of_a_responses_stream_waits_for_the_first_token() -> None:
    blocks = translate([STREAM]).strip().split(b"\n\n")
    opening = [carries_content(block + b"\n") for block in blocks[:4]]
    assert opening == [False, False, False, False]
    assert carries_content(blocks[4] + b"\n")  # the first output_text.delta
    assert carries_content(blocks[-1] + b"\n")  # response.completed
