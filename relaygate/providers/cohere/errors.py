"""Cohere error answers → OpenAI's error shape.

https://docs.cohere.com/reference/errors: the body is ``{"id": "...", "message": "..."}``
(older answers: ``{"message": "..."}``) with the HTTP status saying what went wrong (400
bad request, 401 invalid key, 429 rate limited, 499 cancelled, 500 internal, 503
unavailable...). The status is kept as sent, so retries and fallback act on it as on any
provider's; ``error.code`` is ``upstream_<status>`` (never a final code).
"""

from __future__ import annotations

from typing import Any

from relaygate.providers.translation import openai_error

MAX_MESSAGE_CHARS = 2000
"""Longest upstream error message passed on."""


def error_answer(status: int, payload: Any) -> tuple[int, bytes]:
    """``(status, OpenAI error body)`` for a Cohere error answer (``payload``: the parsed
    body, ``None`` when it was not JSON)."""
    message = payload.get("message") if isinstance(payload, dict) else None
    text = message[:MAX_MESSAGE_CHARS] if isinstance(message, str) and message else None
    return status, openai_error(status, text or f"cohere answered {status}", f"upstream_{status}")
