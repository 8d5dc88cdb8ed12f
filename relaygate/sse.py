"""Reading OpenAI-shaped answers for telemetry: token usage, model, id and finish reasons.

Shared by non-streamed answers (a parsed JSON payload) and streamed ones (the ``data:``
events of an SSE stream, see :class:`~relaygate.exchange.ResponseStream`). Every function is
pure and total: a value of the wrong shape reads as absent, never as an error.
"""

from __future__ import annotations

from typing import Any

USAGE_MARK = b'"usage"'
"""Bytes every SSE line carrying a ``usage`` object contains (the only lines worth parsing)."""

MAX_LINE_BYTES = 1 << 20
"""Longest partial SSE line carried across chunks; a longer line is skipped, not buffered."""


def usage_of(payload: Any) -> tuple[int, int] | None:
    """``(input, output)`` tokens from an OpenAI-shaped ``usage`` object, if present."""
    if not isinstance(payload, dict):
        return None
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens", 0))
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return prompt, completion


def finish_reasons_of(payload: Any) -> list[str]:
    """The string ``finish_reason`` of each choice in ``payload``, in order (may be empty)."""
    if not isinstance(payload, dict):
        return []
    choices = payload.get("choices")
    if not isinstance(choices, list):
        return []
    return [
        c["finish_reason"]
        for c in choices
        if isinstance(c, dict) and isinstance(c.get("finish_reason"), str)
    ]


def string_field(payload: Any, name: str) -> str | None:
    """``payload[name]`` when ``payload`` is a dict and the value a string, else ``None``."""
    if not isinstance(payload, dict):
        return None
    value = payload.get(name)
    return value if isinstance(value, str) else None
