"""The OpenAPI 3.1 description of relaygate's HTTP API, served as ``GET /openapi.json``.

:func:`openapi_document` builds the document as plain data: the three OpenAI-compatible
``POST`` operations, ``GET /v1/models``, the health, readiness, metrics and status routes,
the request headers relaygate reads, the response headers it writes, and the OpenAI error
shape ``{"error": {"message", "type", "param", "code"}}`` of every 4xx/5xx answer.

The request bodies are described as relaygate accepts them, not as a provider would: a JSON
object whose ``model`` (when present) is a string and whose ``stream`` is a boolean; every
other field reaches the upstream as sent, so the schemas allow additional properties. A
success body is the upstream's answer (OpenAI-shaped for OpenAI-compatible providers), so
its schema names only the fields every such answer has. When every target failed, the last
target's status and (OpenAI-shaped) error body are passed on, which is why the ``4XX`` and
``5XX`` ranges are documented besides the statuses relaygate produces itself.
"""

from __future__ import annotations

import copy
from typing import Any

from relaygate.exchange import Operation
from relaygate.frontdoor.anthropic_openapi import (
    ANTHROPIC_KEY_SCHEME,
    MESSAGES_SCHEMAS,
    count_tokens_operation,
    messages_operation,
)
from relaygate.gateway import ROUTES

OPENAPI_VERSION = "3.1.0"
"""The OpenAPI version the document is written in."""

API_VERSION = "0.1.0"
"""``info.version`` of the document: the version of relaygate's HTTP API."""

_JSON = "application/json"
_SSE = "text/event-stream"

_STRING_OR_NULL: dict[str, Any] = {"type": ["string", "null"]}


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {_JSON: {"schema": schema}}


# --- schemas -----------------------------------------------------------------------------

_ERROR = {
    "type": "object",
    "description": "OpenAI's error shape, used by every answer with a 4xx or 5xx status.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string", "description": "What went wrong, for people."},
                "type": {
                    "type": "string",
                    "description": "Error class: `invalid_request_error`, "
                    "`authentication_error`, `upstream_error`, `timeout_error`, ...",
                },
                "param": {
                    **_STRING_OR_NULL,
                    "description": "The request field or header at fault, if one is.",
                },
                "code": {
                    "type": ["string", "integer", "null"],
                    "description": "A stable machine-readable code (`invalid_json`, "
                    "`invalid_config`, `request_too_large`, `upstream_invalid_response`, ...); "
                    "an upstream's error passed on keeps its own code.",
                },
            },
            "additionalProperties": True,
        }
    },
    "additionalProperties": True,
}

_MODEL = {
    **_STRING_OR_NULL,
    "description": "The model asked for; `override_params` of the chosen target may replace "
    "it. Any other type is refused with 400.",
}

_STREAM = {
    "type": ["boolean", "null"],
    "description": "`true` answers with server-sent events; `null` or absent means false. "
    "Any other type is refused with 400.",
}

_MESSAGE = {
    "type": "object",
    "properties": {
        "role": {"type": "string"},
        "content": {
            "type": ["string", "array", "null"],
            "items": {"type": "object", "additionalProperties": True},
        },
        "name": {"type": "string"},
    },
    "additionalProperties": True,
}


def _request(description: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": {"model": _MODEL, **properties},
        "additionalProperties": True,
    }


_CHAT_REQUEST = _request(
    "An OpenAI chat completion request. relaygate checks only `model` and `stream`; every "
    "field reaches the upstream as sent (after `override_params`), which validates the rest.",
    {
        "stream": _STREAM,
        "messages": {
            "type": "array",
            "items": _MESSAGE,
            "description": "The conversation, passed to the upstream unchanged.",
        },
    },
)

_COMPLETION_REQUEST = _request(
    "An OpenAI (legacy) text completion request. relaygate checks only `model` and "
    "`stream`; every field reaches the upstream as sent.",
    {
        "stream": _STREAM,
        "prompt": {
            "type": ["string", "array"],
            "description": "The prompt(s), passed to the upstream unchanged.",
        },
    },
)

