"""The mock upstream's Anthropic wire format: ``POST /v1/messages`` (and ``/messages``).

Every mock serves it next to its OpenAI routes. A Messages request is translated to the
chat request it means (:func:`~relaygate.frontdoor.anthropic_messages.to_chat_request`) and
answered by the mock's chat handling, so the fault model is the same (``x-mock-fault``,
scripts, ``--error-rate``: statuses, latency, hangs, garbage, ``cut_after_chunks``,
``stall_after_chunks``, ``first_token_delay_ms``...), then the answer is translated back:

- a success → an Anthropic ``message``, a stream → Anthropic's events (``event:`` lines,
  ``message_start`` … ``message_stop``; a cut stream is cut, a stalled one stalls);
- an error → ``{"type": "error", "error": {"type", "message"}}`` with the status unchanged:
  ``529`` is ``overloaded_error``, ``429`` ``rate_limit_error``, and so on;
- ``x-api-key`` is accepted as the mock's key (Anthropic's header).

``GET /_mock/requests`` records such a request as it came (path, headers, Messages body).

``POST /v1/messages/count_tokens`` answers ``{"input_tokens": n}``, ``n`` the words of the
request's text (:func:`counted_tokens`), or a scripted error status in Anthropic's shape.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relaygate.errors import GatewayError
from relaygate.frontdoor.anthropic_messages import (
    EventTranslator,
    anthropic_error,
    to_chat_request,
    to_message,
)

MESSAGES_PATHS = frozenset({"/v1/messages", "/messages"})
"""Paths answered in Anthropic's wire format."""

ORIGINAL_KEY = "relaygate.mock.original"
"""Scope key holding ``(path, headers, body)`` of a translated request, for the record."""


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    return next((v for k, v in headers if k.lower() == name), None)


async def _read_body(receive: Receive) -> bytes:
    body = b""
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


def _json(status: int, body: bytes) -> list[Message]:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    ]


class AnthropicWire:
    """ASGI middleware serving the Messages API over ``app``'s chat route."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in MESSAGES_PATHS:
            await self._app(scope, receive, send)
            return
        raw = await _read_body(receive)
        headers: list[tuple[bytes, bytes]] = list(scope["headers"])
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            payload = None
        try:
            if not isinstance(payload, dict):
                raise GatewayError(400, "mock: the body must be a JSON object")
            chat = orjson.dumps(to_chat_request(payload))
        except GatewayError as exc:
            for message in _json(
                400, anthropic_error(400, orjson.dumps({"error": {"message": exc.message}}))
            ):
                await send(message)
            return
        key = _header(headers, b"x-api-key")
        inner_headers = [(k, v) for k, v in headers if k.lower() not in (b"content-length",)]
        inner_headers.append((b"content-length", str(len(chat)).encode()))
        if key is not None and _header(headers, b"authorization") is None:
            inner_headers.append((b"authorization", b"Bearer " + key))
        original = (scope["path"], headers, payload)
        inner_scope = {
            **scope,
            "path": "/v1/chat/completions",
            "raw_path": b"/v1/chat/completions",
            "headers": inner_headers,
            ORIGINAL_KEY: original,
        }
        sent = False

        async def inner_receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": chat, "more_body": False}
            return await receive()

        await self._app(inner_scope, inner_receive, _Answer(send).send)


class _Answer:
    """Translates the chat route's answer, message by message, into the Messages API's."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._status = 200
        self._headers: list[tuple[bytes, bytes]] = []
        self._events: EventTranslator | None = None
        self._body = b""

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._status = message["status"]
            self._headers = [
                (k, v) for k, v in message.get("headers", []) if k.lower() != b"content-length"
            ]
            content_type = _header(self._headers, b"content-type") or b""
            if b"event-stream" in content_type:
                self._events = EventTranslator()
                await self._send(message)
            return
        if message["type"] != "http.response.body":
            await self._send(message)
            return
        data: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        events = self._events
        if events is not None:
            out = events.feed(data)
            if not more:
                out += events.end()
            await self._send({"type": "http.response.body", "body": out, "more_body": more})
            return
        self._body += data
        if more:
            return
        body, translated = self._translated()
        headers = [(k, v) for k, v in self._headers if not translated or k != b"content-type"]
        if translated:
            headers.append((b"content-type", b"application/json"))
        headers.append((b"content-length", str(len(body)).encode()))
        await self._send(
            {"type": "http.response.start", "status": self._status, "headers": headers}
        )
        await self._send({"type": "http.response.body", "body": body})

    def _translated(self) -> tuple[bytes, bool]:
        """The body to send, and whether it was translated (garbage and empty bodies
        stay as they are)."""
        if self._status >= 400:
            return anthropic_error(self._status, self._body), True
        try:
            chat: Any = orjson.loads(self._body) if self._body else None
        except orjson.JSONDecodeError:
            return self._body, False
        if not isinstance(chat, dict):
            return self._body, False
        return orjson.dumps(to_message(chat)), True


def counted_tokens(payload: dict[str, Any]) -> int:
    """The mock's token count of a count_tokens request: the words of its ``system`` and of
    every message's text (a string ``content`` or the ``text`` of a block)."""
    words = 0
    stack: list[tuple[str, Any]] = [
        ("system", payload.get("system")),
        ("", payload.get("messages")),
    ]
    while stack:
        key, item = stack.pop()
        if isinstance(item, str):
            words += len(item.split()) if key in ("system", "content", "text") else 0
        elif isinstance(item, dict):
            stack.extend(item.items())
        elif isinstance(item, list):
            stack.extend((key, value) for value in item)
    return words
