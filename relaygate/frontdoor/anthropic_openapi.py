"""The OpenAPI description of ``POST /v1/messages`` (merged into :mod:`relaygate.openapi`).

Schemas follow https://docs.anthropic.com/en/api/messages, narrowed to what the front door
translates; errors are Anthropic's shape. ``POST /v1/messages/count_tokens``
(https://docs.anthropic.com/en/api/messages-count-tokens) is answered by ``anthropic``
targets; others refuse it with 400, which a fallback moves on from.
"""

from __future__ import annotations

from typing import Any

_JSON = "application/json"
_SSE = "text/event-stream"


def _schema(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_TEXT_BLOCK = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
}

_MESSAGES: dict[str, Any] = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"enum": ["user", "assistant"]},
            "content": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": _TEXT_BLOCK},
                ]
            },
        },
    },
}

_SYSTEM: dict[str, Any] = {"anyOf": [{"type": "string"}, {"type": "array", "items": _TEXT_BLOCK}]}

MESSAGES_SCHEMAS: dict[str, Any] = {
    "MessagesRequest": {
        "type": "object",
        "description": "Anthropic's Messages request, translated to a chat request and routed "
        "by the config. Blocks: text, image (base64 or url), tool_use, tool_result; thinking "
        "blocks of assistant turns are dropped, as are `thinking`, `top_k`, `service_tier`, "
        "`container`, `mcp_servers` and `context_management`; server tools and document "
        "blocks are refused with 400.",
        "required": ["model", "max_tokens", "messages"],
        "properties": {
            "model": {"type": "string", "minLength": 1},
            "max_tokens": {"type": "integer", "minimum": 1},
            "messages": _MESSAGES,
            "system": _SYSTEM,
            "stream": {"type": "boolean"},
            "temperature": {"type": "number", "minimum": 0, "maximum": 1},
            "stop_sequences": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Message": {
        "type": "object",
        "description": "Anthropic's Message: the served target's answer, translated.",
        "required": ["id", "type", "role", "content", "stop_reason", "usage"],
        "properties": {
            "id": {"type": ["string", "null"]},
            "type": {"const": "message"},
            "role": {"const": "assistant"},
            "model": {"type": ["string", "null"]},
            "content": {"type": "array", "items": {"type": "object"}},
            "stop_reason": {"type": ["string", "null"]},
            "stop_sequence": {"type": ["string", "null"]},
            "usage": {
                "type": "object",
                "required": ["input_tokens", "output_tokens"],
                "properties": {
                    "input_tokens": {"type": "integer"},
                    "output_tokens": {"type": "integer"},
                    "cache_read_input_tokens": {"type": "integer"},
                    "cache_creation_input_tokens": {"type": "integer"},
                },
            },
        },
    },
    "CountTokensRequest": {
        "type": "object",
        "description": "Anthropic's count_tokens request: a Messages request without "
        "`max_tokens`, translated the same way and routed to a target that counts tokens "
        "(an `anthropic` target; others refuse with 400, which a fallback moves on from).",
        "required": ["model", "messages"],
        "properties": {
            "model": {"type": "string", "minLength": 1},
            "messages": _MESSAGES,
            "system": _SYSTEM,
        },
    },
    "TokenCount": {
        "type": "object",
        "description": "The target's count of the request's input tokens.",
        "required": ["input_tokens"],
        "properties": {"input_tokens": {"type": "integer", "minimum": 0}},
    },
    "MessagesError": {
        "type": "object",
        "description": "Anthropic's error shape, used by every 4xx/5xx answer of this route "
        "(the gateway's own refusals included); the status is the answer's own.",
        "required": ["type", "error"],
        "properties": {
            "type": {"const": "error"},
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "MessagesStreamEvent": {
        "type": "object",
        "description": "One server-sent event: `event:` names it, `data:` holds its JSON "
        "(`message_start`, `content_block_start`, `content_block_delta`, "
        "`content_block_stop`, `message_delta` with `usage`, `message_stop`; `error` when "
        "the stream broke).",
        "required": ["event", "data"],
        "properties": {"event": {"type": "string"}, "data": {"type": "string"}},
    },
}
"""Components added to the document's ``schemas``."""


def _door_operation(
    ids: tuple[str, str],
    request: str,
    content: dict[str, Any],
    parameters: list[dict[str, Any]],
    headers: dict[str, Any],
    errors: dict[str, str],
) -> dict[str, Any]:
    """A ``post`` operation of Anthropic's API: ``ids`` its operation id and summary,
    ``request`` its body schema, ``content`` its 200 answer; the API's request
    ``parameters``, answer ``headers`` (plus ``request-id``) and error statuses."""
    answer_headers = {
        **headers,
        "request-id": {
            "description": "The request id again, where the anthropic SDK reads it.",
            "schema": {"type": "string"},
        },
    }
    error = {_JSON: {"schema": _schema("MessagesError")}}
    return {
        "operationId": ids[0],
        "summary": ids[1],
        "tags": ["anthropic"],
        "parameters": parameters,
        "security": [{}, {"GatewayKey": []}, {"PortkeyApiKey": []}, {"AnthropicApiKey": []}],
        "requestBody": {"required": True, "content": {_JSON: {"schema": _schema(request)}}},
        "responses": {
            "200": {
                "description": "The served target's answer.",
                "headers": answer_headers,
                "content": content,
            },
            **{
                status: {"description": text, "headers": answer_headers, "content": error}
                for status, text in errors.items()
            },
        },
    }


def messages_operation(
    parameters: list[dict[str, Any]], headers: dict[str, Any], errors: dict[str, str]
) -> dict[str, Any]:
    """The ``post`` operation of ``/v1/messages`` (see :func:`_door_operation`)."""
    content = {
        _JSON: {"schema": _schema("Message")},
        _SSE: {"schema": _schema("MessagesStreamEvent")},
    }
    ids = ("createMessage", "Anthropic Messages API, routed by the config to any target")
    return _door_operation(ids, "MessagesRequest", content, parameters, headers, errors)


def count_tokens_operation(
    parameters: list[dict[str, Any]], headers: dict[str, Any], errors: dict[str, str]
) -> dict[str, Any]:
    """The ``post`` operation of ``/v1/messages/count_tokens`` (see :func:`_door_operation`)."""
    content = {_JSON: {"schema": _schema("TokenCount")}}
    ids = ("countMessageTokens", "Anthropic token counting, answered by anthropic targets")
    return _door_operation(ids, "CountTokensRequest", content, parameters, headers, errors)


ANTHROPIC_KEY_SCHEME: dict[str, Any] = {
    "type": "apiKey",
    "in": "header",
    "name": "x-api-key",
    "description": "The gateway key as the anthropic SDK sends it (on Anthropic's routes only).",
}
"""The ``x-api-key`` security scheme."""
