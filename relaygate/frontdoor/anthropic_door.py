"""``POST /v1/messages`` and ``/v1/messages/count_tokens``: the
:class:`~relaygate.frontdoor.door.FrontDoor` of Anthropic's Messages API and of its token
counting (translation in :mod:`relaygate.frontdoor.anthropic_messages`).

- the gateway key may come as ``x-api-key`` (what the ``anthropic`` SDK sends, older
  versions) as well as ``Authorization: Bearer`` and ``x-portkey-api-key``;
- answers carry ``request-id`` (what the SDK reads) besides ``x-request-id``;
- errors, the gateway's refusals included, are in Anthropic's shape
  (``{"type": "error", "error": {"type", "message"}}``) with the status unchanged.
"""

from __future__ import annotations

from typing import Any

import orjson

from relaygate.edge import EdgeResponse
from relaygate.errors import GatewayError
from relaygate.exchange import ResponseStream
from relaygate.frontdoor.anthropic_messages import (
    EventTranslator,
    anthropic_error,
    to_chat_request,
    to_message,
)
from relaygate.providers.anthropic import token_count
from relaygate.translate import TranslatedStream

_JSON = "application/json"


MESSAGES_ROUTE = "/v1/messages"
"""Where Anthropic's Messages API is served."""

COUNT_TOKENS_ROUTE = "/v1/messages/count_tokens"
"""Anthropic's token counting route (answered by ``anthropic`` targets)."""


class AnthropicMessagesDoor:
    """Anthropic's Messages API over the chat pipeline."""

    route = MESSAGES_ROUTE

    def headers(self, headers: dict[str, str]) -> dict[str, str]:
        """``x-api-key`` read as the gateway key when no other key header is present."""
        key = headers.get("x-api-key")
        if key and "authorization" not in headers and "x-portkey-api-key" not in headers:
            return {**headers, "authorization": f"Bearer {key}"}
        return headers

    def request(self, body: bytes) -> tuple[dict[str, Any], bytes]:
        """The chat request for a Messages request body, parsed and as bytes (400 when it
        is not one)."""
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise GatewayError(400, "request body is not valid JSON", code="invalid_json") from exc
        if not isinstance(payload, dict):
            raise GatewayError(400, "request body must be a JSON object", code="invalid_body")
        chat = to_chat_request(self._prepared(payload))
        try:
            return chat, orjson.dumps(chat)
        except orjson.JSONEncodeError as exc:  # a tool input nested past orjson's limit
            raise GatewayError(
                400, "a value in the request is nested too deeply", code="invalid_value"
            ) from exc

    def answer(self, response: EdgeResponse) -> EdgeResponse:
        """The Messages answer: a message, an event stream, or an Anthropic-shaped error."""
        headers = [(k, v) for k, v in response.headers if k != "content-type"]
        request_id = next((v for k, v in response.headers if k == "x-request-id"), None)
        if request_id is not None:
            headers.append(("request-id", request_id))
        if response.stream is not None:
            headers.append(("content-type", "text/event-stream; charset=utf-8"))
            stream = ResponseStream(TranslatedStream(response.stream, EventTranslator()))
            return EdgeResponse(response.status, headers, stream=stream)
        headers.append(("content-type", _JSON))
        if 200 <= response.status < 300:
            try:
                chat = orjson.loads(response.body)
            except orjson.JSONDecodeError:
                chat = None
            if isinstance(chat, dict):
                try:
                    body = self._answered(chat)
                except (ValueError, orjson.JSONEncodeError):
                    # Not an answer of this route, or an upstream's tool arguments nested
                    # past the encoder's limit.
                    body = b""
                if body:
                    return EdgeResponse(response.status, headers, body)
            status = 502
            body = anthropic_error(status, b"")
            return EdgeResponse(status, headers, body)
        return EdgeResponse(
            response.status, headers, anthropic_error(response.status, response.body)
        )

    def _prepared(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The Messages request to translate for ``payload`` (itself)."""
        return payload

    def _answered(self, chat: dict[str, Any]) -> bytes:
        """The body answering a served chat completion: the Anthropic ``message``."""
        return orjson.dumps(to_message(chat))


class AnthropicCountTokensDoor(AnthropicMessagesDoor):
    """Anthropic's ``POST /v1/messages/count_tokens`` over the pipeline: the request is
    translated as a Messages request would be (it has no ``max_tokens`` and is never
    streamed) and routed as :data:`~relaygate.exchange.Operation.COUNT_TOKENS`, which
    ``anthropic`` targets answer and others refuse (400 ``unsupported_operation``, which
    falls back); the answer is Anthropic's ``{"input_tokens": n}``."""

    route = COUNT_TOKENS_ROUTE

    def _prepared(self, payload: dict[str, Any]) -> dict[str, Any]:
        """``payload`` with the ``max_tokens`` the translation requires, never streamed."""
        prepared = {k: v for k, v in payload.items() if k != "stream"}
        prepared.setdefault("max_tokens", 1)
        return prepared

    def _answered(self, chat: dict[str, Any]) -> bytes:
        """The ``{"input_tokens": n}`` the target answered (``ValueError`` without one)."""
        return orjson.dumps(token_count(chat))
