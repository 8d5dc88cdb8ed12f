"""Cohere v2 ``/chat`` streams → OpenAI ``chat.completion.chunk`` events.

https://docs.cohere.com/docs/streaming: SSE events whose JSON ``type`` is ``message-start``
(the id), ``content-start``/``content-delta``/``content-end`` (text in
``delta.message.content.text``), ``tool-plan-delta`` (the model's plan, not passed on),
``tool-call-start`` (id and name), ``tool-call-delta`` (argument text), ``tool-call-end``,
``citation-*`` (not passed on) and ``message-end`` (``finish_reason`` and ``usage``), after
which the stream is complete: the finish chunk, usage and ``[DONE]`` are written then. Bytes
that end before ``message-end``, and a ``message-end`` whose ``finish_reason`` is ``ERROR``
or ``TIMEOUT``, are a broken stream.
"""

from __future__ import annotations

from typing import Any

import orjson

from relaygate.providers.chatshape import ChunkWriter
from relaygate.providers.client import StreamInterrupted
from relaygate.providers.cohere.chat import FAILED, finish_reason, usage_of


def _path(payload: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(payload, dict):
            return None
        payload = payload.get(key)
    return payload


class CohereStreamTranslator:
    """The :class:`~relaygate.providers.translation.EventTranslator` of one Cohere stream."""

    def __init__(self, writer: ChunkWriter) -> None:
        self._writer = writer
        self._ended = False
        self._calls = 0

    def feed(self, event: str | None, data: bytes) -> list[bytes]:
        """See :class:`~relaygate.providers.translation.EventTranslator`."""
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ValueError("a Cohere stream event is not JSON") from None
        if not isinstance(payload, dict) or self._ended:
            return []
        kind = payload.get("type", event)
        writer = self._writer
        if kind == "message-start":
            if isinstance(payload.get("id"), str) and payload["id"]:
                writer.id = payload["id"]
            return [writer.delta(0, {"content": ""})]
        if kind == "content-delta":
            text = _path(payload, "delta", "message", "content", "text")
            return [writer.delta(0, {"content": text})] if isinstance(text, str) and text else []
        if kind == "tool-call-start":
            call = _path(payload, "delta", "message", "tool_calls")
            call = call if isinstance(call, dict) else {}
            function = call.get("function")
            function = function if isinstance(function, dict) else {}
            entry = {
                "index": self._calls,
                "id": str(call.get("id", "")),
                "type": "function",
                "function": {
                    "name": str(function.get("name", "")),
                    "arguments": str(function.get("arguments", "") or ""),
                },
            }
            self._calls += 1
            return [writer.delta(0, {"tool_calls": [entry]})]
        if kind == "tool-call-delta":
            arguments = _path(payload, "delta", "message", "tool_calls", "function", "arguments")
            if not isinstance(arguments, str) or not arguments or not self._calls:
                return []
            entry = {"index": self._calls - 1, "function": {"arguments": arguments}}
            return [writer.delta(0, {"tool_calls": [entry]})]
        if kind == "message-end":
            self._ended = True
            reason = _path(payload, "delta", "finish_reason")
            if isinstance(reason, str) and reason in FAILED:
                raise StreamInterrupted(f"upstream stream ended with finish_reason {reason}")
            writer.finish(0, finish_reason(reason))
            return writer.close(usage_of(_path(payload, "delta", "usage")))
        return []

    @property
    def done(self) -> bool:
        """See :class:`~relaygate.providers.translation.EventTranslator`."""
        return self._writer.closed

    def end(self) -> list[bytes]:
        """See :class:`~relaygate.providers.translation.EventTranslator`."""
        if not self._ended:
            raise StreamInterrupted("upstream stream ended before its answer finished")
        return []
