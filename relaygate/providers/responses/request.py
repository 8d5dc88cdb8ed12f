"""A Responses API request → the equivalent chat completions request (pure).

Translated: ``model``; ``instructions`` (a first ``system`` message); ``input`` (a string,
or items: messages with ``input_text``/``input_image``/``output_text`` parts,
``function_call`` and ``function_call_output`` items; ``reasoning`` items are dropped);
``tools`` (function tools), ``tool_choice``, ``parallel_tool_calls``,
``max_output_tokens`` → ``max_tokens``, ``temperature``, ``top_p``, ``text.format`` →
``response_format``, ``reasoning.effort`` → ``reasoning_effort``, ``stream`` (with
``stream_options.include_usage``). Refused with a 400 (:data:`STATEFUL`): what needs
OpenAI's stored state; also hosted tools (web search, file search...), file inputs and
any item type not listed above.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relaygate.errors import GatewayError
from relaygate.providers.chatshape import any_text_of

STATEFUL: tuple[str, ...] = ("previous_response_id", "conversation", "background", "prompt")
"""Request fields that only a target keeping Responses state can honour."""

NATIVE_TARGETS = "openai, azure-openai"


def _refuse(provider: str, what: str, param: str) -> GatewayError:
    return GatewayError(
        400,
        f"provider '{provider}' does not speak the Responses API, and {what} needs a target "
        f"that does ({NATIVE_TARGETS})",
        code="unsupported_parameter",
        param=param,
    )


def stateful_field(body: Mapping[str, Any]) -> str | None:
    """The first field of ``body`` that needs stored Responses state, if any."""
    for name in STATEFUL:
        if body.get(name) not in (None, False, ""):
            return name
    if body.get("store") is True:
        return "store"
    return None


def _part(part: Any, provider: str, where: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
        return {"type": "text", "text": part["text"]}
    if kind == "refusal" and isinstance(part.get("refusal"), str):
        return {"type": "text", "text": part["refusal"]}
    if kind == "input_image" and isinstance(part.get("image_url"), str):
        image: dict[str, Any] = {"url": part["image_url"]}
        if part.get("detail") in ("low", "high", "auto"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    raise _refuse(provider, f"a content part of type {str(kind)[:32]!r}", where)


def _content(content: Any, provider: str, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise GatewayError(400, f"{where} must be a string or a list", param=where)
    parts = [_part(p, provider, f"{where}[{i}]") for i, p in enumerate(content)]
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _messages(body: Mapping[str, Any], provider: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    raw = body.get("input")
    if isinstance(raw, str):
        messages.append({"role": "user", "content": raw})
        return messages
    if not isinstance(raw, list) or not raw:
        raise GatewayError(400, "'input' must be a string or a non-empty list", param="input")
    for i, item in enumerate(raw):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise GatewayError(400, f"{where} must be an object", param=where)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise GatewayError(400, f"{where}.role is not a message role", param=where)
            content = _content(item.get("content"), provider, f"{where}.content")
            messages.append({"role": role, "content": content})
        elif kind == "function_call":
            call = {
                "id": str(item.get("call_id", "")),
                "type": "function",
                "function": {
                    "name": str(item.get("name", "")),
                    "arguments": str(item.get("arguments", "")),
                },
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            elif last is not None and last["role"] == "assistant":
                last["tool_calls"] = [call]
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": str(item.get("call_id", "")),
                    "content": any_text_of(item.get("output")),
                }
            )
        elif kind == "reasoning":
            continue
        else:
            raise _refuse(provider, f"an input item of type {str(kind)[:32]!r}", where)
    return messages


def _tools(body: Mapping[str, Any], provider: str) -> list[dict[str, Any]] | None:
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise _refuse(provider, f"the hosted tool {str(kind)[:32]!r}", f"tools[{i}]")
        function = {
            key: tool[key] for key in ("name", "description", "parameters", "strict") if key in tool
        }
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    return choice


def _response_format(text: Any) -> dict[str, Any] | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    return None


def to_chat(body: Mapping[str, Any], provider: str) -> dict[str, Any]:
    """The chat completions body for a Responses request sent to ``provider``.

    Raises a 400 :class:`GatewayError` for what only a Responses target can serve.
    """
    stateful = stateful_field(body)
    if stateful is not None:
        raise _refuse(provider, f"'{stateful}'", stateful)
    chat: dict[str, Any] = {"messages": _messages(body, provider)}
    if isinstance(body.get("model"), str):
        chat["model"] = body["model"]
    tools = _tools(body, provider)
    if tools is not None:
        chat["tools"] = tools
        if "tool_choice" in body:
            chat["tool_choice"] = _tool_choice(body["tool_choice"])
        if isinstance(body.get("parallel_tool_calls"), bool):
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            chat[name] = body[name]
    response_format = _response_format(body.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str):
        chat["reasoning_effort"] = reasoning["effort"]
    if body.get("stream") is True:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat
