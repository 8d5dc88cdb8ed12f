"""Responses requests for targets that speak chat only: a wrapper around their adapter.

:func:`responses_adapter` answers the adapter itself for a provider that serves
``Operation.RESPONSES`` natively (its ``operations`` include it), else a
:class:`ResponsesBridge`: a translating adapter that builds the inner adapter's chat
request from the Responses request (:func:`~.request.to_chat`), and turns the answer back
(:func:`~.answer.from_chat`; a stream through :class:`~.events.ResponsesEvents`, after the
inner adapter's own stream translator when it has one: Anthropic's, Gemini's, Cohere's,
Bedrock's).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from relaygate.config.model import Target
from relaygate.exchange import GatewayRequest, Operation
from relaygate.providers.base import (
    ProviderAdapter,
    UpstreamRequest,
    prepare_adapter,
    translating_adapter,
)
from relaygate.providers.responses.answer import from_chat
from relaygate.providers.responses.events import ResponsesEvents
from relaygate.providers.responses.request import to_chat
from relaygate.translate import Chained, StreamTranslator


def serves_natively(adapter: ProviderAdapter) -> bool:
    """Whether ``adapter`` sends Responses requests as they are (``openai``, ``azure-openai``)."""
    return Operation.RESPONSES in getattr(adapter, "operations", ())


def responses_adapter(adapter: ProviderAdapter) -> ProviderAdapter:
    """The adapter serving a Responses request for ``adapter``'s provider."""
    return adapter if serves_natively(adapter) else ResponsesBridge(adapter)


class ResponsesBridge:
    """A :class:`~relaygate.providers.base.TranslatingAdapter` serving the Responses API
    through ``inner``'s chat completions."""

    def __init__(self, inner: ProviderAdapter, clock: Callable[[], float] = time.time) -> None:
        self._inner = inner
        self._translation = translating_adapter(inner)
        self._clock = clock
        self.stream_content_types: tuple[str, ...] = getattr(inner, "stream_content_types", ())

    @property
    def name(self) -> str:
        """The inner adapter's provider name."""
        return self._inner.name

    def _chat(self, request: GatewayRequest) -> GatewayRequest:
        body = to_chat(request.body, self._inner.name)
        return request.derive(operation=Operation.CHAT, body=body, raw_body=orjson.dumps(body))

    async def prepare(self, target: Target) -> None:
        """The inner adapter's :func:`~relaygate.providers.base.prepare_adapter` work."""
        await prepare_adapter(self._inner, target)

    def build_request(
        self, request: GatewayRequest, target: Target, extra_headers: Mapping[str, str]
    ) -> UpstreamRequest:
        """The inner adapter's chat request for the Responses ``request`` (a 400
        :class:`~relaygate.errors.GatewayError` for what only a target speaking Responses
        can serve: :func:`~relaygate.providers.responses.request.to_chat`)."""
        return self._inner.build_request(self._chat(request), target, extra_headers)

    def parse_response(self, request: GatewayRequest, status: int, body: bytes) -> Any:
        """The ``response`` object for the inner adapter's chat completion."""
        completion = self._inner.parse_response(self._chat(request), status, body)
        return from_chat(completion, request.body, created=int(self._clock()))

    def stream_translator(self, request: GatewayRequest) -> StreamTranslator:
        """Chat SSE (after the inner adapter's own translator) → Responses events."""
        events = ResponsesEvents(request.body, created=int(self._clock()))
        if self._translation is None:
            return events
        return Chained(self._translation.stream_translator(self._chat(request)), events)

    def error_body(self, status: int, headers: Mapping[str, str], body: bytes) -> bytes:
        """The inner adapter's error body (OpenAI-shaped, as the Responses API's errors are)."""
        if self._translation is not None:
            return self._translation.error_body(status, headers, body)
        from relaygate.providers.handler import openai_error_body

        return openai_error_body(self._inner.name, status, body)
