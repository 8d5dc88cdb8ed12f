"""Anthropic's Messages event stream read as OpenAI ``chat.completion.chunk`` events.

Reference: https://docs.anthropic.com/en/docs/build-with-claude/streaming. Events may be
split anywhere across network reads: :class:`ChunkTranslator` buffers partial lines and
reads each complete ``data:`` line (Anthropic repeats the event name as the payload's
``type``, so ``event:`` lines are not needed):

- ``message_start`` → the role-only opening chunk (id and model from the message);
- ``content_block_start`` of a ``tool_use`` block → a ``tool_calls`` entry with its id and
  name (tool calls are indexed in the order their blocks start); text deltas → ``content``;
  ``input_json_delta`` → the tool call's ``arguments``; thinking blocks are not passed on;
- ``message_delta`` → a chunk with the mapped ``finish_reason``;
- ``message_stop`` → a last chunk with no choices carrying ``usage`` (always, whatever
  ``stream_options`` said), then ``data: [DONE]``;
- ``ping`` → nothing; ``error`` → :class:`~relaygate.providers.client.StreamInterrupted`
  (before the first chunk: a failed attempt that falls back; after: a mid-stream break);
- a stream ending before ``message_stop`` is a break too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from relaygate.providers.client import StreamInterrupted
from relaygate.sse import MAX_LINE_BYTES

DONE = b"data: [DONE]\n\n"

FINISH_REASONS: Mapping[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
"""Anthropic ``stop_reason`` → OpenAI ``finish_reason`` (an unknown one → ``stop``)."""


def finish_reason(stop_reason: Any) -> str | None:
    """The OpenAI ``finish_reason`` of an Anthropic ``stop_reason`` (``None`` for none)."""
    if not isinstance(stop_reason, str):
        return None
    return FINISH_REASONS.get(stop_reason, "stop")


def chat_usage(usage: Any) -> dict[str, Any]:
    """OpenAI's ``usage`` for Anthropic's: prompt tokens include cache reads and writes
    (``prompt_tokens_details.cached_tokens`` the reads); the cache counts are also kept
    under Anthropic's own names."""
    usage = usage if isinstance(usage, dict) else {}

    def count(name: str) -> int:
        value = usage.get(name)
        return value if isinstance(value, int) else 0

    read = count("cache_read_input_tokens")
    created = count("cache_creation_input_tokens")
    prompt = count("input_tokens") + read + created
    completion = count("output_tokens")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": read},
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": created,
    }


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class ChunkTranslator:
    """Pure, incremental translation (a :class:`~relaygate.translate.StreamTranslator`):
    :meth:`feed` bytes of Anthropic's stream, get bytes of OpenAI's; :meth:`end` at the end
    of the input."""

    def __init__(self, created: int) -> None:
        self._created = created
        self._buffer = b""
        self._id: str | None = None
        self._model: str | None = None
        self._usage: dict[str, Any] = {}
        self._tools: dict[int, int] = {}
        self.done = False

    def feed(self, data: bytes) -> bytes:
        """The OpenAI SSE bytes for the complete lines so far (``b""`` if none)."""
        buffer = self._buffer + data if self._buffer else data
        cut = buffer.rfind(b"\n")
        if cut < 0:
            if len(buffer) > MAX_LINE_BYTES:
                raise StreamInterrupted("anthropic stream line too long")
            self._buffer = buffer
            return b""
        self._buffer = buffer[cut + 1 :]
        out: list[bytes] = []
        for line in buffer[:cut].split(b"\n"):
            if line.startswith(b"data:") and not self.done:
                out.extend(self._event(line[5:].strip()))
        return b"".join(out)

    def end(self) -> bytes:
        """The end of the input: a last unterminated line is read; raises
        :class:`StreamInterrupted` when ``message_stop`` never came."""
        tail = self.feed(b"\n") if self._buffer else b""
        if not self.done:
            raise StreamInterrupted("anthropic stream ended before message_stop")
        return tail

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._data({"choices": [choice]})

    def _data(self, fields: dict[str, Any]) -> bytes:
        payload = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            **fields,
        }
        return b"data: " + orjson.dumps(payload) + b"\n\n"

    def _merge_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self._usage.update((k, v) for k, v in usage.items() if isinstance(v, int))

    def _event(self, raw: bytes) -> list[bytes]:
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(event, dict):
            return []
        kind = event.get("type")
        if kind == "message_start":
            message = _object(event.get("message"))
            self._id = message.get("id") if isinstance(message.get("id"), str) else None
            self._model = message.get("model") if isinstance(message.get("model"), str) else None
            self._merge_usage(message.get("usage"))
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = event.get("content_block")
            if not isinstance(block, dict):
                return []
            if block.get("type") == "tool_use":
                position = len(self._tools)
                self._tools[event.get("index", position)] = position
                call = {
                    "index": position,
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""},
                }
                return [self._chunk({"tool_calls": [call]})]
            if block.get("type") == "text" and block.get("text"):
                return [self._chunk({"content": block["text"]})]
            return []
        if kind == "content_block_delta":
            delta = event.get("delta")
            if not isinstance(delta, dict):
                return []
            if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                return [self._chunk({"content": delta["text"]})]
            tool = self._tools.get(event.get("index", -1))
            json = delta.get("partial_json")
            if delta.get("type") == "input_json_delta" and tool is not None and json:
                call = {"index": tool, "function": {"arguments": json}}
                return [self._chunk({"tool_calls": [call]})]
            return []
        if kind == "message_delta":
            self._merge_usage(event.get("usage"))
            delta = event.get("delta")
            reason = finish_reason(delta.get("stop_reason")) if isinstance(delta, dict) else None
            return [self._chunk({}, reason or "stop")]
        if kind == "message_stop":
            self.done = True
            return [self._data({"choices": [], "usage": chat_usage(self._usage)}), DONE]
        if kind == "error":
            error = _object(event.get("error"))
            what = str(error.get("type") or "error")[:64]
            text = str(error.get("message") or "")[:200]
            raise StreamInterrupted(f"anthropic sent an error event: {what}: {text}")
        return []