_RESPONSE_REQUEST = _request(
    "An OpenAI Responses API request. Targets that speak the Responses API (`openai`, "
    "`azure-openai`) receive it as sent; for the others relaygate translates its stateless "
    "subset (`input` items, `instructions`, function `tools`, `tool_choice`, "
    "`max_output_tokens`, `temperature`, `top_p`, `text.format`) into a chat request, and "
    "refuses with 400 what needs stored state (`previous_response_id`, `conversation`, "
    "`store: true`, `background`), hosted tools and file inputs.",
    {
        "stream": _STREAM,
        "input": {
            "type": ["string", "array"],
            "description": "The input: a string, or a list of input items.",
        },
        "instructions": {"type": ["string", "null"]},
        "previous_response_id": {
            "type": ["string", "null"],
            "description": "Served only by targets that speak the Responses API.",
        },
    },
)

_RESPONSE_ANSWER = {
    "type": "object",
    "description": "A Responses API `response` object: the upstream's own, or made from a "
    "chat completion (one `message` item for the text, a `function_call` item per tool "
    "call).",
    "required": ["object"],
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string"},
        "created_at": {"type": "number"},
        "model": {"type": "string"},
        "status": {"type": ["string", "null"]},
        "output": {"type": "array", "items": {"type": "object"}},
        "usage": {"type": ["object", "null"]},
    },
    "additionalProperties": True,
}

_EMBEDDING_REQUEST = _request(
    "An OpenAI embeddings request. relaygate checks `model` and refuses `stream: true`; "
    "every field reaches the upstream as sent.",
    {
        "stream": {
            "enum": [False, None],
            "description": "Embeddings cannot be streamed: `true` is refused with 400.",
        },
        "input": {
            "type": ["string", "array"],
            "description": "Text(s) or token ids to embed, passed to the upstream unchanged.",
        },
        "encoding_format": {
            "type": "string",
            "enum": ["float", "base64"],
            "description": "The encoding of the answer's vectors; relaygate converts an "
            "upstream answer into the encoding asked for (`float` when none is).",
        },
    },
)


def _completion_answer(obj: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"The upstream's `{obj}` answer, passed on as it came (embeddings "
        "converted to the encoding asked for).",
        "required": ["object"],
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string"},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {"type": "array", "items": {"type": "object"}},
            "usage": {"type": ["object", "null"]},
        },
        "additionalProperties": True,
    }


_EMBEDDING_ANSWER = {
    "type": "object",
    "description": "The upstream's embeddings list, each vector in the encoding asked for "
    "(a float list, or base64 of little-endian float32 values).",
    "required": ["object", "data"],
    "properties": {
        "object": {"type": "string"},
        "model": {"type": "string"},
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "object": {"type": "string"},
                    "index": {"type": "integer"},
                    "embedding": {"type": ["array", "string"], "items": {"type": "number"}},
                },
                "additionalProperties": True,
            },
        },
        "usage": {"type": ["object", "null"]},
    },
    "additionalProperties": True,
}

_STREAM_EVENT = {
    "type": "object",
    "description": "One server-sent event of a streamed answer, as the upstream sent it. "
    "`data` is a chunk object as JSON, or `[DONE]` at the end; when the upstream broke "
    "after the first chunk the last event's `data` is an OpenAI-shaped error object "
    "(code `upstream_stream_interrupted`) and no `[DONE]` follows.",
    "required": ["data"],
    "properties": {
        "data": {"type": "string"},
        "event": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
    "additionalProperties": True,
}

_MODEL_LIST = {
    "type": "object",
    "description": "Every model a configured target pins, with the provider that serves it.",
    "required": ["object", "data"],
    "properties": {
        "object": {"const": "list"},
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "object", "created", "owned_by"],
                "properties": {
                    "id": {"type": "string"},
                    "object": {"const": "model"},
                    "created": {"type": "integer"},
                    "owned_by": {"type": "string"},
                },
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}

_HEALTH = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"const": "ok"}},
    "additionalProperties": False,
}

