"""Cohere's v2 wire format in the mock upstream: ``POST /v2/chat`` and ``POST /v2/embed``.

Chat answers ``{"id", "finish_reason", "message": {"role", "content": [{"type": "text"}]},
"usage": {"billed_units", "tokens"}}``; with ``"stream": true`` the SSE events
``message-start``, ``content-start``, ``content-delta``..., ``content-end``,
``message-end`` (each with its ``event:`` line). A request offering ``tools`` whose last
message is not a ``tool`` result is answered with a call of the first tool (``arguments``
``{"query": <mock name>}``, ``finish_reason: TOOL_CALL``; streamed as ``tool-plan-delta``,
``tool-call-start``, ``tool-call-delta``, ``tool-call-end``). Embed answers
``{"id", "embeddings": {"float": [...]}, "texts", "meta"}``. Errors are
``{"id", "message"}``. Shapes follow https://docs.cohere.com/reference/chat,
https://docs.cohere.com/docs/streaming and https://docs.cohere.com/reference/embed.
"""

from __future__ import annotations

from typing import Any

import orjson

from relaygate.mock.openai import (
    _EMBEDDING_DIMENSIONS,
    _embedding_vector,
    _prompt_tokens,
    _text_length,
)
from relaygate.mock.wire import Exchange, Frames, words


def _first_tool(body: dict[str, Any]) -> str | None:
    messages = body.get("messages") or []
    if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "tool":
        return None
    for tool in body.get("tools") or ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return str(function["name"])
    return None


class CohereWire:
    """:class:`~relaygate.mock.wire.Wire` for Cohere v2."""

    def validate(self, kind: str, body: dict[str, Any]) -> tuple[str, str] | None:
        """See :class:`~relaygate.mock.wire.Wire`."""
        if not isinstance(body.get("model"), str):
            return ("model", "'model' is required")
        if kind == "chat":
            messages = body.get("messages")
            if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                return ("messages", "'messages' must be a list of message objects")
        elif kind == "embed":
            texts = body.get("texts")
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                return ("texts", "'texts' must be a list of strings")
            if not isinstance(body.get("input_type"), str):
                return ("input_type", "'input_type' is required for embed v3+ models")
        return None

    def error(self, status: int, message: str, code: str | None) -> dict[str, Any]:
        """See :class:`~relaygate.mock.wire.Wire`."""
        return {"id": "mock-error", "message": message}

    def prompt_of(self, kind: str, body: dict[str, Any]) -> Any:
        """See :class:`~relaygate.mock.wire.Wire`."""
        return body.get("messages")

    def streamed(self, kind: str, exchange: Exchange) -> bool:
        """See :class:`~relaygate.mock.wire.Wire`."""
        return kind == "chat" and exchange.body.get("stream") is True

    def _usage(self, exchange: Exchange, output: str) -> dict[str, Any]:
        messages = exchange.body.get("messages") or []
        prompt = _prompt_tokens(sum(_text_length(m.get("content")) for m in messages))
        counts = {"input_tokens": prompt, "output_tokens": words(output)}
        return {"billed_units": dict(counts), "tokens": dict(counts)}

    def answer(self, kind: str, exchange: Exchange) -> dict[str, Any]:
        """See :class:`~relaygate.mock.wire.Wire`."""
        ident = f"mock{exchange.sequence:06d}"
        if kind == "embed":
            return self._embeddings(exchange, ident)
        tool = _first_tool(exchange.body)
        if tool is not None:
            call = {
                "id": f"call_{ident}",
                "type": "function",
                "function": {
                    "name": tool,
                    "arguments": orjson.dumps({"query": exchange.name}).decode(),
                },
            }
            message = {
                "role": "assistant",
                "tool_plan": "I will call the tool.",
                "tool_calls": [call],
            }
            return {
                "id": ident,
                "finish_reason": "TOOL_CALL",
                "message": message,
                "usage": self._usage(exchange, "call"),
            }
        message = {"role": "assistant", "content": [{"type": "text", "text": exchange.text}]}
        return {
            "id": ident,
            "finish_reason": "COMPLETE",
            "message": message,
            "usage": self._usage(exchange, exchange.text),
        }

    def stream(self, kind: str, exchange: Exchange, pieces: list[str]) -> Frames:
        """See :class:`~relaygate.mock.wire.Wire`."""
        whole = self.answer(kind, exchange)
        message = whole["message"]
        start = {
            "type": "message-start",
            "id": whole["id"],
            "delta": {
                "message": {
                    "role": "assistant",
                    "content": [],
                    "tool_plan": "",
                    "tool_calls": [],
                    "citations": [],
                }
            },
        }
        events = [_event(start)]
        calls = message.get("tool_calls")
        if calls:
            events.append(
                _event(
                    {
                        "type": "tool-plan-delta",
                        "delta": {"message": {"tool_plan": message["tool_plan"]}},
                    }
                )
            )
            call = calls[0]
            opening = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
            events.append(
                _event(
                    {
                        "type": "tool-call-start",
                        "index": 0,
                        "delta": {"message": {"tool_calls": opening}},
                    }
                )
            )
            arguments = call["function"]["arguments"]
            half = len(arguments) // 2
            for piece in (arguments[:half], arguments[half:]):
                events.append(
                    _event(
                        {
                            "type": "tool-call-delta",
                            "index": 0,
                            "delta": {
                                "message": {"tool_calls": {"function": {"arguments": piece}}}
                            },
                        }
                    )
                )
            events.append(_event({"type": "tool-call-end", "index": 0}))
        else:
            events.append(
                _event(
                    {
                        "type": "content-start",
                        "index": 0,
                        "delta": {"message": {"content": {"type": "text", "text": ""}}},
                    }
                )
            )
            for piece in pieces:
                events.append(
                    _event(
                        {
                            "type": "content-delta",
                            "index": 0,
                            "delta": {"message": {"content": {"text": piece}}},
                        }
                    )
                )
            events.append(_event({"type": "content-end", "index": 0}))
        end = {
            "type": "message-end",
            "delta": {"finish_reason": whole["finish_reason"], "usage": whole["usage"]},
        }
        events.append(_event(end))
        return Frames(events, first_content=2)

    def _embeddings(self, exchange: Exchange, ident: str) -> dict[str, Any]:
        body = exchange.body
        texts: list[str] = body["texts"]
        size = body.get("output_dimension", _EMBEDDING_DIMENSIONS)
        size = size if isinstance(size, int) and 0 < size <= 4096 else _EMBEDDING_DIMENSIONS
        tokens = _prompt_tokens(sum(len(t) for t in texts))
        return {
            "id": ident,
            "embeddings": {"float": [_embedding_vector(t.encode(), size) for t in texts]},
            "texts": texts,
            "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}},
            "response_type": "embeddings_by_type",
        }


def _event(payload: dict[str, Any]) -> bytes:
    kind: str = payload["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
