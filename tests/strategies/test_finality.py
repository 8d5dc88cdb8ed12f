"""Decision table: which upstream error answers are final (no retry, no fallback)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from relaygate.config.model import RetrySettings
from relaygate.strategies import Reason, should_fall_back
from relaygate.strategies.backoff import Backoff, decide_retry
from relaygate.strategies.finality import (
    MAX_ERROR_BODY_BYTES,
    NO_FACTS,
    ErrorFacts,
    error_facts,
    fall_back_codes,
    final_code,
)


def body(error: Any) -> bytes:
    return orjson.dumps({"error": error})


OPENAI_POLICY = body(
    {
        "message": "Your request was rejected as a result of our safety system.",
        "type": "invalid_request_error",
        "param": None,
        "code": "content_policy_violation",
    }
)
AZURE_FILTER = body(
    {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's "
        "content management policy.",
        "type": None,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": {"hate": {"filtered": True, "severity": "high"}},
        },
    }
)
AZURE_INNER_ONLY = body(
    {"message": "filtered", "innererror": {"code": "ResponsibleAIPolicyViolation"}}
)
CONTEXT_LENGTH = body(
    {
        "message": "This model's maximum context length is 8192 tokens.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
)
MODEL_NOT_FOUND = body(
    {
        "message": "The model `gpt-9` does not exist",
        "type": "invalid_request_error",
        "code": "model_not_found",
    }
)
MISSING_PARAM = body(
    {
        "message": "Missing required parameter: 'messages[2].content[0].type'.",
        "type": "invalid_request_error",
        "param": "messages[2].content[0].type",
        "code": "missing_required_parameter",
    }
)
INVALID_TYPE = body(
    {
        "message": "Invalid type for 'messages[0].content'",
        "type": "invalid_request_error",
        "param": "messages[0].content",
        "code": "invalid_type",
    }
)
UNSUPPORTED = body(
    {
        "message": "Unsupported parameter: 'max_tokens'",
        "type": "invalid_request_error",
        "param": "max_tokens",
        "code": "unsupported_parameter",
    }
)
INVALID_VALUE = body(
    {
        "message": "temperature must be <= 1",
        "type": "invalid_request_error",
        "param": "temperature",
        "code": "invalid_value",
    }
)
BAD_KEY = body(
    {"message": "Incorrect API key", "type": "invalid_request_error", "code": "invalid_api_key"}
)
PLAIN_400 = body({"message": "bad", "type": "invalid_request_error", "code": None})
INVALID_PROMPT = body(
    {
        "message": "Invalid prompt: flagged",
        "type": "invalid_request_error",
        "code": "invalid_prompt",
    }
)
GEMINI_LIST = orjson.dumps([{"error": {"code": 400, "message": "x", "status": "INVALID_ARGUMENT"}}])


@pytest.mark.parametrize(
    ("status", "failure", "payload", "on_error_codes", "expected"),
    [
        (400, None, OPENAI_POLICY, (), "content_policy_violation"),
        (400, None, AZURE_FILTER, (), "content_filter"),
        (400, None, AZURE_INNER_ONLY, (), "responsibleaipolicyviolation"),
        (400, None, body({"code": "moderation_blocked"}), (), "moderation_blocked"),
        (400, None, MISSING_PARAM, (), "missing_required_parameter"),
        (422, None, INVALID_TYPE, (), "invalid_type"),
        (400, None, body({"type": "Content_Filter"}), (), "content_filter"),
        (400, None, CONTEXT_LENGTH, (), None),
        (400, None, MODEL_NOT_FOUND, (), None),
        (404, None, MODEL_NOT_FOUND, (), None),
        (400, None, UNSUPPORTED, (), None),
        (400, None, INVALID_VALUE, (), None),
        (400, None, PLAIN_400, (), None),
        (400, None, INVALID_PROMPT, (), None),
        (400, None, GEMINI_LIST, (), None),
        (400, None, b"<html>bad request</html>", (), None),
        (401, None, BAD_KEY, (), None),
        (403, None, OPENAI_POLICY, (), None),
        (429, None, OPENAI_POLICY, (), None),
        (500, None, AZURE_FILTER, (), None),
        (400, Reason.STREAM_ERROR, OPENAI_POLICY, (), None),
        (400, None, AZURE_FILTER, ("content_filter",), None),
        (400, None, AZURE_FILTER, ("ResponsibleAIPolicyViolation",), None),
        (400, None, AZURE_FILTER, ("*",), None),
        (400, None, OPENAI_POLICY, ("content_filter",), "content_policy_violation"),
    ],
    ids=[
        "openai-content-policy",
        "azure-content-filter",
        "azure-innererror-only",
        "openai-moderation-blocked",
        "missing-required-parameter",
        "invalid-type-422",
        "code-in-type-field-any-case",
        "context-length-falls-back",
        "model-not-found-falls-back",
        "404-model-not-found",
        "unsupported-parameter-is-model-specific",
        "invalid-value-ranges-differ",
        "bare-invalid-request-error",
        "invalid-prompt-is-ambiguous",
        "gemini-list-shape-not-read",
        "not-json",
        "401-provider-specific",
        "403-provider-specific",
        "429-never-final",
        "5xx-never-final",
        "transport-failure-never-final",
        "override-by-code",
        "override-by-inner-code",
        "override-all",
        "override-of-another-code",
    ],
)
def test_final_code_decision_table(
    status: int,
    failure: Reason | None,
    payload: bytes,
    on_error_codes: tuple[str, ...],
    expected: str | None,
) -> None:
    codes = fall_back_codes(on_error_codes)
    assert final_code(status, failure, error_facts(payload), codes) == expected


def test_error_facts_reads_code_type_and_inner_code_in_order() -> None:
    assert error_facts(AZURE_FILTER) == ErrorFacts(
        ("content_filter", "responsibleaipolicyviolation")
    )
    assert error_facts(OPENAI_POLICY) == ErrorFacts(
        ("content_policy_violation", "invalid_request_error")
    )


@pytest.mark.parametrize(
    "payload",
    [
        None,
        b"",
        b"[]",
        b'{"error": "a string"}',
        body({"code": 400}),
        body({"code": "x" * 65}),
        body({"code": "content_filter", "pad": "x" * MAX_ERROR_BODY_BYTES}),
    ],
    ids=["none", "empty", "list", "string-error", "numeric-code", "overlong-code", "huge-body"],
)
def test_error_facts_reads_nothing_from_other_shapes(payload: bytes | None) -> None:
    assert error_facts(payload) == NO_FACTS


def test_a_final_answer_never_falls_back_whatever_the_status_codes() -> None:
    assert should_fall_back(400, None, None) is True
    assert should_fall_back(400, None, None, final=True) is False
    assert should_fall_back(400, None, frozenset({400}), final=True) is False


def test_a_final_answer_is_never_retried_whatever_the_retry_codes() -> None:
    decision = decide_retry(
        status=400,
        failure=None,
        settings=RetrySettings(attempts=3, on_status_codes=frozenset({400})),
        retries_done=0,
        policy=Backoff(),
        rand=0.5,
        headers={},
        now_epoch_s=0.0,
        remaining_s=None,
        final="content_filter",
    )
    assert decision.retry is False
    assert decision.why_not == "final_error"
