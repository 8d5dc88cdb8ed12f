"""Pure translation between OpenAI's chat format and Bedrock's Converse API.

Wire facts from the Bedrock API reference (``Converse``, ``ConverseStream``, ``Message``,
``ContentBlock``, ``ToolConfiguration``, ``InferenceConfiguration``, ``StopReason``,
``TokenUsage``: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html)
and botocore's service model for ``bedrock-runtime``, which the tests hold these
translations to.

Sent as Converse fields: ``messages`` (``system``/``developer`` → ``system``; ``tool`` →
a user turn's ``toolResult``; consecutive turns of one role merged, as Converse wants them
alternating), ``max_tokens``/``max_completion_tokens`` → ``inferenceConfig.maxTokens``,
``temperature``, ``top_p`` → ``topP``, ``stop`` → ``stopSequences``, ``tools`` and
``tool_choice`` → ``toolConfig`` (``tool_choice: "none"`` sends no tools, unless the
conversation holds tool calls, which Converse then requires). Refused (400): ``n`` above
1, image URLs that are not ``data:`` URLs (Converse takes image bytes), tool-call
arguments that are not a JSON object.
Not sent (Converse has no equivalent): :data:`PARAMETERS`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import orjson

from relaygate.errors import GatewayError, error_body
from relaygate.providers.chatshape import any_text_of
from relaygate.providers.parameters import (
    COMMON_UNSUPPORTED,
    NO_PENALTIES,
    READ_BY_ALL,
    ParameterTable,
)

FINISH_REASONS: Mapping[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
    "malformed_model_output": "stop",
    "malformed_tool_use": "stop",
}
"""Converse ``stopReason`` → OpenAI ``finish_reason`` (unknown reasons answer ``stop``)."""

ERROR_STATUSES: Mapping[str, int] = {
    "AccessDeniedException": 403,
    "ThrottlingException": 429,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
    "ValidationException": 400,
    "ModelNotReadyException": 429,
    "ModelErrorException": 424,
    "ModelStreamErrorException": 424,
    "ServiceQuotaExceededException": 400,
}
"""Bedrock's error types and the HTTP status each is answered with (botocore's model)."""

_ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    429: "rate_limit_error",
}

PARAMETERS = ParameterTable(
    provider="bedrock",
    handled=READ_BY_ALL
    | {"n", "max_tokens", "max_completion_tokens", "temperature", "top_p"},  # n: only 1
    unsupported=COMMON_UNSUPPORTED
    | NO_PENALTIES
    | {"user", "top_k", "parallel_tool_calls", "reasoning_effort"},
)
"""OpenAI parameters Converse has no field for (dropped with a warning or, strict, refused:
:mod:`relaygate.providers.parameters`)."""

_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}


def _refuse(message: str, param: str) -> GatewayError:
    return GatewayError(400, f"bedrock: {message}", code="unsupported_value", param=param)


def finish_reason(stop_reason: object) -> str:
    """The OpenAI finish reason of a Converse ``stopReason``."""
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def _image_block(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url.startswith("data:"):
        raise _refuse("images must be data: URLs (Converse takes image bytes)", where)
    header, _, data = url[5:].partition(",")
    media, _, encoding = header.partition(";")
    fmt = _IMAGE_FORMATS.get(media.lower())
    if fmt is None or encoding != "base64":
        raise _refuse("images must be base64 png, jpeg, gif or webp data: URLs", where)
    try:
        base64.b64decode(data, validate=True)
    except binascii.Error:
        raise _refuse("an image data: URL is not valid base64", where) from None
    return {"image": {"format": fmt, "source": {"bytes": data}}}


def _content_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """Converse content blocks of an OpenAI user/assistant ``content`` (empty text dropped)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise _refuse("message content must be a string or a list of parts", where)
    blocks: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            if part["text"]:
                blocks.append({"text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image_block(part, f"{where}[{i}]"))
        else:
            raise _refuse(f"content part type {str(kind)[:32]!r} is not supported", where)
    return blocks


def _tool_use(call: Any, where: str) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise _refuse("a tool call needs a function name", where)
    raw = function.get("arguments") or "{}"
    try:
        arguments = orjson.loads(raw) if isinstance(raw, str) else raw
    except orjson.JSONDecodeError:
        arguments = None
    if not isinstance(arguments, dict):
        raise _refuse("tool call arguments must be a JSON object", where)
    return {
        "toolUse": {
            "toolUseId": str(call.get("id") or ""),
            "name": function["name"],
            "input": arguments,
        }
    }


def _turn(message: Mapping[str, Any], where: str) -> tuple[str, list[dict[str, Any]]]:
    """``(converse role, content blocks)`` of one non-system OpenAI message."""
    role = message.get("role")
    if role == "user":
        return "user", _content_blocks(message.get("content"), f"{where}.content")
    if role == "assistant":
        blocks = _content_blocks(message.get("content"), f"{where}.content")
        calls = message.get("tool_calls") or []
        if not isinstance(calls, list):
            raise _refuse("tool_calls must be a list", f"{where}.tool_calls")
        blocks += [_tool_use(c, f"{where}.tool_calls[{i}]") for i, c in enumerate(calls)]
        return "assistant", blocks
    if role == "tool":
        result = {
            "toolUseId": str(message.get("tool_call_id") or ""),
            "content": [{"text": any_text_of(message.get("content"))}],
        }
        return "user", [{"toolResult": result}]
    raise _refuse(f"message role {str(role)[:32]!r} is not supported", f"{where}.role")


def _tool_config(body: Mapping[str, Any]) -> dict[str, Any] | None:
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    specs: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _refuse("only function tools with a name are supported", f"tools[{i}]")
        spec: dict[str, Any] = {
            "name": function["name"],
            "inputSchema": {"json": function.get("parameters") or {"type": "object"}},
        }
        if isinstance(function.get("description"), str) and function["description"]:
            spec["description"] = function["description"]
        specs.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": specs}
    choice = body.get("tool_choice")
    if choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        config["toolChoice"] = {"tool": {"name": str(choice["function"].get("name"))}}
    return config


def to_converse(body: Mapping[str, Any]) -> dict[str, Any]:
    """The Converse request body (``modelId`` goes in the URL) for an OpenAI chat body.

    Raises a 400 :class:`GatewayError` for what Converse cannot express (see the module).
    """
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        raise _refuse("n > 1 is not supported (Converse answers one choice)", "n")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise GatewayError(400, "'messages' must be a non-empty list", param="messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise GatewayError(400, f"{where} must be an object", param=where)
        if message.get("role") in ("system", "developer"):
            text = any_text_of(message.get("content"))
            if text:
                system.append({"text": text})
            continue
        role, blocks = _turn(message, where)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    out: dict[str, Any] = {"messages": turns}
    if system:
        out["system"] = system
    inference: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        inference["maxTokens"] = max_tokens
    for name, field in (("temperature", "temperature"), ("top_p", "topP")):
        value = body.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            inference[field] = value
    stop = body.get("stop")
    if isinstance(stop, str):
        inference["stopSequences"] = [stop]
    elif isinstance(stop, list) and stop:
        inference["stopSequences"] = [s for s in stop if isinstance(s, str)]
    if inference:
        out["inferenceConfig"] = inference
    tools = _tool_config(body)
    if tools is not None and (body.get("tool_choice") != "none" or _holds_tool_blocks(turns)):
        out["toolConfig"] = tools
    return out


def _holds_tool_blocks(turns: list[dict[str, Any]]) -> bool:
    """Whether the conversation carries tool calls or results (Converse then needs tools)."""
    return any(
        "toolUse" in block or "toolResult" in block for turn in turns for block in turn["content"]
    )


def openai_usage(usage: Any) -> dict[str, int] | None:
    """OpenAI's ``usage`` of a Converse ``usage`` (``inputTokens``/``outputTokens``)."""
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("inputTokens")
    completion = usage.get("outputTokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    out = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    cached = usage.get("cacheReadInputTokens")
    if isinstance(cached, int):
        out["prompt_tokens_details"] = {"cached_tokens": cached}  # type: ignore[assignment]
    return out


def from_converse(payload: Any, *, model: str, response_id: str, created: int) -> dict[str, Any]:
    """The ``chat.completion`` for a Converse answer; :class:`ValueError` if it is not one."""
    if not isinstance(payload, dict):
        raise ValueError("bedrock answered JSON that is not an object")
    message = (payload.get("output") or {}).get("message")
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        raise ValueError("bedrock answered without output.message.content")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message["content"]:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        use = block.get("toolUse")
        if isinstance(use, dict):
            calls.append(
                {
                    "id": str(use.get("toolUseId", "")),
                    "type": "function",
                    "function": {
                        "name": str(use.get("name", "")),
                        "arguments": orjson.dumps(use.get("input", {})).decode(),
                    },
                }
            )
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        reply["tool_calls"] = calls
    answer: dict[str, Any] = {
        "id": response_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": reply,
                "logprobs": None,
                "finish_reason": finish_reason(payload.get("stopReason")),
            }
        ],
    }
    usage = openai_usage(payload.get("usage"))
    if usage is not None:
        answer["usage"] = usage
    return answer


def error_type_of(headers: Mapping[str, str], payload: Any) -> str | None:
    """Bedrock's error type: the ``x-amzn-errortype`` header (up to ``:``), or the body's
    ``__type``/``code``."""
    raw = headers.get("x-amzn-errortype")
    if not raw and isinstance(payload, dict):
        raw = payload.get("__type") or payload.get("code")
    if not isinstance(raw, str) or not raw:
        return None
    return raw.split(":", 1)[0].rsplit("#", 1)[-1][:64]


def openai_error(status: int, headers: Mapping[str, str], body: bytes) -> bytes:
    """The OpenAI-shaped error body for a Bedrock error answer.

    ``code`` is Bedrock's error type (``ThrottlingException``...), ``type`` follows the
    status (``rate_limit_error`` for 429...), ``message`` is Bedrock's own.
    """
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    kind = error_type_of(headers, payload)
    message = None
    if isinstance(payload, dict):
        message = payload.get("message") or payload.get("Message")
    if not isinstance(message, str) or not message:
        message = f"bedrock answered {status}"
    text = f"bedrock {kind}: {message}" if kind else f"bedrock: {message}"
    err_type = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "upstream_error")
    return error_body(text[:2000], type=err_type, code=kind or f"upstream_{status}")
