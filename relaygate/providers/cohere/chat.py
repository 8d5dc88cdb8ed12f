"""OpenAI chat completions ⇄ Cohere v2 ``/chat``: pure functions.

Request (https://docs.cohere.com/reference/chat): messages keep their roles (``system``,
``user``, ``assistant``, ``tool``; ``developer`` becomes ``system``); ``tool_calls`` and
``tools`` already have OpenAI's shape; ``tool`` messages keep ``tool_call_id``;
``max_tokens``/``max_completion_tokens`` → ``max_tokens``, ``stop`` → ``stop_sequences``,
``top_p`` → ``p``, ``top_k`` → ``k``, ``response_format`` → ``response_format``
(``json_object``, with ``json_schema`` when given); ``tool_choice`` ``required``/``none`` →
``REQUIRED``/``NONE`` and a named function → ``REQUIRED`` with only that tool offered.
``n`` above 1 is refused (Cohere answers one message).

Response (https://docs.cohere.com/reference/chat#response): ``message.content`` text parts
joined, ``message.tool_calls`` as they are, ``finish_reason`` mapped by
:data:`FINISH_REASONS`, ``usage.tokens`` (else ``usage.billed_units``) → ``usage``. A
``finish_reason`` of ``ERROR`` or ``TIMEOUT`` is a failed answer (``ValueError``: the
attempt is ``invalid_response``, and fallback moves on).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from relaygate.providers.chatshape import (
    completion,
    message_choice,
    stop_list,
    text_of,
    tool_call,
    unsupported,
    usage_object,
)
from relaygate.providers.parameters import COMMON_UNSUPPORTED, READ_BY_ALL, ParameterTable

PROVIDER = "cohere"

FINISH_REASONS: Mapping[str, str] = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}
"""Cohere ``finish_reason`` → OpenAI's; ``ERROR`` and ``TIMEOUT`` (:data:`FAILED`) are
failures, any other value reads as ``stop``."""

FAILED: frozenset[str] = frozenset({"ERROR", "TIMEOUT"})
"""Cohere finish reasons meaning the generation failed."""

RENAMED: Mapping[str, str] = {
    "max_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "p",
    "top_k": "k",
    "seed": "seed",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
}
"""OpenAI request fields sent to Cohere under Cohere's name."""

PARAMETERS = ParameterTable(
    provider=PROVIDER,
    handled=READ_BY_ALL | {"n", "response_format", "logprobs", *RENAMED},  # n: only 1
    unsupported=COMMON_UNSUPPORTED | {"user", "parallel_tool_calls", "reasoning_effort"},
)
"""What a Cohere chat request honours, and the OpenAI parameters it does not (dropped with a
warning or, strict, refused: :mod:`relaygate.providers.parameters`)."""

TOOL_CHOICES: Mapping[str, str | None] = {"auto": None, "required": "REQUIRED", "none": "NONE"}
"""OpenAI ``tool_choice`` strings → Cohere's (``None``: Cohere's default, not sent)."""


