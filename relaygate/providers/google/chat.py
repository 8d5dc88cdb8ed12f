"""OpenAI chat completions ⇄ Gemini ``generateContent``: pure functions.

Request (https://ai.google.dev/api/generate-content#request-body): ``system``/``developer``
messages become ``systemInstruction``; ``user`` and ``tool`` turns role ``user``,
``assistant`` turns role ``model`` (consecutive turns of one role are merged, as Gemini
wants the function responses of one round in one turn); text and ``data:`` image parts;
``tool_calls`` → ``functionCall`` parts, ``tool`` messages → ``functionResponse`` parts
(named by the call they answer); sampling parameters → ``generationConfig``; ``tools`` →
``functionDeclarations`` (their JSON Schema as ``parametersJsonSchema``); ``tool_choice`` →
``toolConfig.functionCallingConfig``.

Response (https://ai.google.dev/api/generate-content#generatecontentresponse): candidates →
choices; ``finishReason`` → ``finish_reason`` (:data:`FINISH_REASONS`); ``usageMetadata`` →
``usage``. A prompt the safety system blocked (``promptFeedback.blockReason``, no
candidates) is answered as a 400 ``content_filter`` error, which relaygate treats as final
(:mod:`relaygate.strategies.finality`); a candidate stopped by it (``finishReason: SAFETY``
and the like) is a 200 with ``finish_reason: "content_filter"``, as OpenAI answers a filtered
completion.
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
from relaygate.providers.translation import Refused, openai_error

PROVIDER = "google"

FINISH_REASONS: Mapping[str, str] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "MODEL_ARMOR": "content_filter",
}
"""Gemini ``finishReason`` → OpenAI ``finish_reason``; any other value (``OTHER``,
``LANGUAGE``, ``MALFORMED_FUNCTION_CALL``...) reads as ``stop``, and ``STOP`` with a
function call as ``tool_calls``."""

GENERATION_PARAMS: Mapping[str, str] = {
    "temperature": "temperature",
    "top_p": "topP",
    "top_k": "topK",
    "max_tokens": "maxOutputTokens",
    "max_completion_tokens": "maxOutputTokens",
    "n": "candidateCount",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
    "seed": "seed",
}
"""OpenAI request fields copied into ``generationConfig`` under Gemini's name."""

PARAMETERS = ParameterTable(
    provider=PROVIDER,
    handled=READ_BY_ALL | {"response_format", *GENERATION_PARAMS},
    unsupported=COMMON_UNSUPPORTED
    | {"user", "logprobs", "parallel_tool_calls", "reasoning_effort"},
)
"""What a Gemini chat request honours, and the OpenAI parameters it does not (dropped with a
warning or, strict, refused: :mod:`relaygate.providers.parameters`)."""

TOOL_MODES: Mapping[str, str] = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
"""OpenAI ``tool_choice`` strings → ``functionCallingConfig.mode``."""


def chat_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """The ``generateContent`` body for an OpenAI chat request ``body`` (overrides merged).

    Raises :class:`~relaygate.errors.GatewayError` (400 ``unsupported_parameter``) for what
    Gemini cannot take: an image by URL rather than ``data:``, a non-function tool.
    """
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise unsupported(PROVIDER, "messages", "needs 'messages' to be a list")
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            text = text_of(content)
            if text:
                system.append({"text": text})
            continue
        if role == "assistant":
            parts = _text_parts(content)
            for call in _dicts(message.get("tool_calls")):
                function = call.get("function")
                function = function if isinstance(function, dict) else {}
                name = str(function.get("name", ""))
                call_names[str(call.get("id", ""))] = name
                parts.append({"functionCall": {"name": name, "args": _arguments(function)}})
            _append(contents, "model", parts)
        elif role == "tool":
            call_id = str(message.get("tool_call_id", ""))
            name = call_names.get(call_id) or str(message.get("name") or call_id)
            response = {"name": name, "response": _tool_result(content)}
            _append(contents, "user", [{"functionResponse": response}])
        else:
            _append(contents, "user", _user_parts(content))
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    config = _generation_config(body)
    if config:
        out["generationConfig"] = config
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        out["tools"] = [{"functionDeclarations": [_declaration(tool) for tool in tools]}]
    tool_config = _tool_config(body.get("tool_choice"))
    if tool_config is not None:
        out["toolConfig"] = tool_config
    return out


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The dict items of ``value`` when it is a list (anything else: none)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _append(contents: list[dict[str, Any]], role: str, parts: list[dict[str, Any]]) -> None:
    if not parts:
        return
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": parts})


def _text_parts(content: Any) -> list[dict[str, Any]]:
    text = text_of(content)
    return [{"text": text}] if text else []


def _user_parts(content: Any) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        return _text_parts(content)
    parts: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            parts.append({"text": part["text"]})
        elif part.get("type") == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            parts.append(_inline_data(url))
    return parts


def _inline_data(url: Any) -> dict[str, Any]:
    if isinstance(url, str) and url.startswith("data:") and ";base64," in url:
        mime, _, data = url[5:].partition(";base64,")
        return {"inlineData": {"mimeType": mime, "data": data}}
    raise unsupported(
        PROVIDER, "messages", "takes images as data: URLs only (base64), not by address"
    )


def _arguments(function: Mapping[str, Any]) -> Any:
    raw = function.get("arguments")
    if raw is None:
        return {}
    if isinstance(raw, str):
        try:
            raw = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError:
            return {"arguments": raw}
    return raw if isinstance(raw, dict) else {"arguments": raw}


