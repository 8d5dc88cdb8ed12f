"""Bedrock Converse translation: golden fixtures (tests/providers/fixtures/bedrock, each
citing the reference page it was written from), held to botocore's own service model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from botocore.loaders import Loader
from botocore.model import ServiceModel
from botocore.parsers import RestJSONParser
from botocore.validate import ParamValidator

from relaygate.errors import GatewayError
from relaygate.providers.bedrock.converse import (
    ERROR_STATUSES,
    FINISH_REASONS,
    from_converse,
    openai_error,
    to_converse,
)

FIXTURES = Path(__file__).parent / "fixtures" / "bedrock"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


@pytest.fixture(scope="module")
def service() -> ServiceModel:
    """botocore's model of the bedrock-runtime API."""
    return ServiceModel(Loader().load_service_model("bedrock-runtime", "service-2"))


def test_a_chat_request_with_tools_becomes_the_golden_converse_request() -> None:
    golden = fixture("chat_with_tools.json")
    assert to_converse(golden["openai_request"]) == golden["converse_request"]


def test_the_golden_converse_request_is_valid_for_botocore(service: ServiceModel) -> None:
    golden = fixture("chat_with_tools.json")
    params = {"modelId": "anthropic.claude-3-5-haiku-20241022-v1:0", **golden["converse_request"]}
    # Blobs go on the wire base64-encoded; botocore validates the decoded bytes.
    image = params["messages"][0]["content"][1]["image"]["source"]
    image["bytes"] = b"\x89PNG\r\n\x1a\n"
    report = ParamValidator().validate(params, service.operation_model("Converse").input_shape)
    assert not report.has_errors(), report.generate_report()


def test_the_golden_converse_answer_parses_with_botocore_and_becomes_a_chat_completion(
    service: ServiceModel,
) -> None:
    golden = fixture("chat_with_tools.json")
    body = orjson.dumps(golden["converse_response"])
    parsed = RestJSONParser().parse(
        {"status_code": 200, "headers": {}, "body": body},
        service.operation_model("Converse").output_shape,
    )
    assert parsed["stopReason"] == "tool_use"
    answer = from_converse(
        golden["converse_response"],
        model="anthropic.claude-3-5-haiku-20241022-v1:0",
        response_id="chatcmpl-fixed",
        created=1700000000,
    )
    assert answer == golden["openai_response"]


def test_every_stop_reason_botocore_knows_has_a_finish_reason(service: ServiceModel) -> None:
    reasons = set(service.shape_for("StopReason").enum)
    assert reasons <= set(FINISH_REASONS)
    assert set(FINISH_REASONS.values()) <= {"stop", "length", "tool_calls", "content_filter"}


def test_error_statuses_are_botocore_s(service: ServiceModel) -> None:
    for name in ("Converse", "ConverseStream"):
        for shape in service.operation_model(name).error_shapes:
            status = shape.metadata.get("error", {}).get("httpStatusCode")
            if status is not None:
                assert ERROR_STATUSES[shape.name] == status, shape.name


@pytest.mark.parametrize(
    ("status", "kind", "error_type"),
    [
        (429, "ThrottlingException", "rate_limit_error"),
        (503, "ServiceUnavailableException", "server_error"),
        (400, "ValidationException", "invalid_request_error"),
        (424, "ModelErrorException", "upstream_error"),
        (403, "AccessDeniedException", "permission_error"),
    ],
)
def test_a_bedrock_error_becomes_an_openai_error(status: int, kind: str, error_type: str) -> None:
    headers = {"x-amzn-errortype": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    body = orjson.loads(openai_error(status, headers, b'{"message": "Too many requests"}'))
    assert body == {
        "error": {
            "message": f"bedrock {kind}: Too many requests",
            "type": error_type,
            "param": None,
            "code": kind,
        }
    }


def test_an_error_without_a_type_or_json_body_is_still_openai_shaped() -> None:
    body = orjson.loads(openai_error(502, {}, b"<html>bad gateway</html>"))
    assert body["error"]["code"] == "upstream_502"
    assert body["error"]["type"] == "server_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"n": 2}, "n"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
                "url": "https://example.com/a.png"}}]}]},
            "messages[0].content[0]",
        ),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"id": "1", "function": {
                "name": "f", "arguments": "[1]"}}]}]},
            "messages[0].tool_calls[0]",
        ),
        ({"messages": [{"role": "function", "content": "x"}]}, "messages[0].role"),
        ({"messages": []}, "messages"),
    ],
)  # fmt: skip
def test_what_converse_cannot_say_is_refused_with_400(body: dict[str, Any], param: str) -> None:
    request = {"messages": [{"role": "user", "content": "hi"}], **body}
    with pytest.raises(GatewayError) as caught:
        to_converse(request)
    assert caught.value.status == 400
    assert caught.value.param == param


@pytest.mark.parametrize(
    ("choice", "converse"),
    [
        ("auto", {"auto": {}}),
        ("required", {"any": {}}),
        ({"type": "function", "function": {"name": "f"}}, {"tool": {"name": "f"}}),
    ],
)
def test_tool_choice(choice: Any, converse: dict[str, Any]) -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    body = {"messages": [{"role": "user", "content": "hi"}], "tools": tools, "tool_choice": choice}
    config = to_converse(body)["toolConfig"]
    assert config["toolChoice"] == converse
    assert config["tools"] == [
        {"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}
    ]


def test_a_string_stop_and_max_completion_tokens() -> None:
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "stop": "END",
        "max_completion_tokens": 9,
        "max_tokens": 99,
    }
    assert to_converse(body)["inferenceConfig"] == {"maxTokens": 9, "stopSequences": ["END"]}


def test_an_answer_that_is_not_converse_is_invalid() -> None:
    with pytest.raises(ValueError, match=r"output\.message"):
        from_converse({"nope": 1}, model="m", response_id="i", created=0)


def test_tool_choice_none_sends_no_tools_unless_the_conversation_holds_tool_calls() -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    plain = {"messages": [{"role": "user", "content": "hi"}], "tools": tools, "tool_choice": "none"}
    assert "toolConfig" not in to_converse(plain)
    golden = fixture("chat_with_tools.json")["openai_request"]
    with_calls = to_converse({**golden, "tool_choice": "none"})
    assert "toolChoice" not in with_calls["toolConfig"]
    assert with_calls["toolConfig"]["tools"]
