"""Cohere's golden fixtures held to the official ``cohere`` SDK's v2 types.

Each side relaygate sends or reads is validated against the SDK's own pydantic types: the chat
and embed requests the translators produce field by field against the parameters of
``V2Client.chat`` / ``V2Client.embed`` (the SDK has no request model, its client methods are the
request shape), the answers against ``V2ChatResponse`` and ``EmbedByTypeResponse``, each streamed
event against its member of ``V2ChatStreamResponse`` (picked by its ``type``). The SDK types its
error bodies as ``Any``; what it does type is which status is which error, so each error fixture's
status must map to one of the SDK's error classes, read back through the SDK client itself.

The SDK's models accept unknown fields (``extra="allow"``); a field the SDK does not know fails
here, because every validated model, however deep, must come back with no extras.
"""

from __future__ import annotations

import typing
from typing import Any

import cohere
import httpx
import orjson
import pydantic
import pytest
from cohere.core.api_error import ApiError
from cohere.v2.client import V2Client

from tests.providers.golden import golden

CHAT_PARAMETERS = typing.get_type_hints(V2Client.chat)
EMBED_PARAMETERS = typing.get_type_hints(V2Client.embed)
CLIENT_ONLY = {"request_options", "return"}
"""Names in the client methods' signatures that are not fields of the request body."""

STREAM_EVENTS: dict[str, type[pydantic.BaseModel]] = {
    typing.get_type_hints(member)["type"].__args__[0]: member
    for member in typing.get_args(typing.get_args(cohere.V2ChatStreamResponse)[0])
}
"""Each ``V2ChatStreamResponse`` member by the ``type`` literal it carries."""

SDK_ERRORS = {
    400: cohere.BadRequestError,
    429: cohere.TooManyRequestsError,
    503: cohere.ServiceUnavailableError,
}
"""The SDK's error class for each status the error fixtures answer with a JSON body."""


