"""The ``POST /v1/messages`` front door: Anthropic's Messages API over the chat pipeline.

Pure translation (reference: https://docs.anthropic.com/en/api/messages and
https://docs.anthropic.com/en/docs/build-with-claude/streaming):

- :func:`to_chat_request`: an Anthropic request → the OpenAI chat request the pipeline
  serves (``system`` → a system message; text and image blocks → content parts;
  ``tool_use``/``tool_result`` blocks → assistant ``tool_calls`` and ``tool`` messages;
  ``tools``/``tool_choice``; ``stop_sequences`` → ``stop``; ``temperature``/``top_p``;
  ``metadata.user_id`` → ``user``; ``stream`` with ``stream_options.include_usage``).
  Fields in :data:`DROPPED` (``thinking``, ``top_k``, ``cache_control``...) are not passed
  on; anything that is not a valid Messages request is a 400;
- :func:`to_message`: a ``chat.completion`` → an Anthropic ``message``;
- :class:`EventTranslator`: OpenAI chunk events → Anthropic events (``event:`` lines,
  ``message_start``, ``content_block_*``, ``message_delta`` with ``usage``,
  ``message_stop``; an in-band OpenAI error → ``event: error``);
- :func:`anthropic_error`: an OpenAI error body → Anthropic's error shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from relaygate.errors import GatewayError
from relaygate.providers.anthropic import error_type
from relaygate.sse import MAX_LINE_BYTES

STOP_REASONS: Mapping[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
"""OpenAI ``finish_reason`` → Anthropic ``stop_reason`` (unknown: ``end_turn``)."""

DROPPED: frozenset[str] = frozenset(
    {"thinking", "top_k", "service_tier", "container", "mcp_servers", "context_management"}
)
"""Messages API fields the chat pipeline has no place for; not passed on."""


def _bad(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, code="invalid_request_error", param=param)


def anthropic_error(status: int, body: bytes) -> bytes:
    """``{"type": "error", "error": {"type", "message"}}`` for an OpenAI error ``body``."""
    message = None
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        message = error["message"]
    return orjson.dumps(
        {
            "type": "error",
            "error": {"type": error_type(status), "message": message or f"status {status}"},
        }
    )


def _text_parts(blocks: Any, param: str) -> str:
    if isinstance(blocks, str):
        return blocks
    if not isinstance(blocks, list):
        raise _bad(f"{param}: expected a string or a list of text blocks", param)
    texts: list[str] = []
    for block in blocks:
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _bad(f"{param}: only text blocks are accepted here", param)
        text = block.get("text")
        if not isinstance(text, str):
            raise _bad(f"{param}: a text block needs text", param)
        texts.append(text)
    return "".join(texts)


def _image_part(block: Mapping[str, Any], param: str) -> dict[str, Any]:
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif isinstance(source, dict) and source.get("type") == "url":
        url = str(source.get("url"))
    else:
        raise _bad(f"{param}: an image needs a base64 or url source", param)
    return {"type": "image_url", "image_url": {"url": url}}


def _user_messages(content: Any, param: str) -> list[dict[str, Any]]:
    """Chat messages for one user turn: its tool results first (as ``tool`` messages),
    then its other content as one user message."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list):
        raise _bad(f"{param}: content must be a string or a list of blocks", param)
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        where = f"{param}[{i}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            parts.append(_image_part(block, where))
        elif kind == "tool_result":
            result = block.get("content")
            text = "" if result is None else _text_parts(result, f"{where}.content")
            if block.get("is_error") is True:
                text = f"Error: {text}"
            out.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text})
        else:
            raise _bad(f"{where}: block type {str(kind)[:32]!r} is not supported", where)
    if parts:
        plain = all(p["type"] == "text" for p in parts)
        value: Any = "".join(p["text"] for p in parts) if plain else parts
        out.append({"role": "user", "content": value})
    return out


