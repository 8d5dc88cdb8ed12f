"""Tool calls in the mock upstream's chat answers.

A chat request offering ``tools`` (and a ``tool_choice`` other than ``none``) whose last
message is not a tool result is answered with one call of the chosen tool (the forced one,
else the first), with arguments ``{"text": <the answer's text>}`` and finish reason
``tool_calls``; once a tool result is the last message, the answer is text again, as a
model's would be.
"""

from __future__ import annotations

from typing import Any

import orjson


def tool_call_of(body: dict[str, Any], answer: str, call_id: str) -> dict[str, Any] | None:
    """The ``tool_calls`` entry the mock answers ``body`` with, or ``None`` (a text answer)."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    messages = body.get("messages") or [{}]
    last = messages[-1] if isinstance(messages[-1], dict) else {}
    if not isinstance(tools, list) or not tools or choice == "none" or last.get("role") == "tool":
        return None
    name: Any = None
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
    if not isinstance(name, str):
        first = tools[0] if isinstance(tools[0], dict) else {}
        function = first.get("function") if isinstance(first.get("function"), dict) else {}
        name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        return None
    arguments = orjson.dumps({"text": answer}).decode()
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def tool_call_chunks(
    call: dict[str, Any],
    *,
    completion_id: str,
    created: int,
    model: str,
    usage: dict[str, int],
    include_usage: bool,
) -> list[dict[str, Any]]:
    """The data events of a streamed tool-call answer: the role chunk, the call's id and
    name, its arguments in two pieces, the closing chunk (``tool_calls``), then usage."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        out: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [choice],
        }
        if include_usage:
            out["usage"] = None
        return out

    arguments: str = call["function"]["arguments"]
    half = len(arguments) // 2
    head = {**call, "index": 0, "function": {"name": call["function"]["name"], "arguments": ""}}
    chunks = [chunk({"role": "assistant", "content": None}), chunk({"tool_calls": [head]})]
    for piece in (arguments[:half], arguments[half:]):
        chunks.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
    chunks.append(chunk({}, "tool_calls"))
    if include_usage:
        last = chunk({})
        last["choices"] = []
        last["usage"] = usage
        chunks.append(last)
    return chunks