def _unknown_fields(value: Any, where: str = "$") -> list[str]:
    """Paths of every field the SDK's models kept as an extra, i.e. did not declare."""
    found: list[str] = []
    if isinstance(value, pydantic.BaseModel):
        found += [f"{where}.{name}" for name in value.model_extra or {}]
        for name in type(value).model_fields:
            found += _unknown_fields(getattr(value, name), f"{where}.{name}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found += _unknown_fields(item, f"{where}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            found += _unknown_fields(item, f"{where}.{key}")
    return found


def _strictly(kind: Any, body: Any) -> Any:
    """``body`` validated as the SDK type ``kind``, failing on any field the SDK does not know."""
    parsed = pydantic.TypeAdapter(kind).validate_python(body)
    assert _unknown_fields(parsed) == [], f"fields the cohere SDK does not know: {parsed!r}"
    return parsed


def _request_is_the_sdks(parameters: dict[str, Any], request: dict[str, Any]) -> None:
    assert set(request) <= set(parameters) - CLIENT_ONLY, set(request) - set(parameters)
    for name, value in request.items():
        _strictly(parameters[name], value)


def test_the_chat_request_is_the_sdks_chat_parameters() -> None:
    _request_is_the_sdks(CHAT_PARAMETERS, golden("cohere_chat_request.json")["cohere"])


def test_the_embed_request_is_the_sdks_embed_parameters() -> None:
    _request_is_the_sdks(EMBED_PARAMETERS, golden("cohere_embeddings.json")["cohere_request"])


@pytest.mark.parametrize(
    "case", golden("cohere_chat_responses.json")["cases"], ids=lambda c: c["name"]
)
def test_each_chat_answer_is_a_v2_chat_response(case: dict[str, Any]) -> None:
    parsed = _strictly(cohere.V2ChatResponse, case["cohere"])
    assert parsed.finish_reason == case["cohere"]["finish_reason"]


def test_the_embed_answer_is_an_embed_by_type_response() -> None:
    parsed = _strictly(
        cohere.EmbedByTypeResponse, golden("cohere_embeddings.json")["cohere_response"]
    )
    assert parsed.embeddings.float_ is not None


@pytest.mark.parametrize(
    "event",
    golden("cohere_stream.json")["cohere_events"],
    ids=lambda e: e["type"],
)
def test_each_streamed_event_is_its_v2_chat_stream_response(event: dict[str, Any]) -> None:
    assert event["type"] in STREAM_EVENTS, event["type"]
    _strictly(STREAM_EVENTS[event["type"]], event)


def test_the_fixtures_cover_the_event_types_relaygate_translates() -> None:
    seen = {event["type"] for event in golden("cohere_stream.json")["cohere_events"]}
    assert seen == set(STREAM_EVENTS) - {"citation-start", "citation-end", "debug"}


@pytest.mark.parametrize(
    "case", golden("cohere_errors.json")["cases"], ids=lambda c: str(c["status"])
)
def test_each_error_is_the_sdks_error_for_its_status(case: dict[str, Any]) -> None:
    answer = b"" if case["cohere"] is None else orjson.dumps(case["cohere"])
    transport = httpx.MockTransport(lambda _: httpx.Response(case["status"], content=answer))
    client = cohere.ClientV2(
        api_key="test",
        base_url="http://cohere.test",
        httpx_client=httpx.Client(transport=transport),
    )
    with pytest.raises(ApiError) as raised:
        client.chat(model="m", messages=[{"role": "user", "content": "x"}])
    assert raised.value.status_code == case["status"]
    if case["cohere"] is None:
        # No JSON body (relaygate's own case of a bare 5xx): the SDK raises its base ApiError.
        assert type(raised.value) is ApiError
    else:
        assert type(raised.value) is SDK_ERRORS[case["status"]]
        assert raised.value.body == case["cohere"]


def _listed(kind: Any) -> set[Any]:
    """The values an SDK enum lists (typed ``Union[Literal[...], Any]``, open to new ones)."""
    return {value for arm in typing.get_args(kind) for value in typing.get_args(arm)}


def _enum_values() -> list[tuple[str, Any, Any]]:
    request = golden("cohere_chat_request.json")["cohere"]
    embed = golden("cohere_embeddings.json")["cohere_request"]
    answers = golden("cohere_chat_responses.json")["cases"]
    end = golden("cohere_stream.json")["cohere_events"][-1]
    return [
        ("tool_choice", cohere.V2ChatRequestToolChoice, request["tool_choice"]),
        ("input_type", cohere.EmbedInputType, embed["input_type"]),
        *[("embedding_type", cohere.EmbeddingType, kind) for kind in embed["embedding_types"]],
        *[
            ("finish_reason", cohere.ChatFinishReason, a["cohere"]["finish_reason"])
            for a in answers
        ],
        ("stream_finish_reason", cohere.ChatFinishReason, end["delta"]["finish_reason"]),
    ]


@pytest.mark.parametrize(
    ("name", "kind", "value"), _enum_values(), ids=[f"{n}={v}" for n, _, v in _enum_values()]
)
def test_each_enum_value_is_one_the_sdk_lists(name: str, kind: Any, value: Any) -> None:
    # The SDK's enums also accept Any (values Cohere may add later); the fixtures use listed ones.
    assert value in _listed(kind), f"{name}={value!r} is not among {sorted(_listed(kind))}"


@pytest.mark.parametrize(
    ("kind", "misspelt"),
    [
        (
            cohere.V2ChatResponse,
            {
                "id": "c",
                "finish_reason": "COMPLETE",
                "message": {"role": "assistant", "contents": [{"type": "text", "text": "x"}]},
            },
        ),
        (STREAM_EVENTS["content-delta"], {"type": "content-delta", "delta": {"msg": {}}}),
        (CHAT_PARAMETERS["messages"], [{"role": "user", "content": "x", "name": "u-1"}]),
    ],
    ids=["answer", "event", "request"],
)
def test_a_field_the_sdk_does_not_know_fails_the_check(kind: Any, misspelt: Any) -> None:
    with pytest.raises(AssertionError, match="does not know"):
        _strictly(kind, misspelt)
