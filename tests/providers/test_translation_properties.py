"""Property tests: the translators are total over any JSON a caller or an upstream sends.

A request body either translates or is refused with a :class:`GatewayError` (an OpenAI
error answer), never an exception the gateway would answer with a 500; an upstream body or
stream event either translates or is a ``ValueError`` (reported as ``invalid_response``),
a :class:`Refused` or a :class:`StreamInterrupted`.
"""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from relaygate.errors import GatewayError
from relaygate.providers.chatshape import ChunkWriter
from relaygate.providers.client import StreamInterrupted
from relaygate.providers.cohere import chat as cohere_chat
from relaygate.providers.cohere import embed as cohere_embed
from relaygate.providers.cohere.stream import CohereStreamTranslator
from relaygate.providers.google import chat as gemini_chat
from relaygate.providers.google import embed as gemini_embed
from relaygate.providers.google.stream import GeminiStreamTranslator
from relaygate.providers.translation import Refused

KEYS = st.sampled_from(
    [
        "messages", "role", "content", "tool_calls", "tool_call_id", "function", "name",
        "arguments", "tools", "tool_choice", "type", "text", "image_url", "url", "stop", "n",
        "response_format", "json_schema", "schema", "input", "dimensions", "candidates",
        "parts", "functionCall", "args", "finishReason", "usageMetadata", "promptFeedback",
        "blockReason", "index", "message", "finish_reason", "usage", "tokens", "billed_units",
        "input_tokens", "delta", "embeddings", "embedding", "values", "float", "meta", "id",
    ]
)  # fmt: skip
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
)
JSON = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=30,
)
BODIES = st.dictionaries(KEYS, JSON, max_size=6)


@given(BODIES)
def test_any_request_body_translates_or_is_refused_with_a_400(body: dict[str, Any]) -> None:
    for translate in (
        lambda b: gemini_chat.chat_request(b),
        lambda b: cohere_chat.chat_request(b, "m"),
        lambda b: gemini_embed.embed_request(b, "m"),
        lambda b: cohere_embed.embed_request(b, "m"),
    ):
        try:
            orjson.dumps(translate(body))
        except GatewayError as exc:
            assert exc.status == 400


@given(BODIES)
def test_any_upstream_body_translates_or_is_invalid(payload: dict[str, Any]) -> None:
    for translate in (
        lambda p: gemini_chat.chat_response(p, "m", 0, "i"),
        lambda p: cohere_chat.chat_response(p, "m", 0, "i"),
        lambda p: gemini_embed.embed_response(p, "m"),
        lambda p: cohere_embed.embed_response(p, "m"),
    ):
        with contextlib.suppress(ValueError, Refused):
            orjson.dumps(translate(payload))


@given(st.lists(BODIES, max_size=4))
def test_any_upstream_stream_translates_or_breaks(events: list[dict[str, Any]]) -> None:
    for make in (GeminiStreamTranslator, CohereStreamTranslator):
        translator = make(ChunkWriter(id="i", model="m", created=0, usage_chunk=False))
        with contextlib.suppress(ValueError, Refused, StreamInterrupted):
            for event in events:
                translator.feed(None, orjson.dumps(event))
            translator.end()