def chat_request(body: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The v2 ``/chat`` body for an OpenAI chat request ``body`` (overrides merged)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise unsupported(PROVIDER, "messages", "needs 'messages' to be a list")
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        raise unsupported(PROVIDER, "n", "answers one choice only ('n' must be 1)")
    out: dict[str, Any] = {
        "model": model,
        "messages": [_message(m) for m in messages if isinstance(m, dict)],
    }
    for name, cohere in RENAMED.items():
        value = body.get(name)
        if value is not None and not isinstance(value, bool):
            out[cohere] = value
    stops = stop_list(body.get("stop"))
    if stops:
        out["stop_sequences"] = stops
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in (
        "json_object",
        "json_schema",
    ):
        format_out: dict[str, Any] = {"type": "json_object"}
        spec = response_format.get("json_schema")
        if isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
            format_out["json_schema"] = spec["schema"]
        out["response_format"] = format_out
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if isinstance(tools, list) and tools:
        for tool in tools:
            if (
                not isinstance(tool, dict)
                or tool.get("type") != "function"
                or not isinstance(tool.get("function"), dict)
            ):
                raise unsupported(PROVIDER, "tools", "takes only tools of type 'function'")
        named = _named_choice(choice)
        if named is not None:
            tools = [t for t in tools if t["function"].get("name") == named]
            choice = "required"
        out["tools"] = tools
    if isinstance(choice, str) and TOOL_CHOICES.get(choice):
        out["tool_choice"] = TOOL_CHOICES[choice]
    if body.get("logprobs") is True:
        out["logprobs"] = True
    if body.get("stream") is True:
        out["stream"] = True
    return out


def _named_choice(choice: Any) -> str | None:
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    return name if isinstance(name, str) else None


def _message(message: Mapping[str, Any]) -> dict[str, Any]:
    role = message.get("role")
    content = message.get("content")
    if role in ("system", "developer"):
        return {"role": "system", "content": text_of(content)}
    if role == "assistant":
        out: dict[str, Any] = {"role": "assistant"}
        text = text_of(content)
        listed = message.get("tool_calls")
        calls = (
            [_call(c) for c in listed if isinstance(c, dict)] if isinstance(listed, list) else []
        )
        if calls:
            out["tool_calls"] = calls
        if text or not calls:
            out["content"] = text
        return out
    if role == "tool":
        return {
            "role": "tool",
            "tool_call_id": str(message.get("tool_call_id", "")),
            "content": text_of(content),
        }
    return {"role": "user", "content": _user_content(content)}


def _call(call: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI tool call as Cohere takes it (the same shape, its fields made strings)."""
    function = call.get("function")
    function = function if isinstance(function, dict) else {}
    arguments = function.get("arguments")
    return tool_call(
        str(call.get("id", "")),
        str(function.get("name", "")),
        arguments if isinstance(arguments, str) else orjson.dumps(arguments or {}).decode(),
    )


def _user_content(content: Any) -> Any:
    if not isinstance(content, list):
        return text_of(content)
    parts: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif part.get("type") == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


# -- answers ------------------------------------------------------------------------------


def finish_reason(cohere: Any) -> str:
    """OpenAI's finish reason for Cohere's; ``ValueError`` for :data:`FAILED` ones."""
    if not isinstance(cohere, str):
        return "stop"
    if cohere in FAILED:
        raise ValueError(f"cohere ended the answer with finish_reason {cohere}")
    return FINISH_REASONS.get(cohere, "stop")


def usage_of(usage: Any) -> dict[str, Any] | None:
    """OpenAI ``usage`` from Cohere's: ``tokens`` (what the model read and wrote), else
    ``billed_units``; counts arrive as numbers that may be floats."""
    if not isinstance(usage, dict):
        return None
    for key in ("tokens", "billed_units"):
        counts = usage.get(key)
        if isinstance(counts, dict) and "input_tokens" in counts:
            cached = _count(usage.get("cached_tokens"))
            return usage_object(
                _count(counts.get("input_tokens")), _count(counts.get("output_tokens")), cached
            )
    return None


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(int(value), 0)


def message_parts(message: Any) -> tuple[str, list[dict[str, Any]]]:
    """``(text, tool calls)`` of a Cohere assistant ``message``."""
    if not isinstance(message, dict):
        return "", []
    content = message.get("content")
    text = (
        "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
        if isinstance(content, list)
        else ""
    )
    calls: list[dict[str, Any]] = []
    for call in message.get("tool_calls") or ():
        if isinstance(call, dict):
            function = call.get("function") or {}
            calls.append(
                tool_call(
                    str(call.get("id", "")),
                    str(function.get("name", "")),
                    str(function.get("arguments", "") or "{}"),
                )
            )
    return text, calls


def chat_response(
    payload: Mapping[str, Any], model: str, created: int, fallback_id: str
) -> dict[str, Any]:
    """The OpenAI ``chat.completion`` for a v2 ``/chat`` answer (Cohere names no model in
    it: ``model`` is the one asked for)."""
    text, calls = message_parts(payload.get("message"))
    reason = finish_reason(payload.get("finish_reason"))
    ident = payload.get("id")
    return completion(
        ident if isinstance(ident, str) and ident else fallback_id,
        model,
        created,
        [message_choice(0, text or (None if calls else ""), calls, reason)],
        usage_of(payload.get("usage")),
    )
