"""A chat completion → the Responses API ``response`` object (pure).

The text of choice 0 becomes one ``message`` output item with an ``output_text`` part, its
tool calls ``function_call`` items; ``finish_reason: length`` makes the response
``incomplete`` (``max_output_tokens``), ``content_filter`` ``incomplete``
(``content_filter``); usage becomes ``input_tokens``/``output_tokens``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

INCOMPLETE: Mapping[str, str] = {"length": "max_output_tokens", "content_filter": "content_filter"}
"""Chat finish reasons that leave a response ``incomplete``, and the reason given."""


def response_id(chat_id: object) -> str:
    """The ``resp_...`` id of the response made from the chat completion ``chat_id``."""
    text = chat_id if isinstance(chat_id, str) and chat_id else "relaygate"
    return "resp_" + text.removeprefix("chatcmpl-")


def usage_of(usage: Any) -> dict[str, Any] | None:
    """Responses ``usage`` for a chat ``usage`` object (``None`` when there is none)."""
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    out_details = usage.get("completion_tokens_details")
    reasoning = out_details.get("reasoning_tokens") if isinstance(out_details, dict) else None
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": cached if isinstance(cached, int) else 0,
            "cache_write_tokens": 0,
        },
        "output_tokens": completion,
        "output_tokens_details": {
            "reasoning_tokens": reasoning if isinstance(reasoning, int) else 0
        },
        "total_tokens": prompt + completion,
    }


def shell(request: Mapping[str, Any], *, rid: str, model: str, created: int) -> dict[str, Any]:
    """A ``response`` object in progress (no output yet), echoing the request's settings."""
    return {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": "in_progress",
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "store": False,
        "temperature": request.get("temperature"),
        "text": request.get("text") or {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools") or [],
        "top_p": request.get("top_p"),
        "truncation": "disabled",
        "usage": None,
        "metadata": request.get("metadata") or {},
    }


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    """An assistant ``message`` output item holding ``text``."""
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    """A ``function_call`` output item."""
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def finish(response: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
    """``response`` marked completed, or incomplete for a :data:`INCOMPLETE` finish reason."""
    reason = INCOMPLETE.get(finish_reason or "")
    response["status"] = "incomplete" if reason else "completed"
    response["incomplete_details"] = {"reason": reason} if reason else None
    return response


def from_chat(completion: Any, request: Mapping[str, Any], *, created: int) -> dict[str, Any]:
    """The ``response`` object for a chat completion answering ``request``.

    Raises :class:`ValueError` when ``completion`` has no choice.
    """
    if not isinstance(completion, dict):
        raise ValueError("upstream answered JSON that is not an object")
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("upstream answered a chat completion without choices")
    choice = choices[0]
    raw = choice.get("message")
    message: dict[str, Any] = raw if isinstance(raw, dict) else {}
    rid = response_id(completion.get("id"))
    model = completion.get("model")
    stamp = completion.get("created")
    response = shell(
        request,
        rid=rid,
        model=model if isinstance(model, str) else str(request.get("model", "")),
        created=stamp if isinstance(stamp, int) else created,
    )
    text = message.get("content")
    if isinstance(text, str) and text:
        response["output"].append(message_item("msg_" + rid[5:], text))
    for i, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        call_id = str(call.get("id") or f"call_{i}")
        response["output"].append(
            call_item(
                "fc_" + call_id,
                call_id,
                str(function.get("name", "")),
                str(function.get("arguments", "")),
            )
        )
    response["usage"] = usage_of(completion.get("usage"))
    reason = choice.get("finish_reason")
    return finish(response, reason if isinstance(reason, str) else None)
