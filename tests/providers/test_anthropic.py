"""The ``anthropic`` provider: golden request, answer, stream and error translations (each
fixture cites the API reference page it follows; answers and events are also checked
against the ``anthropic`` and ``openai`` SDKs' own types), streams split anywhere, strict
mode, and the handler producing the pipeline's one stream type from Anthropic events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic.types
import httpx
import openai.types.chat
import orjson
import pydantic
import pytest
from structlog.testing import capture_logs

from relaygate.config.model import Target
from relaygate.errors import GatewayError
from relaygate.exchange import GatewayResponse
from relaygate.providers.anthropic import (
    DEFAULT_MAX_TOKENS,
    STRICT_HEADER,
    openai_error,
    to_chat_completion,
    to_messages_request,
)
from relaygate.providers.anthropic_stream import FINISH_REASONS, ChunkTranslator
from relaygate.providers.client import StreamInterrupted
from relaygate.providers.handler import ProviderHandler
from relaygate.providers.registry import default_registry
from relaygate.strategies.backoff import retry_status
from relaygate.strategies.triggers import should_fall_back
from tests.fakes import ChunkStream, RecordingTransport, gateway_request, sse_response, target

GOLDEN = Path(__file__).parent / "golden" / "anthropic"
EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(anthropic.types.RawMessageStreamEvent)
TARGET = target(
    "config", "anthropic", api_key="sk-ant-test", custom_host="http://claude.invalid/v1"
)


OVERLOADED_EVENT = (
    b"event: error\n"
    b'data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
)


def golden(name: str) -> Any:
    return json.loads((GOLDEN / name).read_text())


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line[5:]) for line in raw.split(b"\n") if line.startswith(b"data:")]


def chunks_of(out: bytes) -> list[dict[str, Any]]:
    data = [line[6:] for line in out.split(b"\n") if line.startswith(b"data: ")]
    assert data[-1] == b"[DONE]"
    return [orjson.loads(item) for item in data[:-1]]


def test_the_request_golden_translates_exactly() -> None:
    case = golden("request_tools_images.json")
    wire, dropped = to_messages_request(case["openai"])
    assert wire == case["anthropic"]
    assert dropped == []


def test_max_tokens_defaults_and_max_completion_tokens_wins() -> None:
    messages = [{"role": "user", "content": "hi"}]
    assert to_messages_request({"model": "m", "messages": messages})[0]["max_tokens"] == (
        DEFAULT_MAX_TOKENS
    )
    both = {"model": "m", "messages": messages, "max_tokens": 10, "max_completion_tokens": 20}
    assert to_messages_request(both)[0]["max_tokens"] == 20


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        ({"type": "function", "function": {"name": "f"}}, None, {"type": "tool", "name": "f"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (None, None, None),
    ],
)
def test_tool_choice_maps(choice: Any, parallel: Any, expected: Any) -> None:
    body: dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f"}}],
    }
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    assert to_messages_request(body)[0].get("tool_choice") == expected


def test_unsupported_parameters_are_dropped_or_refused_when_strict() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "seed": 7,
        "frequency_penalty": 0.5,
    }
    wire, dropped = to_messages_request(body)
    assert dropped == ["frequency_penalty", "seed"]
    assert "seed" not in wire and "frequency_penalty" not in wire
    with pytest.raises(GatewayError) as refused:
        to_messages_request(body, strict=True)
    assert refused.value.status == 400
    assert refused.value.code == "unsupported_parameter"
    assert refused.value.param == "frequency_penalty"


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ({"role": "user", "content": [{"type": "input_audio"}]}, "messages[0].content[0]"),
        ({"role": "function", "content": "x"}, "messages[0].role"),
        (
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]},
            "messages[0].content[0]",
        ),
    ],
)
def test_what_cannot_be_translated_is_a_400_naming_the_field(
    message: dict[str, Any], param: str
) -> None:
    with pytest.raises(GatewayError) as refused:
        to_messages_request({"model": "m", "messages": [message]})
    assert refused.value.status == 400
    assert refused.value.param == param


def test_the_message_golden_translates_and_both_sides_match_the_sdks() -> None:
    case = golden("message_tool_use.json")
    anthropic.types.Message.model_validate(case["anthropic"])
    completion = to_chat_completion(case["anthropic"], created=1700000000)
    assert completion == case["openai"]
    parsed = openai.types.chat.ChatCompletion.model_validate(completion)
    assert parsed.choices[0].message.tool_calls is not None


@pytest.mark.parametrize(("stop", "finish"), sorted(FINISH_REASONS.items()))
def test_every_stop_reason_maps_to_a_finish_reason_openai_knows(stop: str, finish: str) -> None:
    message = {"type": "message", "content": [], "stop_reason": stop, "usage": {}}
    completion = to_chat_completion(message, created=0)
    assert completion["choices"][0]["finish_reason"] == finish
    choice = openai.types.chat.chat_completion.Choice.model_validate(completion["choices"][0])
    assert choice.finish_reason == finish


def test_a_body_that_is_not_a_message_is_refused() -> None:
    with pytest.raises(ValueError, match="not an Anthropic message"):
        to_chat_completion({"type": "error"}, created=0)


def test_the_error_golden_translates() -> None:
    case = golden("error_overloaded.json")
    anthropic.types.ErrorResponse.model_validate(case["anthropic"])
    assert (
        orjson.loads(openai_error(case["status"], orjson.dumps(case["anthropic"])))
        == (case["openai"])
    )


def test_a_body_that_is_not_anthropics_error_still_gets_openais_shape() -> None:
    error = orjson.loads(openai_error(529, b"<html>busy</html>"))["error"]
    assert error["type"] == "overloaded_error"
    assert "529" in error["message"]


def test_the_stream_golden_translates_and_both_sides_match_the_sdks() -> None:
    raw = (GOLDEN / "stream_text_and_tool.sse").read_bytes()
    for event in sse_events(raw):
        if event["type"] != "ping":
            EVENTS.validate_python(event)
    case = golden("stream_text_and_tool.chunks.json")
    translator = ChunkTranslator(case["created"])
    chunks = chunks_of(translator.feed(raw) + translator.end())
    assert chunks == case["chunks"]
    for chunk in chunks:
        openai.types.chat.ChatCompletionChunk.model_validate(chunk)


def test_the_stream_translates_the_same_however_it_is_split() -> None:
    raw = (GOLDEN / "stream_text_and_tool.sse").read_bytes()
    whole = ChunkTranslator(0)
    expected = whole.feed(raw) + whole.end()
    for cut in range(1, len(raw)):
        translator = ChunkTranslator(0)
        out = translator.feed(raw[:cut]) + translator.feed(raw[cut:]) + translator.end()
        assert out == expected, cut
    bytewise = ChunkTranslator(0)
    out = b"".join(bytewise.feed(raw[i : i + 1]) for i in range(len(raw))) + bytewise.end()
    assert out == expected


def test_crlf_line_ends_translate_too() -> None:
    raw = (GOLDEN / "stream_text_and_tool.sse").read_bytes()
    lf, crlf = ChunkTranslator(0), ChunkTranslator(0)
    expected = lf.feed(raw) + lf.end()
    assert crlf.feed(raw.replace(b"\n", b"\r\n")) + crlf.end() == expected


def test_an_error_event_or_a_stream_without_message_stop_is_a_break() -> None:
    raw = (GOLDEN / "stream_text_and_tool.sse").read_bytes()
    head = raw[: raw.index(b"event: content_block_stop")]
    translator = ChunkTranslator(0)
    translator.feed(head)
    with pytest.raises(StreamInterrupted, match="before message_stop"):
        translator.end()
    anthropic.types.ErrorResponse.model_validate(sse_events(OVERLOADED_EVENT)[0])
    with pytest.raises(StreamInterrupted, match="overloaded_error"):
        ChunkTranslator(0).feed(head + OVERLOADED_EVENT)


def _sse(raw: bytes, *, pieces: int = 7, error: Exception | None = None) -> httpx.Response:
    """A streamed answer of ``raw`` cut into ``pieces`` reads at arbitrary points."""
    step = max(len(raw) // pieces, 1)
    chunks = [raw[i : i + step] for i in range(0, len(raw), step)]
    return sse_response(ChunkStream(chunks, error=error))


async def test_the_handler_sends_the_messages_api_with_anthropics_headers() -> None:
    message = golden("message_tool_use.json")["anthropic"]
    transport = RecordingTransport(
        httpx.Response(200, headers={"content-type": "application/json"}, json=message)
    )
    handler = ProviderHandler(default_registry(), transport.client())
    body = {"model": "claude-x", "messages": [{"role": "user", "content": "hi"}], "seed": 1}
    response = await handler(gateway_request(body, target=TARGET))
    (sent,) = transport.requests
    assert str(sent.url) == "http://claude.invalid/v1/messages"
    assert sent.headers["x-api-key"] == "sk-ant-test"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert "seed" not in orjson.loads(sent.content)
    assert response.status == 200
    assert response.body is not None
    assert orjson.loads(response.body)["choices"][0]["finish_reason"] == "tool_calls"


async def test_strict_compliance_refuses_with_a_400_before_sending() -> None:
    transport = RecordingTransport()
    handler = ProviderHandler(default_registry(), transport.client())
    body = {"model": "claude-x", "messages": [{"role": "user", "content": "hi"}], "seed": 1}
    response = await handler(gateway_request(body, target=TARGET, headers={STRICT_HEADER: "true"}))
    assert response.status == 400
    assert response.body is not None
    assert orjson.loads(response.body)["error"]["code"] == "unsupported_parameter"
    assert transport.requests == []


def test_dropping_a_parameter_logs_a_warning_naming_it() -> None:
    from relaygate.providers.anthropic import Anthropic

    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "logprobs": True}
    with capture_logs() as logs:
        Anthropic().build_request(gateway_request(body, target=TARGET), TARGET, {})
    (warning,) = [entry for entry in logs if entry["event"] == "provider_parameters_dropped"]
    assert warning["log_level"] == "warning"
    assert warning["parameters"] == "logprobs"


async def test_an_anthropic_error_answer_keeps_its_status_in_openais_shape() -> None:
    transport = RecordingTransport(
        httpx.Response(
            529,
            json={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        )
    )
    handler = ProviderHandler(default_registry(), transport.client())
    body = {"model": "claude-x", "messages": [{"role": "user", "content": "hi"}]}
    response = await handler(gateway_request(body, target=TARGET))
    assert response.status == 529
    assert response.failure is None
    assert response.body is not None
    assert orjson.loads(response.body)["error"]["type"] == "overloaded_error"


async def test_the_handler_answers_the_pipelines_stream_type_with_its_facts() -> None:
    raw = (GOLDEN / "stream_text_and_tool.sse").read_bytes()
    transport = RecordingTransport(_sse(raw))
    handler = ProviderHandler(default_registry(), transport.client())
    body = {"model": "claude-x", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    response: GatewayResponse = await handler(gateway_request(body, target=TARGET, stream=True))
    assert response.stream is not None
    out = b"".join([chunk async for chunk in response.stream])
    stream = response.stream
    assert stream.failure is None
    assert stream.usage == (582, 89)
    assert stream.finish_reasons == ["tool_calls"]
    assert stream.model == "claude-sonnet-4-5"
    assert stream.response_id == "msg_014p7gG3wDgGV9EUtLvnow3U"
    assert out.endswith(b"data: [DONE]\n\n")


async def test_a_stream_that_errors_before_its_first_chunk_is_a_failed_attempt() -> None:
    transport = RecordingTransport(_sse(OVERLOADED_EVENT))
    handler = ProviderHandler(default_registry(), transport.client())
    body = {"model": "claude-x", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    response = await handler(gateway_request(body, target=TARGET, stream=True))
    assert response.status == 502
    assert response.failure == "stream_error"
    assert response.upstream_status == 200


@pytest.mark.parametrize("codes", [None, frozenset({503})])
def test_529_falls_back_and_is_retried_as_a_503(codes: frozenset[int] | None) -> None:
    assert should_fall_back(529, None, codes)
    assert retry_status(529, None) == 503


async def test_a_stream_cut_midway_breaks_with_an_error_event_and_no_done() -> None:
    raw = (GOLDEN / "stream_text_and_tool.sse").read_bytes()
    head = raw[: raw.index(b"event: content_block_stop")]
    transport = RecordingTransport(_sse(head, error=httpx.ReadError("connection reset")))
    handler = ProviderHandler(default_registry(), transport.client())
    body = {"model": "claude-x", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    response = await handler(gateway_request(body, target=TARGET, stream=True))
    assert response.stream is not None
    out = b"".join([chunk async for chunk in response.stream])
    assert response.stream.failure == "stream_error"
    assert b"Okay, let me check" in out
    assert b"[DONE]" not in out
    assert b'"error"' in out.rsplit(b"data: ", 1)[-1]


@pytest.mark.parametrize(
    ("setting", "header", "refused"),
    [(True, None, True), (False, "true", False), (None, "true", True), (None, None, False)],
)
def test_strict_comes_from_the_target_setting_else_the_header(
    setting: bool | None, header: str | None, refused: bool
) -> None:
    from relaygate.config.tree import compile_config
    from relaygate.providers.anthropic import strict_compliance

    raw: dict[str, Any] = {"provider": "anthropic", "api_key": "sk-ant"}
    if setting is not None:
        raw["strict_open_ai_compliance"] = setting
    tgt = compile_config(raw, config_id="c").root
    assert isinstance(tgt, Target) and tgt.provider == "anthropic"
    headers = {STRICT_HEADER: header} if header is not None else None
    request = gateway_request({"model": "m", "messages": []}, target=tgt, headers=headers)
    assert strict_compliance(request, tgt) is refused


def test_token_counting_sends_the_fields_count_tokens_takes_to_its_path() -> None:
    from relaygate.exchange import Operation
    from relaygate.providers.anthropic import Anthropic

    body = {
        "model": "m", "max_tokens": 1, "temperature": 0.5, "stop": ["x"],
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "hi"}],
    }  # fmt: skip
    request = gateway_request(body, target=TARGET, operation=Operation.COUNT_TOKENS)
    wire = Anthropic().build_request(request, TARGET, {})
    assert wire.url.endswith("/messages/count_tokens") and not wire.stream
    assert orjson.loads(wire.content) == {
        "model": "m",
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }
    assert Anthropic().parse_response(request, 200, b'{"input_tokens": 7}') == {"input_tokens": 7}
    with pytest.raises(ValueError):
        Anthropic().parse_response(request, 200, b'{"type": "message", "content": []}')