_READY = {
    "type": "object",
    "required": ["status", "configs"],
    "properties": {
        "status": {"const": "ready"},
        "configs": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Ids of the configs in force, sorted.",
        },
        "config_generation": {
            "type": "integer",
            "minimum": 0,
            "description": "Config reloads this worker has applied (under `relaygate serve`).",
        },
        "config_hash": {
            "type": "string",
            "description": "SHA-256 prefix of the config file this worker serves "
            "(under `relaygate serve`; empty when it could not be read).",
        },
    },
    "additionalProperties": False,
}

_STATUS_SNAPSHOT = {
    "type": "object",
    "description": "The status page's data: per config and target, recent success ratio, "
    "latency, health and fallbacks (see docs/status-page.md).",
    "required": ["configs"],
    "properties": {"configs": {"type": "array", "items": {"type": "object"}}},
    "additionalProperties": True,
}

# --- headers -----------------------------------------------------------------------------


def _header(
    name: str, description: str, schema: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
        **extra,
    }


_REQUEST_HEADERS: dict[str, dict[str, Any]] = {
    "PortkeyConfig": _header(
        "x-portkey-config",
        "The routing config of this request: a Portkey-format JSON config (an object), or "
        "the id of a named config of the server config. Invalid JSON, an unknown id or an "
        "invalid config is refused with 400 naming the path at fault; a header over "
        "`limits.max_config_header_bytes` with 431.",
        examples={"named": {"value": "prod"}},
    ),
    "PortkeyProvider": _header(
        "x-portkey-provider",
        "A config-less call to one provider (e.g. `openai`); its key comes from "
        "`Authorization: Bearer`. An unknown provider is refused with 400.",
    ),
    "PortkeyMetadata": _header(
        "x-portkey-metadata",
        "A JSON object made available to conditional routing as `metadata.*`. Anything "
        "else is refused with 400.",
        examples={"plan": {"value": '{"user_plan": "paid"}'}},
    ),
    "PortkeyTraceId": _header(
        "x-portkey-trace-id",
        "Your trace id: echoed back as `x-portkey-trace-id` (its first 128 characters) and "
        "recorded on the request span.",
    ),
    "PortkeyCustomHost": _header(
        "x-portkey-custom-host",
        "Default `custom_host` beneath the chosen config (the config's own value wins): an "
        "http(s) base URL up to the version path. Anything else is refused with 400.",
    ),
    "PortkeyRequestTimeout": _header(
        "x-portkey-request-timeout",
        "Default per-attempt timeout in milliseconds beneath the chosen config. Anything "
        "but a positive whole number is refused with 400.",
        {"type": "integer", "minimum": 1},
    ),
    "PortkeyForwardHeaders": _header(
        "x-portkey-forward-headers",
        "Default `forward_headers` beneath the chosen config: a comma-separated list of "
        "request header names passed on to the provider.",
    ),
    "PortkeyVirtualKey": _header(
        "x-portkey-virtual-key",
        "Not supported by relaygate: any value is refused with 400 (`unsupported_header`).",
        deprecated=True,
    ),
    "Traceparent": _header(
        "traceparent",
        "W3C trace context: the gateway's spans join this trace, and it is passed on "
        "upstream. An invalid value is ignored.",
        examples={"sampled": {"value": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}},
    ),
}

_RESPONSE_HEADERS: dict[str, dict[str, Any]] = {
    "RequestId": {
        "description": "relaygate's id of this request (also in its logs and spans).",
        "schema": {"type": "string"},
    },
    "TraceId": {
        "description": "The client's `x-portkey-trace-id`, else the request id; always sent, "
        "so the Portkey SDK never adds its own retries on a gateway 5xx.",
        "schema": {"type": "string"},
    },
    "LastUsedOptionIndex": {
        "description": "Path of the last target tried (`config.targets[1]`), as Portkey "
        "sends it: on a failed answer too, naming the target whose failure was passed on.",
        "schema": {"type": "string"},
    },
    "ServedBy": {
        "description": "Path of the target that served a successful (2xx) answer; absent "
        "from failed ones. A stream's is sent with its first chunk: whether the stream then "
        "completed is the request's outcome in the log line, span and metrics.",
        "schema": {"type": "string"},
    },
    "Provider": {
        "description": "Provider of the target that answered.",
        "schema": {"type": "string"},
    },
    "RetryAttemptCount": {
        "description": "Retries spent on the target that answered.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "Route": {
        "description": "Every attempt in order, each with its status or the reason the gateway "
        "gave: `config.targets[0]:429>config.targets[1]:200`.",
        "schema": {"type": "string"},
    },
    "RetryAfter": {
        "description": "The upstream's `retry-after` (and `retry-after-ms`, `x-ratelimit-*`, "
        "`openai-*` headers), passed on.",
        "schema": {"type": "string"},
    },
}


