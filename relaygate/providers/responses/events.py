"""A chat completions stream → Responses API streaming events (pure, incremental).

Events, each ``event: <type>`` + ``data: <json>`` with an increasing ``sequence_number``:
``response.created`` and ``response.in_progress`` on the first chunk; for text,
``response.output_item.added`` (a ``message``), ``response.content_part.added``,
``response.output_text.delta`` per piece, then ``response.output_text.done``,
``response.content_part.done``, ``response.output_item.done``; for each tool call,
``response.output_item.added`` (a ``function_call``),
``response.function_call_arguments.delta`` per piece, then
``response.function_call_arguments.done`` and ``response.output_item.done``; last,
``response.completed`` (or ``response.incomplete``) with the whole response and its
usage. A Responses stream has no ``[DONE]``. An in-band error event of the chat stream
(``data: {"error": ...}``) is passed on as it is, which the openai SDK raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from relaygate.providers.responses.answer import (
    call_item,
    finish,
    message_item,
    response_id,
    shell,
    usage_of,
)
from relaygate.sse import MAX_LINE_BYTES


class _Call:
    __slots__ = ("arguments", "call_id", "item_id", "name", "output_index")

    def __init__(self, call_id: str, name: str, output_index: int) -> None:
        self.call_id = call_id
        self.item_id = "fc_" + call_id
        self.name = name
        self.arguments = ""
        self.output_index = output_index


class ResponsesEvents:
    """A :class:`~relaygate.translate.StreamTranslator` from chat SSE to Responses
    events, for one stream answering ``request`` (the Responses request body)."""

    def __init__(self, request: Mapping[str, Any], *, created: int) -> None:
        self._request = request
        self._created = created
        self._tail = b""
        self._seq = 0
        self._response: dict[str, Any] | None = None
        self._text: str | None = None
        self._text_index = 0
        self._message_id = ""
        self._calls: dict[int, _Call] = {}
        self._outputs = 0
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None
        self._done = False

    @property
    def done(self) -> bool:
        """Whether the last event (``response.completed``, ``.incomplete``, or an in-band
        error) has been written."""
        return self._done

    def feed(self, data: bytes) -> bytes:
        """See :meth:`relaygate.translate.StreamTranslator.feed`."""
        data = self._tail + data if self._tail else data
        cut = data.rfind(b"\n")
        if cut < 0:
            if len(data) > MAX_LINE_BYTES:
                raise ValueError("a stream line is longer than the gateway reads")
            self._tail = data
            return b""
        self._tail = data[cut + 1 :]
        out: list[bytes] = []
        for line in data[:cut].split(b"\n"):
            line = line.rstrip(b"\r")
            if line.startswith(b"data:"):
                out.extend(self._data(line[5:].strip()))
        return b"".join(out)

    def end(self) -> bytes:
        """See :meth:`relaygate.translate.StreamTranslator.end`."""
        tail = self.feed(b"\n") if self._tail else b""
        if self._done:
            return tail
        if self._finish is None:
            raise ValueError("the chat stream ended before its finish reason")
        return tail + self._complete()

    def _data(self, raw: bytes) -> list[bytes]:
        if self._done:
            return []
        if raw == b"[DONE]":
            return [self._complete()] if self._response is not None else []
        try:
            chunk = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(chunk, dict):
            return []
        if "error" in chunk and "choices" not in chunk:
            self._done = True
            return [b"data: " + raw + b"\n\n"]
        out: list[bytes] = []
        if self._response is None:
            model = chunk.get("model")
            self._response = shell(
                self._request,
                rid=response_id(chunk.get("id")),
                model=model if isinstance(model, str) else str(self._request.get("model", "")),
                created=self._created,
            )
            self._message_id = "msg_" + self._response["id"][5:]
            out.append(self._event("response.created", response=self._response))
            out.append(self._event("response.in_progress", response=self._response))
        usage = usage_of(chunk.get("usage"))
        if usage is not None:
            self._usage = usage
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                out.extend(self._delta(delta))
            if isinstance(choice.get("finish_reason"), str):
                self._finish = choice["finish_reason"]
        return out

    def _delta(self, delta: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        text = delta.get("content")
        if isinstance(text, str) and text:
            if self._text is None:
                self._text = ""
                self._text_index = self._outputs
                self._outputs += 1
                item = message_item(self._message_id, "", "in_progress")
                item["content"] = []
                out.append(self._item_event("response.output_item.added", self._text_index, item))
                out.append(self._part_event("response.content_part.added", ""))
            self._text += text
            out.append(
                self._event(
                    "response.output_text.delta",
                    item_id=self._message_id,
                    output_index=self._text_index,
                    content_index=0,
                    delta=text,
                    logprobs=[],
                )
            )
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                out.extend(self._call_delta(call))
        return out

    def _call_delta(self, delta: dict[str, Any]) -> list[bytes]:
        index = delta.get("index", 0)
        raw = delta.get("function")
        function: dict[str, Any] = raw if isinstance(raw, dict) else {}
        call = self._calls.get(index)
        out: list[bytes] = []
        if call is None:
            call_id = str(delta.get("id") or f"call_{index}")
            call = _Call(call_id, str(function.get("name") or ""), self._outputs)
            self._outputs += 1
            self._calls[index] = call
            item = call_item(call.item_id, call.call_id, call.name, "", "in_progress")
            out.append(self._item_event("response.output_item.added", call.output_index, item))
        piece = function.get("arguments")
        if isinstance(piece, str) and piece:
            call.arguments += piece
            out.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=call.item_id,
                    output_index=call.output_index,
                    delta=piece,
                )
            )
        return out

    def _complete(self) -> bytes:
        """Close every open item, then ``response.completed`` (or ``.incomplete``)."""
        self._done = True
        response = self._response
        if response is None:
            response = self._response = shell(
                self._request,
                rid=response_id(None),
                model=str(self._request.get("model", "")),
                created=self._created,
            )
        out: list[bytes] = []
        items: list[tuple[int, dict[str, Any]]] = []
        if self._text is not None:
            text = self._text
            out.append(
                self._event(
                    "response.output_text.done",
                    item_id=self._message_id,
                    output_index=self._text_index,
                    content_index=0,
                    text=text,
                    logprobs=[],
                )
            )
            out.append(self._part_event("response.content_part.done", text))
            item = message_item(self._message_id, text)
            out.append(self._item_event("response.output_item.done", self._text_index, item))
            items.append((self._text_index, item))
        for call in self._calls.values():
            out.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=call.item_id,
                    output_index=call.output_index,
                    name=call.name,
                    arguments=call.arguments,
                )
            )
            item = call_item(call.item_id, call.call_id, call.name, call.arguments)
            out.append(self._item_event("response.output_item.done", call.output_index, item))
            items.append((call.output_index, item))
        response["output"] = [item for _, item in sorted(items, key=lambda pair: pair[0])]
        response["usage"] = self._usage
        finish(response, self._finish)
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        out.append(self._event(kind, response=response))
        return b"".join(out)

    def _item_event(self, kind: str, index: int, item: dict[str, Any]) -> bytes:
        return self._event(kind, output_index=index, item=item)

    def _part_event(self, kind: str, text: str) -> bytes:
        part = {"type": "output_text", "text": text, "annotations": []}
        return self._event(
            kind,
            item_id=self._message_id,
            output_index=self._text_index,
            content_index=0,
            part=part,
        )

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
