"""Every golden fixture of the translators cites its public API reference page, and the sides
not yet held to an official SDK's types elsewhere are held to them here: the Anthropic and
OpenAI request sides (``anthropic`` and ``openai`` request types) and the Bedrock
ConverseStream events (botocore's service model).

The SDKs type requests as ``TypedDict``\\ s whose lists are ``Iterable``\\ s, which pydantic
checks only lazily; so each message, content block, tool and tool choice is validated on its
own, and the top-level fields are checked against the names the SDK's create method takes.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import pydantic
import pytest
from anthropic.types import (
    ContentBlockParam,
    MessageParam,
    TextBlockParam,
    ToolChoiceParam,
    ToolUnionParam,
    message_create_params,
)
from botocore.loaders import Loader
from botocore.model import ServiceModel
from botocore.validate import ParamValidator
from openai.types.chat import (
    ChatCompletionMessageParam,
    ChatCompletionToolChoiceOptionParam,
    ChatCompletionToolUnionParam,
    completion_create_params,
)

TESTS = Path(__file__).parents[1]
FIXTURE_DIRS = [
    TESTS / "providers" / "golden",
    TESTS / "providers" / "fixtures",
    TESTS / "frontdoor" / "golden",
]
FIXTURES = sorted(
    path
    for directory in FIXTURE_DIRS
    for path in directory.rglob("*")
    if path.suffix in (".json", ".sse")
)
CITATION_FIELDS = ("source", "_source", "reference")
"""Where a JSON fixture names its reference page (an ``.sse`` one: its ``:`` comment lines)."""

ANTHROPIC_REQUESTS = [
    TESTS / "providers" / "golden" / "anthropic" / "request_tools_images.json",
    TESTS / "frontdoor" / "golden" / "messages_request.json",
]
OPENAI_REQUESTS = [
    *ANTHROPIC_REQUESTS,
    TESTS / "providers" / "golden" / "google_chat_request.json",
    TESTS / "providers" / "golden" / "cohere_chat_request.json",
]

ANTHROPIC_SAMPLING = {"temperature", "top_p", "top_k"}
"""Sampling fields the Messages API reference documents that this ``anthropic`` SDK's
``messages.create`` no longer lists."""


def _citation(path: Path) -> str:
    text = path.read_text()
    if path.suffix == ".sse":
        return "\n".join(line for line in text.splitlines() if line.startswith(":"))
    loaded = json.loads(text)
    return " ".join(str(loaded.get(field, "")) for field in CITATION_FIELDS)


def _names(kind: Any) -> set[str]:
    return set(typing.get_type_hints(kind))


def _each(adapter: pydantic.TypeAdapter[Any], items: list[Any]) -> None:
    for item in items:
        adapter.validate_python(item)


def test_there_are_fixtures_to_check() -> None:
    assert len(FIXTURES) >= 20


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: str(p.relative_to(TESTS)))
def test_every_fixture_cites_a_public_reference_page(path: Path) -> None:
    assert "https://" in _citation(path), f"{path.name} cites no reference page"


@pytest.mark.parametrize("path", ANTHROPIC_REQUESTS, ids=lambda p: p.name)
def test_the_anthropic_request_sides_are_the_sdks_request_types(path: Path) -> None:
    request = json.loads(path.read_text())["anthropic"]
    pydantic.TypeAdapter(message_create_params.MessageCreateParams).validate_python(request)
    known = _names(message_create_params.MessageCreateParamsBase) | {"stream"}
    assert set(request) - known <= ANTHROPIC_SAMPLING
    _each(pydantic.TypeAdapter(MessageParam), request["messages"])
    blocks = [m["content"] for m in request["messages"] if isinstance(m["content"], list)]
    _each(pydantic.TypeAdapter(ContentBlockParam), [b for content in blocks for b in content])
    system = request.get("system")
    _each(pydantic.TypeAdapter(TextBlockParam), system if isinstance(system, list) else [])
    _each(pydantic.TypeAdapter(ToolUnionParam), request.get("tools", []))
    if "tool_choice" in request:
        pydantic.TypeAdapter(ToolChoiceParam).validate_python(request["tool_choice"])


@pytest.mark.parametrize("path", OPENAI_REQUESTS, ids=lambda p: p.name)
def test_the_openai_request_sides_are_the_sdks_request_types(path: Path) -> None:
    request = json.loads(path.read_text())["openai"]
    types = completion_create_params
    pydantic.TypeAdapter(types.CompletionCreateParams).validate_python(request)
    assert set(request) <= _names(types.CompletionCreateParamsBase) | {"stream"}
    _each(pydantic.TypeAdapter(ChatCompletionMessageParam), request["messages"])
    _each(pydantic.TypeAdapter(ChatCompletionToolUnionParam), request.get("tools", []))
    if "tool_choice" in request:
        pydantic.TypeAdapter(ChatCompletionToolChoiceOptionParam).validate_python(
            request["tool_choice"]
        )


def test_a_misspelt_block_fails_the_sdk_type() -> None:
    # The check above can fail: a base64 image without its data is not an Anthropic block.
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/png"}}
    with pytest.raises(pydantic.ValidationError):
        pydantic.TypeAdapter(ContentBlockParam).validate_python(block)


def _converse_stream_events() -> Any:
    service = ServiceModel(Loader().load_service_model("bedrock-runtime", "service-2"))
    return service.operation_model("ConverseStream").output_shape.members["stream"]


def test_the_converse_stream_events_are_botocores_shapes() -> None:
    golden = json.loads(
        (TESTS / "providers" / "fixtures" / "bedrock" / "stream_text.json").read_text()
    )
    events = _converse_stream_events()
    for name, body in golden["events"]:
        assert name in events.members, name
        report = ParamValidator().validate(body, events.members[name])
        assert not report.has_errors(), report.generate_report()
    misspelt = {"delta": {"txt": "x"}, "contentBlockIndex": 0}
    assert ParamValidator().validate(misspelt, events.members["contentBlockDelta"]).has_errors()