def _answer_headers() -> dict[str, Any]:
    """The response headers of an API answer; none is required (an answer refused before
    any target was chosen carries no target headers, one refused at the edge for its size
    only the content headers)."""
    return {
        "x-request-id": _ref("headers", "RequestId"),
        "x-portkey-trace-id": _ref("headers", "TraceId"),
        "x-portkey-last-used-option-index": _ref("headers", "LastUsedOptionIndex"),
        "x-portkey-provider": _ref("headers", "Provider"),
        "x-portkey-retry-attempt-count": _ref("headers", "RetryAttemptCount"),
        "x-relaygate-route": _ref("headers", "Route"),
        "x-relaygate-served-by": _ref("headers", "ServedBy"),
        "retry-after": _ref("headers", "RetryAfter"),
    }


# --- operations --------------------------------------------------------------------------

_ERRORS: dict[str, str] = {
    "400": "Malformed JSON, a body that is not an object, a field of the wrong type, an "
    "invalid or unknown config, an unknown provider or a bad header.",
    "401": "A missing or wrong gateway key (when the server config sets `auth.api_keys`).",
    "408": "The last attempt timed out (`request_timeout`; for a stream also "
    "`first_token_timeout`, or `stream_idle_timeout` before its first chunk).",
    "413": "The body is over `limits.max_body_bytes`.",
    "431": "`x-portkey-config` is over `limits.max_config_header_bytes`.",
    "502": "The upstream was unreachable, or answered something that is not a valid answer "
    "(`upstream_invalid_response`).",
    "504": "The request's overall deadline (`limits.request_deadline_ms`) expired.",
    "4XX": "Every target failed: the last target's status and error, passed on.",
    "5XX": "Every target failed: the last target's status and error, passed on.",
}


def _error_responses() -> dict[str, Any]:
    return {
        status: {
            "description": text,
            "headers": _answer_headers(),
            "content": _json_content(_ref("schemas", "Error")),
        }
        for status, text in _ERRORS.items()
    }


_SUMMARIES = {
    Operation.CHAT: ("createChatCompletion", "Chat completion, routed by the config"),
    Operation.TEXT_COMPLETION: ("createCompletion", "Text completion, routed by the config"),
    Operation.EMBEDDINGS: ("createEmbedding", "Embeddings, routed by the config"),
    Operation.RESPONSES: ("createResponse", "Responses API, routed by the config"),
}

_BODIES = {
    Operation.CHAT: ("ChatCompletionRequest", "ChatCompletion"),
    Operation.TEXT_COMPLETION: ("CompletionRequest", "Completion"),
    Operation.EMBEDDINGS: ("EmbeddingRequest", "EmbeddingList"),
    Operation.RESPONSES: ("ResponseRequest", "Response"),
}


def _api_operation(operation: Operation) -> dict[str, Any]:
    operation_id, summary = _SUMMARIES[operation]
    request, answer = _BODIES[operation]
    success: dict[str, Any] = _json_content(_ref("schemas", answer))
    if operation is not Operation.EMBEDDINGS:
        success[_SSE] = {"schema": _ref("schemas", "StreamEvent")}
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["openai"],
        "parameters": [_ref("parameters", name) for name in _REQUEST_HEADERS],
        "security": [{}, {"GatewayKey": []}, {"PortkeyApiKey": []}],
        "requestBody": {
            "required": True,
            "description": "A JSON object; relaygate passes unknown fields through.",
            "content": _json_content(_ref("schemas", request)),
        },
        "responses": {
            "200": {
                "description": "The answer of the target that served the request.",
                "headers": _answer_headers(),
                "content": success,
            },
            **_error_responses(),
        },
    }


