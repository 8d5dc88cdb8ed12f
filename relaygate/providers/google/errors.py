"""Gemini error answers (``google.rpc.Status``) → OpenAI's error shape.

https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes: the body is
``{"error": {"code": 429, "message": "...", "status": "RESOURCE_EXHAUSTED", "details": [...]}}``.
The HTTP status is kept as sent (``RESOURCE_EXHAUSTED`` 429, ``UNAVAILABLE`` 503,
``INVALID_ARGUMENT`` 400, ``PERMISSION_DENIED`` 403...), so retries and fallback act on it as
on any provider's; ``error.code`` becomes the status name in lower case
(``resource_exhausted``), none of which is a final code.
"""

from __future__ import annotations

from typing import Any

from relaygate.providers.translation import openai_error

MAX_MESSAGE_CHARS = 2000
"""Longest upstream error message passed on."""


def error_answer(status: int, payload: Any) -> tuple[int, bytes]:
    """``(status, OpenAI error body)`` for a Gemini error answer (``payload``: the parsed
    body, ``None`` when it was not JSON)."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return status, openai_error(status, f"gemini answered {status}", f"upstream_{status}")
    message = error.get("message")
    text = message[:MAX_MESSAGE_CHARS] if isinstance(message, str) and message else None
    name = error.get("status")
    code = name.lower()[:64] if isinstance(name, str) and name else f"upstream_{status}"
    return status, openai_error(status, text or f"gemini answered {status}", code)
