"""Final errors: upstream answers that would fail the same way on every target.

A content-policy refusal, or a request that breaks the OpenAI API's own schema, fails on any
OpenAI-compatible target: retrying it or falling back only spends time and tokens (and may
send a refused prompt to more providers). Such an answer is *final*: no retry, no fallback,
the client gets it as it is. Everything else keeps its usual treatment; in particular an
error only one provider or model gives (a bad key, a missing model or deployment, a context
window too small, a parameter that model does not support) still falls back, since another
target may take the request.

Pure functions over the answer's status and its error body's ``code``/``type`` fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from relaygate.strategies.reasons import Reason

FINAL_STATUSES: frozenset[int] = frozenset({400, 422})
"""Statuses that can be final. 401/403 (one provider's key or permissions), 404 (a model or
deployment one provider lacks), 408, 409, 413 and 429 never are, nor are 5xx."""

FINAL_ERROR_CODES: frozenset[str] = frozenset(
    {
        # Content-policy refusals.
        "content_policy_violation",  # OpenAI (images, moderation-blocked prompts)
        "content_filter",  # Azure OpenAI's code for a filtered prompt
        "responsibleaipolicyviolation",  # Azure OpenAI's innererror.code for the same
        "moderation_blocked",  # OpenAI image and responses moderation
        # Requests that break the OpenAI API's own schema, refused alike by every target.
        "missing_required_parameter",
        "invalid_type",
    }
)
"""Error ``code``/``type`` values (lower case) that make a 400/422 answer final.

Matched against ``error.code``, ``error.type`` and Azure's ``error.innererror.code``. Not in
it on purpose: ``context_length_exceeded`` (a bigger model may take the request),
``model_not_found``, ``deployment_not_found``, ``unsupported_parameter``,
``unsupported_value``, ``invalid_value`` (allowed ranges differ between providers and
models), ``invalid_prompt`` (used both for a reasoning model's safety block and for
malformed schemas), ``invalid_api_key``, ``insufficient_quota``, and the broad
``invalid_request_error`` type, which covers all of these."""

ALL_CODES = "*"
"""In ``on_error_codes``: every error falls back, none is final."""

MAX_ERROR_BODY_BYTES = 65536
"""Error bodies longer than this are not parsed for a code: the answer is not final."""

MAX_CODE_CHARS = 64
"""Longest code or type read from a body; a longer value never matches."""


@dataclass(frozen=True, slots=True)
class ErrorFacts:
    """What an upstream error body says about itself: the lower-cased ``code`` values it
    carries (``error.code``, ``error.type``, ``error.innererror.code``), in that order."""

    codes: tuple[str, ...] = ()


NO_FACTS = ErrorFacts()


def _code(value: object) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= MAX_CODE_CHARS:
        return value.lower()
    return None


def error_facts(body: bytes | None) -> ErrorFacts:
    """The codes an OpenAI-shaped error body (``{"error": {...}}``) carries.

    Bodies over :data:`MAX_ERROR_BODY_BYTES`, invalid JSON and other shapes give
    :data:`NO_FACTS`; numeric codes (Gemini's ``"code": 400``) are not codes here.
    """
    if not body or len(body) > MAX_ERROR_BODY_BYTES:
        return NO_FACTS
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return NO_FACTS
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return NO_FACTS
    inner = error.get("innererror")
    found = (
        _code(error.get("code")),
        _code(error.get("type")),
        _code(inner.get("code")) if isinstance(inner, dict) else None,
    )
    return ErrorFacts(tuple(code for code in found if code is not None))


def fall_back_codes(codes: Iterable[str] | None) -> frozenset[str]:
    """A configured ``on_error_codes`` list as matched: lower case, ``*`` kept as is."""
    return frozenset(code.strip().lower() for code in codes or ())


def final_code(
    status: int,
    failure: Reason | None,
    facts: ErrorFacts,
    on_error_codes: frozenset[str] = frozenset(),
) -> str | None:
    """The code that makes this answer final, or ``None`` when it is not final.

    Final when the upstream itself answered (no transport ``failure``) with a status in
    :data:`FINAL_STATUSES` whose body carries a code of :data:`FINAL_ERROR_CODES`, unless
    ``on_error_codes`` (the strategy's setting, lower case) names any code of the body or
    holds :data:`ALL_CODES`: such an answer falls back and is retried as its status says. The first
    matching code of ``facts`` is returned (a value of the fixed set, safe as a label).
    """
    if failure is not None or status not in FINAL_STATUSES or ALL_CODES in on_error_codes:
        return None
    if any(code in on_error_codes for code in facts.codes):
        return None
    return next((code for code in facts.codes if code in FINAL_ERROR_CODES), None)
