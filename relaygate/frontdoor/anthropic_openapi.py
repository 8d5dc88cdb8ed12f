"""The OpenAPI description of ``POST /v1/messages`` (merged into :mod:`relaygate.openapi`).

Schemas follow https://docs.anthropic.com/en/api/messages, narrowed to what the front door
translates; errors are Anthropic's shape. ``POST /v1/messages/count_tokens`` is listed as
what it is: always a 404 ``not_found_error`` (no relaygate target counts tokens).
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
            "messages": {
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
            },
            "system": {"anyOf": [{"type": "string"}, {"type": "array", "items": _TEXT_BLOCK}]},
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


def messages_operation(
    parameters: list[dict[str, Any]], headers: dict[str, Any], errors: dict[str, str]
) -> dict[str, Any]:
    """The ``post`` operation of ``/v1/messages``: the API's request ``parameters``, answer
    ``headers`` (plus ``request-id``) and error statuses with their descriptions."""
    answer_headers = {
        **headers,
        "request-id": {
            "description": "The request id again, where the anthropic SDK reads it.",
            "schema": {"type": "string"},
        },
    }
    error = {_JSON: {"schema": _schema("MessagesError")}}
    return {
        "operationId": "createMessage",
        "summary": "Anthropic Messages API, routed by the config to any target",
        "tags": ["anthropic"],
        "parameters": parameters,
        "security": [{}, {"GatewayKey": []}, {"PortkeyApiKey": []}, {"AnthropicApiKey": []}],
        "requestBody": {
            "required": True,
            "content": {_JSON: {"schema": _schema("MessagesRequest")}},
        },
        "responses": {
            "200": {
                "description": "The served target's answer as a Message, or its event stream.",
                "headers": answer_headers,
                "content": {
                    _JSON: {"schema": _schema("Message")},
                    _SSE: {"schema": _schema("MessagesStreamEvent")},
                },
            },
            **{
                status: {"description": text, "headers": answer_headers, "content": error}
                for status, text in errors.items()
            },
        },
    }


ANTHROPIC_KEY_SCHEME: dict[str, Any] = {
    "type": "apiKey",
    "in": "header",
    "name": "x-api-key",
    "description": "The gateway key as the anthropic SDK sends it (on `/v1/messages` only).",
}
"""The ``x-api-key`` security scheme."""


def count_tokens_operation(headers: dict[str, Any]) -> dict[str, Any]:
    """The ``post`` operation of ``/v1/messages/count_tokens``: always refused."""
    return {
        "operationId": "countMessageTokens",
        "summary": "Not served: no relaygate target counts tokens",
        "tags": ["anthropic"],
        "requestBody": {
            "required": False,
            "description": "Anthropic's count_tokens request; not read.",
            "content": {_JSON: {"schema": {"type": "object"}}},
        },
        "responses": {
            "404": {
                "description": "Always: `not_found_error` (`count_tokens_unsupported`).",
                "headers": headers,
                "content": {_JSON: {"schema": _schema("MessagesError")}},
            }
        },
    }
