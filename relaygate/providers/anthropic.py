"""The ``anthropic`` provider: OpenAI chat requests translated to Anthropic's Messages API.

Pure translation both ways (reference: https://docs.anthropic.com/en/api/messages):

- request: ``system``/``developer`` messages become ``system``; ``max_tokens`` defaults to
  :data:`DEFAULT_MAX_TOKENS` (``max_completion_tokens`` wins over ``max_tokens``); user parts
  (text, ``image_url`` as a data URL or an http(s) URL) become content blocks; assistant
  ``tool_calls`` become ``tool_use`` blocks and ``tool`` messages ``tool_result`` blocks in a
  user turn (consecutive same-role turns are merged); ``tools``/``tool_choice``/
  ``parallel_tool_calls`` map to Anthropic's; ``stop`` becomes ``stop_sequences``;
  ``temperature``, ``top_p``, ``top_k`` pass on; ``user`` becomes ``metadata.user_id``.
- parameters Anthropic has no equivalent for (:data:`PARAMETERS`) are dropped with a
  warning log, or refused with a 400 ``unsupported_parameter`` when the request is strict
  (:mod:`relaygate.providers.parameters`);
- answer: content blocks become ``message.content``/``tool_calls``, ``stop_reason`` a
  ``finish_reason`` (:data:`FINISH_REASONS`), ``usage`` OpenAI's (cache read and creation
  tokens counted in ``prompt_tokens`` and reported as they are);
- errors: Anthropic's ``{"type": "error", "error": {"type", "message"}}`` becomes OpenAI's
  shape with the same status (``529 overloaded_error`` stays 529, which retry and fallback
  treat as 503: :data:`~relaygate.strategies.triggers.STATUS_ALIASES`);
- streams: :mod:`relaygate.providers.anthropic_stream`.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from relaygate.config.model import Target
from relaygate.errors import GatewayError, error_body
from relaygate.exchange import GatewayRequest, Operation
from relaygate.providers.anthropic_stream import ChunkTranslator, chat_usage, finish_reason
from relaygate.providers.base import UpstreamRequest
from relaygate.providers.openai_compat import json_headers, parse_json_object
from relaygate.providers.parameters import (
    COMMON_UNSUPPORTED,
    NO_PENALTIES,
    ParameterTable,
    strict_compliance,
    warn_dropped,
)
from relaygate.providers.parameters import STRICT_HEADER as STRICT_HEADER
from relaygate.strategies.attempt_bound import stream_idle_s
from relaygate.translate import StreamTranslator

BASE_URL = "https://api.anthropic.com/v1"
"""Where the Messages API lives (``custom_host`` replaces it, version path included)."""

API_VERSION = "2023-06-01"
"""The ``anthropic-version`` header sent (the target's ``api_version`` replaces it)."""

DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` sent when the request sets neither ``max_completion_tokens`` nor
``max_tokens`` (Anthropic requires one)."""

PASSED: Mapping[str, str] = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
}
"""Sampling parameters sent on under Anthropic's name."""

HANDLED: frozenset[str] = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "stream",
        "stream_options",  # usage always ends an Anthropic stream
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "user",
        "n",  # checked: only 1
        *PASSED,
    }
)
"""Request fields the translation reads."""

PARAMETERS = ParameterTable(
    provider="anthropic",
    handled=HANDLED,
    unsupported=COMMON_UNSUPPORTED | NO_PENALTIES | {"reasoning_effort"},
)
"""OpenAI chat parameters the Messages API cannot honour (dropped with a warning or, strict,
refused: :mod:`relaygate.providers.parameters`); other unknown fields are treated the same."""


ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
"""Anthropic's error ``type`` for each status (https://docs.anthropic.com/en/api/errors);
others: :func:`error_type`."""


def error_type(status: int) -> str:
    """Anthropic's error ``type`` for ``status``: :data:`ERROR_TYPES`, else
    ``invalid_request_error`` below 500 and ``api_error`` from 500."""
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def _refuse(message: str, param: str, code: str = "unsupported_parameter") -> GatewayError:
    return GatewayError(400, f"anthropic: {message}", code=code, param=param)


def _text_of(content: Any, param: str) -> str:
    """The text of a system/tool message ``content`` (a string or a list of text parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if len(texts) == len(content) and all(isinstance(t, str) for t in texts):
            return "".join(t for t in texts if isinstance(t, str))
    raise _refuse("only text content is accepted here", param, "invalid_value")


def image_block(url: str, param: str) -> dict[str, Any]:
    """An Anthropic ``image`` block for an OpenAI ``image_url`` (a base64 data URL or an
    http(s) URL)."""
    if url.startswith("data:"):
        head, _, data = url[5:].partition(",")
        media_type, _, encoding = head.partition(";")
        if encoding != "base64" or not media_type.startswith("image/"):
            raise _refuse("an image data URL must be base64 image data", param, "invalid_value")
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _refuse("an image data URL holds invalid base64", param, "invalid_value") from exc
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise _refuse("an image URL must be a data: or http(s) URL", param, "invalid_value")


def _user_blocks(content: Any, param: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise _refuse("message content must be a string or a list of parts", param, "invalid_type")
    blocks: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        where = f"{param}[{i}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise _refuse("image_url needs a url", where, "invalid_value")
            blocks.append(image_block(url, where))
        else:
            raise _refuse(f"content part type {str(kind)[:32]!r} is not supported", where)
    return blocks


def _tool_use(call: Any, param: str) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise _refuse("a tool call needs function.name", param, "invalid_value")
    arguments = function.get("arguments") or "{}"
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    except orjson.JSONDecodeError as exc:
        raise _refuse("tool call arguments are not JSON", param, "invalid_value") from exc
    if not isinstance(parsed, dict):
        raise _refuse("tool call arguments must be a JSON object", param, "invalid_value")
    return {
        "type": "tool_use",
        "id": str(call.get("id") or ""),
        "name": function["name"],
        "input": parsed,
    }


def _turns(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(system blocks, messages)`` of an OpenAI ``messages`` list."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _refuse("each message must be an object", param, "invalid_type")
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            text = _text_of(content, f"{param}.content")
            if text:
                system.append({"type": "text", "text": text})
        elif role == "user":
            add("user", _user_blocks(content, f"{param}.content"))
        elif role == "assistant":
            blocks: list[dict[str, Any]] = []
            text = _text_of(content, f"{param}.content")
            if text:
                blocks.append({"type": "text", "text": text})
            for j, call in enumerate(message.get("tool_calls") or []):
                blocks.append(_tool_use(call, f"{param}.tool_calls[{j}]"))
            if blocks:
                add("assistant", blocks)
        elif role == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": str(message.get("tool_call_id") or ""),
                "content": _text_of(content, f"{param}.content"),
            }
            add("user", [result])
        else:
            raise _refuse(f"message role {str(role)[:32]!r} is not supported", f"{param}.role")
    return system, turns


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _refuse("tools must be a list", "tools", "invalid_type")
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if (
            not isinstance(tool, dict)
            or tool.get("type") != "function"
            or not isinstance(function, dict)
        ):
            raise _refuse("only function tools are supported", f"tools[{i}]")
        entry: dict[str, Any] = {
            "name": function.get("name"),
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
        }
        if function.get("description"):
            entry["description"] = function["description"]
        out.append(entry)
    return out


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    mapped: dict[str, Any] | None
    if choice is None:
        mapped = {"type": "auto"} if parallel is False else None
    elif choice == "auto":
        mapped = {"type": "auto"}
    elif choice == "required":
        mapped = {"type": "any"}
    elif choice == "none":
        mapped = {"type": "none"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        mapped = {"type": "tool", "name": choice["function"].get("name")}
    else:
        raise _refuse("tool_choice is not one OpenAI defines", "tool_choice", "invalid_value")
    if mapped is not None and parallel is False and mapped["type"] != "none":
        mapped["disable_parallel_tool_use"] = True
    return mapped


def to_messages_request(
    body: Mapping[str, Any], *, strict: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """The Messages API body for an OpenAI chat ``body``, and the names of the parameters
    dropped (sorted). ``strict`` refuses a dropped parameter instead. A last assistant
    message is sent as Anthropic's prefill (the answer continues it). Raises a 400
    :class:`GatewayError` for what cannot be translated."""
    dropped = PARAMETERS.screen(body, strict=strict)
    n = body.get("n")
    if n not in (None, 1):
        raise _refuse("only n=1 is supported", "n")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _refuse("'messages' must be a non-empty list", "messages", "invalid_type")
    system, turns = _turns(messages)
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    out: dict[str, Any] = {"model": body.get("model"), "max_tokens": max_tokens, "messages": turns}
    if system:
        out["system"] = system
    for name, wire in PASSED.items():
        if body.get(name) is not None:
            out[wire] = body[name]
    stop = body.get("stop")
    if stop is not None:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
    choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if choice is not None and "tools" in out:
        out["tool_choice"] = choice
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    if body.get("stream") is True:
        out["stream"] = True
    return out, dropped


COUNTED_FIELDS: frozenset[str] = frozenset({"model", "messages", "system", "tools", "tool_choice"})
"""The Messages request fields ``/v1/messages/count_tokens`` takes
(https://docs.anthropic.com/en/api/messages-count-tokens)."""


def token_count(payload: Mapping[str, Any]) -> dict[str, int]:
    """``{"input_tokens": n}`` of a count_tokens answer; :class:`ValueError` when it has no
    count."""
    count = payload.get("input_tokens")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ValueError("upstream answered a token count without input_tokens")
    return {"input_tokens": count}


def tool_call(block: Mapping[str, Any], arguments: str | None = None) -> dict[str, Any]:
    """The OpenAI ``tool_calls`` entry of a ``tool_use`` block."""
    args = arguments if arguments is not None else orjson.dumps(block.get("input") or {}).decode()
    return {
        "id": block.get("id"),
        "type": "function",
        "function": {"name": block.get("name"), "arguments": args},
    }


def to_chat_completion(message: Mapping[str, Any], created: int) -> dict[str, Any]:
    """The ``chat.completion`` for an Anthropic ``message``; :class:`ValueError` when it is
    not one."""
    if message.get("type") != "message" or not isinstance(message.get("content"), list):
        raise ValueError("upstream answered with JSON that is not an Anthropic message")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message["content"]:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            calls.append(tool_call(block))
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        reply["tool_calls"] = calls
    return {
        "id": message.get("id"),
        "object": "chat.completion",
        "created": created,
        "model": message.get("model"),
        "choices": [
            {
                "index": 0,
                "message": reply,
                "logprobs": None,
                "finish_reason": finish_reason(message.get("stop_reason")) or "stop",
            }
        ],
        "usage": chat_usage(message.get("usage")),
    }


def openai_error(status: int, body: bytes) -> bytes:
    """OpenAI's error shape for an Anthropic error ``body`` answered with ``status``: the
    Anthropic ``error.type`` is both ``type`` and ``code``."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(kind, str) or len(kind) > 64:
        kind = error_type(status)
    if not isinstance(message, str):
        message = f"upstream 'anthropic' answered {status}"
    return error_body(message, type=kind, code=kind)


@dataclass(frozen=True, slots=True)
class Anthropic:
    """The ``anthropic`` provider (chat only), a
    :class:`~relaygate.providers.base.TranslatingAdapter`: ``x-api-key`` and
    ``anthropic-version`` headers, ``POST {base}/messages``. ``clock`` stamps ``created`` on
    answers."""

    name: str = "anthropic"
    base_url: str = BASE_URL
    clock: Callable[[], float] = time.time
    stream_content_types: tuple[str, ...] = ()

    def build_request(
        self, request: GatewayRequest, target: Target, extra_headers: Mapping[str, str]
    ) -> UpstreamRequest:
        """See :meth:`relaygate.providers.base.ProviderAdapter.build_request`; token
        counting (:data:`~relaygate.exchange.Operation.COUNT_TOKENS`) sends the
        :data:`COUNTED_FIELDS` of the same translation to ``{base}/messages/count_tokens``."""
        counting = request.operation is Operation.COUNT_TOKENS
        if request.operation is not Operation.CHAT and not counting:
            raise GatewayError(
                400,
                f"provider '{self.name}' does not serve {request.operation.value}",
                code="unsupported_operation",
            )
        body = (
            {**request.body, **target.override_params} if target.override_params else request.body
        )
        wire, dropped = to_messages_request(body, strict=strict_compliance(request, target))
        warn_dropped(self.name, request, target, dropped)
        if counting:
            wire = {k: v for k, v in wire.items() if k in COUNTED_FIELDS}
        version = str(target.provider_options.get("api_version") or API_VERSION)
        headers = json_headers(request.stream, extra_headers, {"anthropic-version": version})
        if target.api_key:
            headers["x-api-key"] = target.api_key.reveal()
        return UpstreamRequest(
            method="POST",
            url=(target.custom_host or self.base_url)
            + ("/messages/count_tokens" if counting else "/messages"),
            headers=headers,
            content=orjson.dumps(wire),
            stream=request.stream,
            idle_timeout_s=stream_idle_s(target.stream_idle_timeout_ms, target.request_timeout_ms),
        )

    def parse_response(self, request: GatewayRequest, status: int, body: bytes) -> Any:
        """The ``chat.completion`` of an Anthropic message answer; for token counting,
        ``{"input_tokens": n}`` as Anthropic answered it."""
        payload = parse_json_object(body)
        if request.operation is Operation.COUNT_TOKENS:
            return token_count(payload)
        return to_chat_completion(payload, int(self.clock()))

    def stream_translator(self, request: GatewayRequest) -> StreamTranslator:
        """OpenAI chunks read from Anthropic's event stream (:class:`ChunkTranslator`)."""
        return ChunkTranslator(int(self.clock()))

    def error_body(self, status: int, headers: Mapping[str, str], body: bytes) -> bytes:
        """See :func:`openai_error`."""
        return openai_error(status, body)