def _tool_result(content: Any) -> dict[str, Any]:
    text = text_of(content)
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"content": text}
    return value if isinstance(value, dict) else {"content": value}


def _generation_config(body: Mapping[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for name, gemini in GENERATION_PARAMS.items():
        value = body.get(name)
        if value is not None and not isinstance(value, bool):
            config[gemini] = value
    stops = stop_list(body.get("stop"))
    if stops:
        config["stopSequences"] = stops
    response_format = body.get("response_format")
    if isinstance(response_format, dict):
        kind = response_format.get("type")
        if kind in ("json_object", "json_schema"):
            config["responseMimeType"] = "application/json"
        spec = response_format.get("json_schema")
        if (
            kind == "json_schema"
            and isinstance(spec, dict)
            and isinstance(spec.get("schema"), dict)
        ):
            config["responseJsonSchema"] = spec["schema"]
    return config


def _declaration(tool: Any) -> dict[str, Any]:
    function = tool.get("function") if isinstance(tool, dict) else None
    if (
        not isinstance(tool, dict)
        or tool.get("type") != "function"
        or not isinstance(function, dict)
    ):
        raise unsupported(PROVIDER, "tools", "takes only tools of type 'function'")
    declaration: dict[str, Any] = {"name": function.get("name", "")}
    if isinstance(function.get("description"), str):
        declaration["description"] = function["description"]
    if isinstance(function.get("parameters"), dict):
        declaration["parametersJsonSchema"] = function["parameters"]
    return declaration


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if isinstance(choice, str) and choice in TOOL_MODES:
        return {"functionCallingConfig": {"mode": TOOL_MODES[choice]}}
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str):
            return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    return None


# -- answers ------------------------------------------------------------------------------


def finish_reason(gemini: Any, has_calls: bool) -> str:
    """The OpenAI finish reason for a Gemini ``finishReason`` (see :data:`FINISH_REASONS`)."""
    reason = FINISH_REASONS.get(gemini, "stop") if isinstance(gemini, str) else "stop"
    return "tool_calls" if has_calls and reason == "stop" else reason


def usage_of(metadata: Any) -> dict[str, Any] | None:
    """OpenAI ``usage`` from ``usageMetadata`` (thinking tokens count as completion tokens,
    and as ``reasoning_tokens``; cached tokens as ``cached_tokens``)."""
    if not isinstance(metadata, dict):
        return None
    prompt = _count(metadata.get("promptTokenCount"))
    output = _count(metadata.get("candidatesTokenCount"))
    thoughts = _count(metadata.get("thoughtsTokenCount"))
    cached = _count(metadata.get("cachedContentTokenCount"))
    return usage_object(prompt, output + thoughts, cached or None, thoughts or None)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def call_id(response_id: str, candidate: int, position: int) -> str:
    """A tool call's id when Gemini gave none: unique within the answer."""
    return f"call_{response_id[-12:]}_{candidate}_{position}"


def candidate_parts(
    candidate: Mapping[str, Any], response_id: str, index: int, first_call: int = 0
) -> tuple[str, list[dict[str, Any]]]:
    """``(text, tool calls)`` of a candidate's parts; thought parts are left out."""
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, dict) or part.get("thought"):
            continue
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        call = part.get("functionCall")
        if isinstance(call, dict):
            given = call.get("id")
            ident = (
                given
                if isinstance(given, str) and given
                else call_id(response_id, index, first_call + len(calls))
            )
            arguments = orjson.dumps(call.get("args") or {}).decode()
            calls.append(tool_call(ident, str(call.get("name", "")), arguments))
    return "".join(texts), calls


def prompt_blocked(payload: Mapping[str, Any]) -> Refused | None:
    """The refusal for an answer whose prompt was blocked (no candidates), else ``None``."""
    feedback = payload.get("promptFeedback")
    reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
    if reason is None or payload.get("candidates"):
        return None
    message = f"gemini blocked the prompt (blockReason {str(reason)[:64]})"
    return Refused(400, openai_error(400, message, "content_filter", "messages"))


def chat_response(
    payload: Mapping[str, Any], model: str, created: int, fallback_id: str
) -> dict[str, Any]:
    """The OpenAI ``chat.completion`` for a ``generateContent`` answer.

    ``model`` is used when the answer names no ``modelVersion``, ``fallback_id`` when it has
    no ``responseId``. Raises :class:`Refused` for a blocked prompt.
    """
    refused = prompt_blocked(payload)
    if refused is not None:
        raise refused
    response_id = payload.get("responseId")
    ident = response_id if isinstance(response_id, str) and response_id else fallback_id
    candidates = payload.get("candidates")
    choices: list[dict[str, Any]] = []
    for position, candidate in enumerate(candidates if isinstance(candidates, list) else ()):
        if not isinstance(candidate, dict):
            continue
        index = candidate.get("index", position)
        index = index if isinstance(index, int) else position
        text, calls = candidate_parts(candidate, ident, index)
        reason = finish_reason(candidate.get("finishReason"), bool(calls))
        choices.append(message_choice(index, text or (None if calls else ""), calls, reason))
    version = payload.get("modelVersion")
    return completion(
        ident,
        version if isinstance(version, str) and version else model,
        created,
        choices,
        usage_of(payload.get("usageMetadata")),
    )
