"""Reading OpenAI-shaped answers for telemetry: token usage, model, id and finish reasons.

Shared by non-streamed answers (a parsed JSON payload) and streamed ones (the ``data:``
events of an SSE stream, see :class:`~relaygate.exchange.ResponseStream`). Every function is
pure and total: a value of the wrong shape reads as absent, never as an error.
"""

from __future__ import annotations

from typing import Any

import orjson

USAGE_KEY = b'"usage":'
"""The key of an event's ``usage`` object, as JSON writes it before the value."""

FINISH_KEY = b'"finish_reason":'
"""The key of a choice's finish reason, as JSON writes it before the value."""

FACT_KEYS = (USAGE_KEY, FINISH_KEY)
"""Keys whose non-null value makes an SSE line worth parsing (after the first event)."""


def holds_value(data: bytes, key: bytes) -> bool:
    """Whether some ``key`` in ``data`` is followed by a value other than ``null`` (white
    space skipped). A key at the very end counts: its value is still to come."""
    size = len(key)
    at = data.find(key)
    while at >= 0:
        if not data[at + size : at + size + 16].lstrip().startswith(b"null"):
            return True
        at = data.find(key, at + size)
    return False


def worth_parsing(data: bytes) -> bool:
    """Whether the SSE lines in ``data`` hold usage or a finish reason (a non-null one)."""
    return holds_value(data, USAGE_KEY) or holds_value(data, FINISH_KEY)


MAX_LINE_BYTES = 1 << 20
"""Longest partial SSE line carried across chunks; a longer line is skipped, not buffered."""


def usage_of(payload: Any) -> tuple[int, int] | None:
    """``(input, output)`` tokens from an OpenAI-shaped ``usage`` object, if present."""
    if not isinstance(payload, dict):
        return None
    usage = payload.get("usage")
    if usage is None and isinstance(payload.get("response"), dict):
        usage = payload["response"].get("usage")  # a Responses API stream's last event
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens", 0))
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return prompt, completion


def finish_reasons_of(payload: Any) -> list[str]:
    """The string ``finish_reason`` of each choice in ``payload``, in order (may be empty)."""
    return [reason for _, reason in choice_finish_reasons(payload)]


def choice_finish_reasons(payload: Any) -> list[tuple[int, str]]:
    """``(choice index, finish_reason)`` of each choice in ``payload`` with a string finish
    reason, in order; a choice without an integer ``index`` is indexed by its position."""
    if not isinstance(payload, dict):
        return []
    choices = payload.get("choices")
    if not isinstance(choices, list):
        return []
    found: list[tuple[int, str]] = []
    for position, choice in enumerate(choices):
        if isinstance(choice, dict):
            reason = choice.get("finish_reason")
            if isinstance(reason, str):
                index = choice.get("index")
                found.append((index if type(index) is int else position, reason))
    return found


def string_field(payload: Any, name: str) -> str | None:
    """``payload[name]`` when ``payload`` is a dict and the value a string, else ``None``."""
    if not isinstance(payload, dict):
        return None
    value = payload.get(name)
    return value if isinstance(value, str) else None


MAX_PRELUDE_BYTES = 64 * 1024
"""Most bytes held back while waiting for a stream's first chunk carrying content; a
stream whose opening runs longer is handed on as it is (its content then counts as started)."""


RESPONSES_OPENING = frozenset(
    {
        "response.created",
        "response.in_progress",
        "response.queued",
        "response.output_item.added",
        "response.content_part.added",
    }
)
"""Responses API stream events that open an answer without content."""


def carries_content(block: bytes) -> bool:
    """Whether the complete SSE lines of ``block`` hold an event past a stream's opening.

    A stream's *opening* is what upstreams send before the answer itself starts: SSE
    comments and blank lines (keep-alives), and ``data:`` events with nothing in them but
    the assistant's role (OpenAI's first ``{"delta": {"role": "assistant", "content": ""}}``
    chunk) or no choices at all (Azure's ``prompt_filter_results`` event). Every other
    ``data:`` event carries content: a choice with text, a non-empty delta field other than
    ``role`` (content, tool calls, refusal, reasoning...) or a ``finish_reason``, a usage
    object, an error, ``[DONE]``, or anything that is not a JSON object. In a Responses API
    stream, every event but the :data:`RESPONSES_OPENING` ones carries content. A partial
    last line (no newline yet) is not read.
    """
    end = block.rfind(b"\n")
    if end < 0:
        return False
    for line in block[:end].split(b"\n"):
        if line.startswith(b"data:") and _event_carries_content(line[5:].strip()):
            return True
    return False


def _event_carries_content(data: bytes) -> bool:
    if not data:
        return False
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return True
    if not isinstance(payload, dict) or "error" in payload:
        return True
    if payload.get("usage"):
        return True
    kind = payload.get("type")
    if isinstance(kind, str):
        # A Responses API event: everything past the response's opening counts.
        return kind not in RESPONSES_OPENING
    choices = payload.get("choices")
    if not isinstance(choices, list):
        return "choices" in payload
    return any(_choice_carries_content(choice) for choice in choices)


def _choice_carries_content(choice: Any) -> bool:
    if not isinstance(choice, dict):
        return True
    if choice.get("finish_reason") or choice.get("text"):
        return True
    delta = choice.get("delta")
    if isinstance(delta, dict):
        return any(value for key, value in delta.items() if key != "role")
    return delta is not None
