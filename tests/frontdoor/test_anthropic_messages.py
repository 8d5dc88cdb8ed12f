"""The ``/v1/messages`` front door's translations: golden request, answer, stream and error
fixtures (each citing the reference page it follows), answers and events checked against
the ``anthropic`` SDK's own types and its stream accumulator, streams split anywhere, and
what is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic.types
import orjson
import pydantic
import pytest
from anthropic.lib.streaming._messages import accumulate_event

from relaygate.errors import GatewayError
from relaygate.frontdoor.anthropic_messages import (
    EventTranslator,
    anthropic_error,
    to_chat_request,
    to_message,
)

GOLDEN = Path(__file__).parent / "golden"
EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(anthropic.types.RawMessageStreamEvent)


def golden(name: str) -> Any:
    return json.loads((GOLDEN / name).read_text())


def events_of(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, payload) of each Anthropic event; every event has its ``event:`` line."""
    out = []
    for block in raw.split(b"\n\n"):
        lines = [line for line in block.split(b"\n") if line and not line.startswith(b":")]
        if lines:
            name, data = lines
            assert name.startswith(b"event: ") and data.startswith(b"data: ")
            out.append((name[7:].decode(), orjson.loads(data[6:])))
    return out


def test_the_request_golden_translates_exactly() -> None:
    case = golden("messages_request.json")
    assert to_chat_request(case["anthropic"]) == case["openai"]


def test_the_answer_golden_translates_and_matches_the_sdk() -> None:
    case = golden("chat_completion.json")
    message = to_message(case["openai"])
    assert message == case["anthropic"]
    anthropic.types.Message.model_validate(message)


def test_the_stream_golden_translates_and_the_sdk_accumulates_it() -> None:
    raw = (GOLDEN / "chat_stream.sse").read_bytes()
    translator = EventTranslator()
    out = translator.feed(raw) + translator.end()
    assert out == b"\n".join(
        line
        for line in (GOLDEN / "messages_stream.sse").read_bytes().split(b"\n")
        if not line.startswith(b":")
    )
    snapshot = None
    buffers: dict[int, bytes] = {}
    for name, payload in events_of(out):
        assert name == payload["type"]
        event = EVENTS.validate_python(payload)
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=buffers)
    assert snapshot is not None
    assert [block.type for block in snapshot.content] == ["text", "tool_use"]
    assert snapshot.content[0].text == "Let me look."  # type: ignore[union-attr]
    assert snapshot.content[1].input == {"q": "cat"}  # type: ignore[union-attr]
    assert snapshot.stop_reason == "tool_use"
    assert snapshot.usage.output_tokens == 17
    assert snapshot.usage.cache_read_input_tokens == 100


def test_the_stream_translates_the_same_however_it_is_split() -> None:
    raw = (GOLDEN / "chat_stream.sse").read_bytes()
    whole = EventTranslator()
    expected = whole.feed(raw) + whole.end()
    for cut in range(1, len(raw)):
        translator = EventTranslator()
        out = translator.feed(raw[:cut]) + translator.feed(raw[cut:]) + translator.end()
        assert out == expected, cut


def test_a_stream_that_breaks_ends_with_an_error_event() -> None:
    raw = (GOLDEN / "chat_stream.sse").read_bytes()
    head = raw[: raw.index(b"data: ", raw.index(b'"content":"look."'))]
    broken = head + b'data: {"error": {"message": "interrupted", "type": "upstream_error"}}\n\n'
    translator = EventTranslator()
    names = [name for name, _ in events_of(translator.feed(broken) + translator.end())]
    assert names[-1] == "error" and "message_stop" not in names
    ended = EventTranslator()
    names = [name for name, _ in events_of(ended.feed(head) + ended.end())]
    assert names[-1] == "error"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (529, "overloaded_error"),
        (422, "invalid_request_error"),
        (402, "billing_error"),
        (409, "invalid_request_error"),
        (504, "timeout_error"),
    ],
)
def test_errors_take_anthropics_shape(status: int, kind: str) -> None:
    body = orjson.dumps({"error": {"message": "why", "type": "x", "param": None, "code": None}})
    error = orjson.loads(anthropic_error(status, body))
    assert error == {"type": "error", "error": {"type": kind, "message": "why"}}
    if kind != "request_too_large":  # documented for 413, not in the SDK's error types
        anthropic.types.ErrorResponse.model_validate(error)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"model": "m", "max_tokens": 1, "messages": []}, "messages"),
        (
            {"model": "m", "max_tokens": 1, "messages": [{"role": "system", "content": "x"}]},
            "messages[0].role",
        ),
        (
            {
                "model": "m",
                "max_tokens": 1,
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            },
            "tools[0]",
        ),
        (
            {
                "model": "m",
                "max_tokens": 1,
                "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}],
            },
            "messages[0].content[0]",
        ),
    ],
)
def test_invalid_or_unsupported_requests_are_a_400_naming_the_field(
    body: dict[str, Any], param: str
) -> None:
    with pytest.raises(GatewayError) as refused:
        to_chat_request(body)
    assert refused.value.status == 400
    assert refused.value.param == param
