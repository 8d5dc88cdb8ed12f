"""One adapter for every provider that speaks OpenAI's API, configured by a table row.

A row says where the provider lives and how it takes its key; the request body passes
through untouched (``override_params`` merged in when the target sets any), and the
answer is already OpenAI-shaped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson

from relaygate.config.model import Target
from relaygate.errors import GatewayError
from relaygate.exchange import GatewayRequest, Operation
from relaygate.providers.base import UpstreamRequest
from relaygate.strategies.attempt_bound import stream_idle_s

OPENAI_PATHS: Mapping[Operation, str] = MappingProxyType(
    {
        Operation.CHAT: "/chat/completions",
        Operation.TEXT_COMPLETION: "/completions",
        Operation.EMBEDDINGS: "/embeddings",
    }
)
"""Path of each operation below an OpenAI-style base URL."""

RESPONSES_PATHS: Mapping[Operation, str] = MappingProxyType(
    {**OPENAI_PATHS, Operation.RESPONSES: "/responses"}
)
"""Paths of a provider that also serves OpenAI's Responses API natively."""

USER_AGENT = "relaygate"


def json_headers(
    stream: bool,
    extra: Mapping[str, str],
    own: Mapping[str, str] | None = None,
    accept_stream: str = "text/event-stream",
) -> dict[str, str]:
    """The headers of a JSON call upstream: its content type, what it accepts
    (``accept_stream`` for a streamed answer, else JSON), no compression, relaygate's user
    agent, then the provider's ``own`` headers and last ``extra`` (forwarded headers, trace
    context), which win. Credentials are the adapter's to add."""
    headers = {
        "content-type": "application/json",
        "accept": accept_stream if stream else "application/json",
        "accept-encoding": "identity",
        "user-agent": USER_AGENT,
    }
    if own:
        headers.update(own)
    headers.update(extra)
    return headers


@dataclass(frozen=True, slots=True)
class OpenAICompatible:
    """An OpenAI-compatible provider: a base URL and how the key is sent.

    ``auth_header`` is the header carrying the key and ``auth_prefix`` what precedes it
    (``Bearer ``); ``operations`` limits what the provider serves.
    """

    name: str
    base_url: str
    auth_header: str = "authorization"
    auth_prefix: str = "Bearer "
    operations: frozenset[Operation] = frozenset(OPENAI_PATHS)
    paths: Mapping[Operation, str] = field(default_factory=lambda: OPENAI_PATHS)

    def url_for(self, operation: Operation, target: Target) -> str:
        """The full URL of ``operation`` for ``target`` (``custom_host`` replaces the base)."""
        base = target.custom_host or self.base_url
        return base + self.paths[operation]

    def build_request(
        self, request: GatewayRequest, target: Target, extra_headers: Mapping[str, str]
    ) -> UpstreamRequest:
        """See :meth:`relaygate.providers.base.ProviderAdapter.build_request`."""
        if request.operation not in self.operations:
            raise GatewayError(
                400,
                f"provider '{self.name}' does not serve {request.operation.value}",
                code="unsupported_operation",
            )
        headers = json_headers(request.stream, extra_headers)
        if target.api_key:
            headers[self.auth_header] = self.auth_prefix + target.api_key.reveal()
        return UpstreamRequest(
            method="POST",
            url=self.url_for(request.operation, target),
            headers=headers,
            content=body_for(request, target),
            stream=request.stream,
            idle_timeout_s=stream_idle_s(target.stream_idle_timeout_ms, target.request_timeout_ms),
        )

    def parse_response(self, request: GatewayRequest, status: int, body: bytes) -> Any:
        """See :meth:`relaygate.providers.base.ProviderAdapter.parse_response`."""
        return parse_json_object(body)


def body_for(request: GatewayRequest, target: Target) -> bytes:
    """The body to send: the client's bytes as they came, or re-serialised with overrides.

    Only ``override_params`` alter what the client sent.
    """
    if not target.override_params:
        return request.raw_body
    return orjson.dumps({**request.body, **target.override_params})


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Parse a JSON object answer; :class:`ValueError` when it is not one."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError("upstream answered with a body that is not JSON") from exc
    if not isinstance(payload, dict):
        raise ValueError("upstream answered with JSON that is not an object")
    return payload


OPENAI_COMPATIBLE: tuple[OpenAICompatible, ...] = (
    OpenAICompatible(
        "openai",
        "https://api.openai.com/v1",
        operations=frozenset(RESPONSES_PATHS),
        paths=RESPONSES_PATHS,
    ),
    OpenAICompatible("together-ai", "https://api.together.xyz/v1"),
    OpenAICompatible("groq", "https://api.groq.com/openai/v1"),
    OpenAICompatible("mistral-ai", "https://api.mistral.ai/v1"),
    OpenAICompatible("deepseek", "https://api.deepseek.com/v1"),
    OpenAICompatible("fireworks-ai", "https://api.fireworks.ai/inference/v1"),
    OpenAICompatible("openrouter", "https://openrouter.ai/api/v1"),
    OpenAICompatible(
        "perplexity-ai",
        "https://api.perplexity.ai",
        operations=frozenset({Operation.CHAT}),
    ),
    OpenAICompatible("x-ai", "https://api.x.ai/v1"),
    OpenAICompatible("ollama", "http://127.0.0.1:11434/v1"),
    OpenAICompatible("custom", "http://127.0.0.1:8000/v1"),
)
"""The OpenAI-compatible providers relaygate knows by name (``custom`` needs ``custom_host``)."""