def _get(operation_id: str, summary: str, content: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "responses": {"200": {"description": summary, "content": content}},
            **extra,
        }
    }


def openapi_document(*, metrics: bool = True) -> dict[str, Any]:
    """The OpenAPI 3.1 document of relaygate's HTTP API, as JSON-able data.

    ``metrics`` says whether ``GET /metrics`` is served (``telemetry.metrics.enabled``); the
    document lists only routes the app serves. Paths are relative to where the app is
    mounted. Each call returns a fresh document the caller may change.
    """
    paths: dict[str, Any] = {
        route: {"post": _api_operation(operation)} for operation, route in ROUTES.items()
    }
    door_parameters = [_ref("parameters", name) for name in _REQUEST_HEADERS]
    paths["/v1/messages"] = {
        "post": messages_operation(door_parameters, _answer_headers(), _ERRORS)
    }
    paths["/v1/messages/count_tokens"] = {
        "post": count_tokens_operation(door_parameters, _answer_headers(), _ERRORS)
    }
    paths["/v1/models"] = _get(
        "listModels",
        "The models the configured targets pin",
        _json_content(_ref("schemas", "ModelList")),
        tags=["openai"],
    )
    paths["/health"] = _get("health", "The process is up", _json_content(_ref("schemas", "Health")))
    paths["/ready"] = _get(
        "ready", "The gateway is ready to serve", _json_content(_ref("schemas", "Ready"))
    )
    if metrics:
        paths["/metrics"] = _get(
            "metrics",
            "Prometheus metrics (OpenMetrics when asked with `Accept`)",
            {
                "text/plain": {"schema": {"type": "string"}},
                "application/openmetrics-text": {"schema": {"type": "string"}},
            },
        )
    paths["/status"] = _get(
        "statusPage", "The live status page", {"text/html": {"schema": {"type": "string"}}}
    )
    paths["/status.json"] = _get(
        "statusData",
        "The status page's data",
        _json_content(_ref("schemas", "StatusSnapshot")),
    )
    paths["/openapi.json"] = _get("openapi", "This document", _json_content({"type": "object"}))
    document = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "relaygate",
            "version": API_VERSION,
            "description": "An observability-first AI gateway: Portkey-style routing configs "
            "behind an OpenAI-compatible API.",
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Error": _ERROR,
                "ChatCompletionRequest": _CHAT_REQUEST,
                "CompletionRequest": _COMPLETION_REQUEST,
                "EmbeddingRequest": _EMBEDDING_REQUEST,
                "ChatCompletion": _completion_answer("chat.completion"),
                "Completion": _completion_answer("text_completion"),
                "EmbeddingList": _EMBEDDING_ANSWER,
                "ResponseRequest": _RESPONSE_REQUEST,
                "Response": _RESPONSE_ANSWER,
                "StreamEvent": _STREAM_EVENT,
                "ModelList": _MODEL_LIST,
                "Health": _HEALTH,
                "Ready": _READY,
                "StatusSnapshot": _STATUS_SNAPSHOT,
                **MESSAGES_SCHEMAS,
            },
            "parameters": _REQUEST_HEADERS,
            "headers": _RESPONSE_HEADERS,
            "securitySchemes": {
                "GatewayKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The gateway key (openai SDK), required when the server "
                    "config sets `auth.api_keys`. In a config-less call "
                    "(`x-portkey-provider`) a bearer that is not a gateway key is the "
                    "provider key.",
                },
                "PortkeyApiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-portkey-api-key",
                    "description": "The gateway key when the Portkey SDK is the client.",
                },
                "AnthropicApiKey": ANTHROPIC_KEY_SCHEME,
            },
        },
    }
    return copy.deepcopy(document)
