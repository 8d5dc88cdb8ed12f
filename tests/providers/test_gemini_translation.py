"""The Gemini translators against golden fixtures written from Google's API reference.

Every Gemini-side body is validated against the ``google-genai`` SDK's types, so a
misspelt field in a fixture (or in what relaygate sends) fails here.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from google.genai import types as genai

from relaygate.errors import GatewayError
from relaygate.providers.chatshape import ChunkWriter
from relaygate.providers.client import StreamInterrupted
from relaygate.providers.google import chat, embed, errors
from relaygate.providers.google.stream import GeminiStreamTranslator
from relaygate.providers.translation import Refused, SseSplitter, translate_all
from relaygate.strategies.finality import error_facts, final_code
from tests.providers.golden import golden
from tests.providers.stream_split import assert_split_anywhere


def test_chat_request_matches_golden_and_the_sdk_types() -> None:
    case = golden("google_chat_request.json")
    sent = chat.chat_request(case["openai"])
    assert sent == case["gemini"]
    for content in sent["contents"]:
        genai.Content.model_validate(content)
    genai.Content.model_validate(sent["systemInstruction"])
    genai.GenerationConfig.model_validate(sent["generationConfig"])
    for tool in sent["tools"]:
        genai.Tool.model_validate(tool)
    genai.ToolConfig.model_validate(sent["toolConfig"])


@pytest.mark.parametrize(
    "case", golden("google_chat_responses.json")["cases"], ids=lambda c: c["name"]
)
def test_chat_responses_match_golden(case: dict[str, Any]) -> None:
    doc = golden("google_chat_responses.json")
    genai.GenerateContentResponse.model_validate(case["gemini"])
    args = (case["gemini"], doc["model"], doc["created"], doc["fallback_id"])
    if "status" in case:
        with pytest.raises(Refused) as refused:
            chat.chat_response(*args)
        assert refused.value.status == case["status"]
        assert orjson.loads(refused.value.body) == case["openai"]
    else:
        assert chat.chat_response(*args) == case["openai"]


def test_a_blocked_prompt_is_a_final_content_filter_error() -> None:
    doc = golden("google_chat_responses.json")
    case = next(c for c in doc["cases"] if c["name"] == "prompt_blocked")
    refused = chat.prompt_blocked(case["gemini"])
    assert refused is not None
    assert final_code(refused.status, None, error_facts(refused.body)) == "content_filter"
    assert (
        final_code(refused.status, None, error_facts(refused.body), frozenset({"content_filter"}))
        is None
    )


@pytest.mark.parametrize(
    ("gemini", "has_calls", "openai"),
    [
        ("STOP", False, "stop"),
        ("STOP", True, "tool_calls"),
        ("MAX_TOKENS", False, "length"),
        ("SAFETY", False, "content_filter"),
        ("RECITATION", False, "content_filter"),
        ("PROHIBITED_CONTENT", False, "content_filter"),
        ("SPII", False, "content_filter"),
        ("BLOCKLIST", False, "content_filter"),
        ("OTHER", False, "stop"),
        ("MALFORMED_FUNCTION_CALL", False, "stop"),
        (None, False, "stop"),
    ],
)
def test_finish_reasons(gemini: str | None, has_calls: bool, openai: str) -> None:
    assert chat.finish_reason(gemini, has_calls) == openai


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"functionCallingConfig": {"mode": "AUTO"}}),
        ("none", {"functionCallingConfig": {"mode": "NONE"}}),
        ("required", {"functionCallingConfig": {"mode": "ANY"}}),
        (
            {"type": "function", "function": {"name": "f"}},
            {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}},
        ),
    ],
)
def test_tool_choice(choice: Any, config: dict[str, Any]) -> None:
    body = {"messages": [{"role": "user", "content": "x"}], "tool_choice": choice}
    assert chat.chat_request(body)["toolConfig"] == config
    genai.ToolConfig.model_validate(config)


def test_consecutive_tool_results_share_one_turn() -> None:
    calls = [
        {"id": f"c{i}", "type": "function", "function": {"name": f"f{i}", "arguments": "{}"}}
        for i in (1, 2)
    ]
    body = {
        "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": calls},
            {"role": "tool", "tool_call_id": "c1", "content": "one"},
            {"role": "tool", "tool_call_id": "c2", "content": "[2]"},
        ]
    }
    contents = chat.chat_request(body)["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "f1", "response": {"content": "one"}}},
        {"functionResponse": {"name": "f2", "response": {"content": [2]}}},
    ]


def test_an_image_by_address_is_refused_with_a_400() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    with pytest.raises(GatewayError) as refused:
        chat.chat_request({"messages": [{"role": "user", "content": [image]}]})
    assert refused.value.status == 400
    assert refused.value.code == "unsupported_parameter"


@pytest.mark.parametrize(
    "case", golden("google_errors.json")["cases"], ids=lambda c: str(c["status"])
)
def test_errors_keep_their_status_in_openai_shape(case: dict[str, Any]) -> None:
    status, body = errors.error_answer(case["status"], case["gemini"])
    assert status == case["openai_status"] == case["status"]
    assert orjson.loads(body) == case["openai"]
    assert final_code(status, None, error_facts(body)) is None


def test_an_error_that_is_not_json_still_gets_the_openai_shape() -> None:
    status, body = errors.error_answer(502, None)
    assert status == 502
    assert orjson.loads(body)["error"]["type"] == "server_error"


@pytest.mark.parametrize("case", golden("google_embeddings.json")["cases"], ids=lambda c: c["name"])
def test_embeddings_match_golden(case: dict[str, Any]) -> None:
    model = golden("google_embeddings.json")["model"]
    assert embed.embed_request(case["openai_request"], model) == case["gemini_request"]
    assert embed.embed_response(case["gemini_response"], model) == case["openai_response"]
    if "embeddings" in case["gemini_response"]:
        genai.EmbedContentResponse.model_validate(case["gemini_response"])
    else:
        genai.ContentEmbedding.model_validate(case["gemini_response"]["embedding"])


def test_token_id_embedding_inputs_are_refused() -> None:
    with pytest.raises(GatewayError):
        embed.embed_request({"input": [[1, 2, 3]]}, "m")


def _writer(doc: dict[str, Any], usage_chunk: bool) -> ChunkWriter:
    return ChunkWriter(
        id=doc["fallback_id"], model=doc["model"], created=doc["created"], usage_chunk=usage_chunk
    )


def _raw(events: list[dict[str, Any]]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in events)


@pytest.mark.parametrize("usage_chunk", [False, True])
def test_stream_matches_golden_however_it_is_split(usage_chunk: bool) -> None:
    doc = golden("google_stream.json")
    for event in doc["gemini_events"]:
        genai.GenerateContentResponse.model_validate(event)
    expected = doc["openai_events_include_usage" if usage_chunk else "openai_events"]
    assert_split_anywhere(
        _raw(doc["gemini_events"]),
        lambda: GeminiStreamTranslator(_writer(doc, usage_chunk)),
        "".join(expected).encode(),
    )


def test_a_stream_whose_bytes_end_before_a_finish_is_broken() -> None:
    doc = golden("google_stream.json")
    translator = GeminiStreamTranslator(_writer(doc, False))
    with pytest.raises(StreamInterrupted):
        translate_all(translator, [_raw(doc["gemini_events"][:2])])


def test_a_stream_opening_with_a_blocked_prompt_is_refused() -> None:
    event = {"promptFeedback": {"blockReason": "SAFETY"}, "modelVersion": "g"}
    translator = GeminiStreamTranslator(_writer(golden("google_stream.json"), False))
    with pytest.raises(Refused) as refused:
        translate_all(translator, [_raw([event])])
    assert orjson.loads(refused.value.body)["error"]["code"] == "content_filter"


def test_an_error_event_breaks_the_stream() -> None:
    translator = GeminiStreamTranslator(_writer(golden("google_stream.json"), False))
    splitter = SseSplitter()
    (name, data), *_ = splitter.push(b'data: {"error": {"code": 500}}\n\n')
    with pytest.raises(ValueError):
        translator.feed(name, data)