def _assistant_message(content: Any, param: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise _bad(f"{param}: content must be a string or a list of blocks", param)
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            function = {"name": block.get("name"), "arguments": arguments}
            calls.append({"id": block.get("id"), "type": "function", "function": function})
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise _bad(f"{param}[{i}]: block type {str(kind)[:32]!r} is not supported")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_choice(choice: Any) -> tuple[Any, bool | None]:
    if not isinstance(choice, dict):
        raise _bad("tool_choice must be an object", "tool_choice")
    kind = choice.get("type")
    parallel = False if choice.get("disable_parallel_tool_use") is True else None
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", None
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}, parallel
    raise _bad("tool_choice.type must be auto, any, tool or none", "tool_choice")


def to_chat_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAI chat request for a Messages API request ``body`` (400 when invalid)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model: a model name is required", "model")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise _bad("max_tokens: a positive integer is required", "max_tokens")
    turns = body.get("messages")
    if not isinstance(turns, list) or not turns:
        raise _bad("messages: a non-empty list is required", "messages")
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system is not None:
        text = _text_parts(system, "system")
        if text:
            messages.append({"role": "system", "content": text})
    for i, turn in enumerate(turns):
        param = f"messages[{i}]"
        role = turn.get("role") if isinstance(turn, dict) else None
        if role == "user":
            messages.extend(_user_messages(turn.get("content"), f"{param}.content"))
        elif role == "assistant":
            messages.append(_assistant_message(turn.get("content"), f"{param}.content"))
        else:
            raise _bad(f"{param}.role: must be user or assistant", f"{param}.role")
    chat: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens}
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            chat[name] = body[name]
    stops = body.get("stop_sequences")
    if stops:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _bad("stop_sequences: a list of strings is required", "stop_sequences")
        chat["stop"] = stops
    tools = body.get("tools")
    if tools:
        chat["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    if body.get("tool_choice") is not None:
        choice, parallel = _tool_choice(body["tool_choice"])
        chat["tool_choice"] = choice
        if parallel is not None and tools:
            chat["parallel_tool_calls"] = parallel
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        chat["user"] = metadata["user_id"]
    if body.get("stream") is True:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


def _tool(tool: Any, param: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
        raise _bad(f"{param}: a tool needs a name", param)
    if tool.get("type") not in (None, "custom"):
        raise _bad(f"{param}: server tools ({str(tool.get('type'))[:40]}) are not supported", param)
    function: dict[str, Any] = {
        "name": tool["name"],
        "parameters": tool.get("input_schema") or {"type": "object", "properties": {}},
    }
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def message_usage(usage: Any) -> dict[str, int]:
    """Anthropic's ``usage`` for an OpenAI one (cache reads out of the input count)."""
    usage = usage if isinstance(usage, dict) else {}

    def count(value: Any) -> int:
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    details = usage.get("prompt_tokens_details")
    read = count(usage.get("cache_read_input_tokens")) or count(
        details.get("cached_tokens") if isinstance(details, dict) else None
    )
    created = count(usage.get("cache_creation_input_tokens"))
    return {
        "input_tokens": max(count(usage.get("prompt_tokens")) - read - created, 0),
        "output_tokens": count(usage.get("completion_tokens")),
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": created,
    }


def _tool_input(arguments: Any) -> Any:
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) and arguments else {}
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def to_message(chat: Mapping[str, Any]) -> dict[str, Any]:
    """The Anthropic ``message`` for an OpenAI ``chat.completion`` (its first choice)."""
    choices = chat.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    reply = choice.get("message") if isinstance(choice, dict) else None
    reply = reply if isinstance(reply, dict) else {}
    content: list[dict[str, Any]] = []
    if isinstance(reply.get("content"), str) and reply["content"]:
        content.append({"type": "text", "text": reply["content"]})
    for call in reply.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            content.append(
                {
                    "type": "tool_use",
                    "id": call.get("id"),
                    "name": function.get("name"),
                    "input": _tool_input(function.get("arguments")),
                }
            )
    finish = choice.get("finish_reason") if isinstance(choice, dict) else None
    return {
        "id": chat.get("id"),
        "type": "message",
        "role": "assistant",
        "model": chat.get("model"),
        "content": content,
        "stop_reason": STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else None,
        "stop_sequence": None,
        "usage": message_usage(chat.get("usage")),
    }


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def event(name: str, payload: Mapping[str, Any]) -> bytes:
    """One Anthropic SSE event."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class EventTranslator:
    """Pure, incremental (a :class:`~relaygate.translate.StreamTranslator`): :meth:`feed`
    OpenAI chunk SSE bytes (split anywhere), get Anthropic event bytes; :meth:`end` at the
    end. Text and each tool call become
    content blocks in the order they start; ``message_delta`` (stop reason, usage) and
    ``message_stop`` follow ``[DONE]``, or the end of a stream that had finished."""

    def __init__(self) -> None:
        self._buffer = b""
        self._started = False
        self._block: tuple[str, int] | None = None
        self._blocks = 0
        self._finish: str | None = None
        self._usage: Any = None
        self.done = False

    def feed(self, data: bytes) -> bytes:
        """Anthropic events for the complete lines so far."""
        buffer = self._buffer + data if self._buffer else data
        cut = buffer.rfind(b"\n")
        if cut < 0:
            self._buffer = buffer if len(buffer) <= MAX_LINE_BYTES else b""
            return b""
        self._buffer = buffer[cut + 1 :]
        out: list[bytes] = []
        for line in buffer[:cut].split(b"\n"):
            if line.startswith(b"data:") and not self.done:
                out.extend(self._data(line[5:].strip()))
        return b"".join(out)

    def end(self) -> bytes:
        """The end of the input: the closing events if the answer finished, else an error
        event (the stream ended early)."""
        if self.done:
            return b""
        if self._finish is not None:
            return b"".join(self._end())
        self.done = True
        return self._error("api_error", "the upstream stream ended before the answer did")

    def _error(self, kind: str, message: str) -> bytes:
        return event("error", {"type": "error", "error": {"type": kind, "message": message}})

    def _start(self, chunk: Mapping[str, Any]) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        message: dict[str, Any] = {
            "id": chunk.get("id"),
            "type": "message",
            "role": "assistant",
            "model": chunk.get("model"),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [event("message_start", {"type": "message_start", "message": message})]

    def _close_block(self) -> list[bytes]:
        if self._block is None:
            return []
        index = self._block[1]
        self._block = None
        return [event("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _open(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        out = self._close_block()
        index = self._blocks
        self._blocks += 1
        self._block = (kind, index)
        start = {"type": "content_block_start", "index": index, "content_block": block}
        out.append(event("content_block_start", start))
        return out

    def _delta(self, delta: dict[str, Any]) -> bytes:
        assert self._block is not None
        payload = {"type": "content_block_delta", "index": self._block[1], "delta": delta}
        return event("content_block_delta", payload)

    def _end(self) -> list[bytes]:
        self.done = True
        out = self._close_block()
        delta = {
            "type": "message_delta",
            "delta": {
                "stop_reason": STOP_REASONS.get(self._finish or "", "end_turn"),
                "stop_sequence": None,
            },
            "usage": message_usage(self._usage),
        }
        out.append(event("message_delta", delta))
        out.append(event("message_stop", {"type": "message_stop"}))
        return out

    def _data(self, raw: bytes) -> list[bytes]:
        if raw == b"[DONE]":
            return self._end()
        try:
            chunk = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(chunk, dict):
            return []
        error = chunk.get("error")
        if isinstance(error, dict):
            self.done = True
            return [self._error("api_error", str(error.get("message") or "upstream error"))]
        out = self._start(chunk)
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = _object(choice.get("delta"))
            text = delta.get("content")
            if isinstance(text, str) and text:
                if self._block is None or self._block[0] != "text":
                    out.extend(self._open("text", {"type": "text", "text": ""}))
                out.append(self._delta({"type": "text_delta", "text": text}))
            for call in delta.get("tool_calls") or []:
                out.extend(self._tool_delta(call))
            if isinstance(choice.get("finish_reason"), str):
                self._finish = choice["finish_reason"]
        return out

    def _tool_delta(self, call: Any) -> list[bytes]:
        if not isinstance(call, dict):
            return []
        function = _object(call.get("function"))
        out: list[bytes] = []
        kind = f"tool{call.get('index', 0)}"
        if self._block is None or self._block[0] != kind:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": {},
            }
            out.extend(self._open(kind, block))
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            out.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
        return out
