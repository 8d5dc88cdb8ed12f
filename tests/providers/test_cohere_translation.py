"""The Cohere v2 translators against golden fixtures written from Cohere's API reference.

(The Cohere sides of these fixtures are held to the official ``cohere`` SDK's v2 types in
``test_cohere_sdk_types.py``.)
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from relaygate.errors import GatewayError
from relaygate.providers.chatshape import ChunkWriter
from relaygate.providers.client import StreamInterrupted
from relaygate.providers.cohere import chat, embed, errors
from relaygate.providers.cohere.stream import CohereStreamTranslator
from relaygate.providers.translation import translate_all
from relaygate.strategies.finality import error_facts, final_code
from tests.providers.golden import golden
from tests.providers.stream_split import assert_split_anywhere


def test_chat_request_matches_golden() -> None:
    case = golden("cohere_chat_request.json")
    assert chat.chat_request(case["openai"], case["openai"]["model"]) == case["cohere"]


@pytest.mark.parametrize(
    ("choice", "sent"),
    [("auto", None), ("none", "NONE"), ("required", "REQUIRED"), (None, None)],
)
def test_tool_choice(choice: str | None, sent: str | None) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    body = {"messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": choice}
    assert chat.chat_request(body, "m").get("tool_choice") == sent


def test_a_named_tool_choice_offers_only_that_tool() -> None:
    tools = [{"type": "function", "function": {"name": name, "parameters": {}}} for name in "fg"]
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "tools": tools,
        "tool_choice": {"type": "function", "function": {"name": "g"}},
    }
    sent = chat.chat_request(body, "m")
    assert sent["tool_choice"] == "REQUIRED"
    assert [t["function"]["name"] for t in sent["tools"]] == ["g"]


def test_several_choices_are_refused_with_a_400() -> None:
    with pytest.raises(GatewayError) as refused:
        chat.chat_request({"messages": [], "n": 2}, "m")
    assert refused.value.status == 400
    assert refused.value.param == "n"


@pytest.mark.parametrize(
    "case", golden("cohere_chat_responses.json")["cases"], ids=lambda c: c["name"]
)
def test_chat_responses_match_golden(case: dict[str, Any]) -> None:
    doc = golden("cohere_chat_responses.json")
    args = (case["cohere"], doc["model"], doc["created"], doc["fallback_id"])
    if case.get("invalid"):
        with pytest.raises(ValueError, match="ERROR"):
            chat.chat_response(*args)
    else:
        assert chat.chat_response(*args) == case["openai"]


@pytest.mark.parametrize(
    ("cohere", "openai"),
    [
        ("COMPLETE", "stop"),
        ("STOP_SEQUENCE", "stop"),
        ("MAX_TOKENS", "length"),
        ("TOOL_CALL", "tool_calls"),
        ("SOMETHING_NEW", "stop"),
    ],
)
def test_finish_reasons(cohere: str, openai: str) -> None:
    assert chat.finish_reason(cohere) == openai


def test_usage_prefers_tokens_over_billed_units() -> None:
    usage = {
        "billed_units": {"input_tokens": 2, "output_tokens": 3.0},
        "tokens": {"input_tokens": 20.0, "output_tokens": 3},
    }
    assert chat.usage_of(usage) == {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23}
    assert chat.usage_of({"billed_units": {"input_tokens": 2, "output_tokens": 3}}) == {
        "prompt_tokens": 2,
        "completion_tokens": 3,
        "total_tokens": 5,
    }


@pytest.mark.parametrize(
    "case", golden("cohere_errors.json")["cases"], ids=lambda c: str(c["status"])
)
def test_errors_keep_their_status_in_openai_shape(case: dict[str, Any]) -> None:
    status, body = errors.error_answer(case["status"], case["cohere"])
    assert status == case["openai_status"] == case["status"]
    assert orjson.loads(body) == case["openai"]
    assert final_code(status, None, error_facts(body)) is None


def test_embeddings_match_golden() -> None:
    doc = golden("cohere_embeddings.json")
    assert embed.embed_request(doc["openai_request"], doc["model"]) == doc["cohere_request"]
    assert embed.embed_response(doc["cohere_response"], doc["model"]) == doc["openai_response"]


def test_embeddings_without_floats_are_invalid() -> None:
    with pytest.raises(ValueError):
        embed.embed_response({"embeddings": {"int8": [[1]]}}, "m")


def _writer(doc: dict[str, Any], usage_chunk: bool) -> ChunkWriter:
    return ChunkWriter(
        id=doc["fallback_id"], model=doc["model"], created=doc["created"], usage_chunk=usage_chunk
    )


def _raw(events: list[dict[str, Any]], newline: bytes = b"\n") -> bytes:
    return b"".join(
        b"event: " + e["type"].encode() + newline + b"data: " + orjson.dumps(e) + newline * 2
        for e in events
    )


@pytest.mark.parametrize("usage_chunk", [False, True])
@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_stream_matches_golden_however_it_is_split(usage_chunk: bool, newline: bytes) -> None:
    doc = golden("cohere_stream.json")
    expected = doc["openai_events_include_usage" if usage_chunk else "openai_events"]
    assert_split_anywhere(
        _raw(doc["cohere_events"], newline),
        lambda: CohereStreamTranslator(_writer(doc, usage_chunk)),
        "".join(expected).encode(),
    )


def test_a_stream_without_message_end_is_broken() -> None:
    doc = golden("cohere_stream.json")
    with pytest.raises(StreamInterrupted):
        translate_all(CohereStreamTranslator(_writer(doc, False)), [_raw(doc["cohere_events"][:4])])


def test_a_stream_ending_in_error_is_broken() -> None:
    doc = golden("cohere_stream.json")
    end = {"type": "message-end", "delta": {"finish_reason": "ERROR"}}
    with pytest.raises(StreamInterrupted, match="ERROR"):
        translate_all(
            CohereStreamTranslator(_writer(doc, False)), [_raw([*doc["cohere_events"][:3], end])]
        )
