"""ConverseStream's ``application/vnd.amazon.eventstream`` answer → OpenAI chat chunks.

The binary framing (prelude, headers, payload, CRC32s) is decoded by botocore's own
:class:`botocore.eventstream.EventStreamBuffer`, which carries a frame cut anywhere
across reads. Each event's ``:event-type`` header names it (``messageStart``,
``contentBlockStart``, ``contentBlockDelta``, ``contentBlockStop``, ``messageStop``,
``metadata``); an event of ``:message-type`` ``exception`` (``throttlingException``,
``modelStreamErrorException``...) breaks the stream, like a cut connection.

Chunks follow OpenAI's streaming shape: a role-only opening, content and tool-call
deltas, one chunk with the finish reason, then (when ``stream_options.include_usage``
asked for it) a chunk with no choices and the usage, and ``data: [DONE]``. Without
``include_usage`` the usage rides on the finish-reason chunk, so telemetry still counts
the tokens.
"""

from __future__ import annotations

from typing import Any

import orjson

from relaygate.providers.bedrock.converse import finish_reason, openai_usage

DONE = b"data: [DONE]\n\n"


class ConverseStreamTranslator:
    """A :class:`~relaygate.translate.StreamTranslator` for one ConverseStream answer.

    ``response_id``, ``model`` and ``created`` fill every chunk; ``include_usage`` sends
    the separate usage chunk.
    """

    def __init__(self, *, response_id: str, model: str, created: int, include_usage: bool) -> None:
        from botocore.eventstream import EventStreamBuffer, ParserError  # on first use

        self._buffer = EventStreamBuffer()
        self._malformed: type[Exception] = ParserError
        self._id = response_id
        self._model = model
        self._created = created
        self._include_usage = include_usage
        self._tools: dict[int, int] = {}
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None
        self._closed = False
        self._pending: ValueError | None = None

    @property
    def done(self) -> bool:
        """Whether the closing chunks and ``[DONE]`` have been written."""
        return self._closed

    def feed(self, data: bytes) -> bytes:
        """See :meth:`relaygate.translate.StreamTranslator.feed`.

        Events decoded before a failure (an exception event, a corrupt frame) in the same
        read are answered first; the failure is raised by the next call.
        """
        self._raise_pending()
        self._buffer.add_data(data)
        out: list[bytes] = []
        try:
            for message in self._buffer:
                out.extend(self._event(message.headers, message.payload))
        except self._malformed as exc:
            self._pending = ValueError(f"bedrock event stream is malformed ({type(exc).__name__})")
        except ValueError as exc:
            self._pending = exc
        if not out:
            self._raise_pending()
        return b"".join(out)

    def _raise_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            raise pending

    def end(self) -> bytes:
        """See :meth:`relaygate.translate.StreamTranslator.end`."""
        self._raise_pending()
        if self._finish is None:
            raise ValueError("bedrock event stream ended before messageStop")
        return self._close()

    def _event(self, headers: dict[str, Any], payload: bytes) -> list[bytes]:
        kind = headers.get(":message-type")
        if kind != "event":
            name = headers.get(":exception-type") or headers.get(":error-code") or "error"
            raise ValueError(f"bedrock sent {str(name)[:64]}: {_message_of(payload)}")
        try:
            event = orjson.loads(payload) if payload else {}
        except orjson.JSONDecodeError:
            raise ValueError("bedrock sent an event that is not JSON") from None
        if not isinstance(event, dict):
            return []
        name = headers.get(":event-type")
        if name == "messageStart":
            return [self._chunk({"role": "assistant", "content": ""})]
        if name == "contentBlockStart":
            return self._block_start(event)
        if name == "contentBlockDelta":
            return self._block_delta(event)
        if name == "messageStop":
            self._finish = finish_reason(event.get("stopReason"))
            return []
        if name == "metadata":
            self._usage = openai_usage(event.get("usage"))
            return [self._close()] if self._finish is not None else []
        return []

    def _block_start(self, event: dict[str, Any]) -> list[bytes]:
        start = event.get("start")
        use = start.get("toolUse") if isinstance(start, dict) else None
        if not isinstance(use, dict):
            return []
        index = len(self._tools)
        self._tools[_block_index(event)] = index
        call = {
            "index": index,
            "id": str(use.get("toolUseId", "")),
            "type": "function",
            "function": {"name": str(use.get("name", "")), "arguments": ""},
        }
        return [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, event: dict[str, Any]) -> list[bytes]:
        delta = event.get("delta")
        if not isinstance(delta, dict):
            return []
        text = delta.get("text")
        if isinstance(text, str):
            return [self._chunk({"content": text})] if text else []
        use = delta.get("toolUse")
        if isinstance(use, dict) and isinstance(use.get("input"), str):
            index = self._tools.get(_block_index(event), 0)
            call = {"index": index, "function": {"arguments": use["input"]}}
            return [self._chunk({"tool_calls": [call]})]
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict) and isinstance(reasoning.get("text"), str):
            return [self._chunk({"reasoning_content": reasoning["text"]})]
        return []

    def _close(self) -> bytes:
        """The finish-reason chunk, the usage chunk when asked, and ``[DONE]`` (once)."""
        if self._closed:
            return b""
        self._closed = True
        last: dict[str, Any] = self._frame([_choice({}, self._finish or "stop")])
        usage = self._usage
        parts: list[bytes] = []
        if usage is not None and not self._include_usage:
            last["usage"] = usage
        parts.append(_sse(last))
        if usage is not None and self._include_usage:
            parts.append(_sse({**self._frame([]), "usage": usage}))
        parts.append(DONE)
        return b"".join(parts)

    def _frame(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": choices,
        }

    def _chunk(self, delta: dict[str, Any]) -> bytes:
        return _sse(self._frame([_choice(delta, None)]))


def _choice(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _block_index(event: dict[str, Any]) -> int:
    index = event.get("contentBlockIndex")
    return index if isinstance(index, int) else 0


def _message_of(payload: bytes) -> str:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return "no message"
    message = body.get("message") if isinstance(body, dict) else None
    return message[:500] if isinstance(message, str) else "no message"
