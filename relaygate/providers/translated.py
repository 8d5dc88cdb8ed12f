"""One adapter for every provider reached through a translator, configured by a vendor row.

A :class:`VendorRow` is data: where the vendor lives, how it takes its key, and the pure
functions translating each operation both ways (the vendor modules,
``providers/google/`` and ``providers/cohere/``, define one row each).
:class:`TranslatedAdapter` turns a row into a
:class:`~relaygate.providers.base.TranslatingAdapter`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from relaygate.config.model import Target
from relaygate.errors import GatewayError
from relaygate.exchange import GatewayRequest, Operation
from relaygate.providers.base import UpstreamRequest
from relaygate.providers.chatshape import (
    ChunkWriter,
    Clock,
    merged_body,
    now_seconds,
    required_model,
    wants_usage_chunk,
)
from relaygate.providers.openai_compat import json_headers, parse_json_object
from relaygate.providers.parameters import ParameterTable, check_parameters
from relaygate.providers.translation import UNREADABLE, EventTranslator, Refused, SseEvents
from relaygate.strategies.attempt_bound import stream_idle_s
from relaygate.translate import StreamTranslator

Body = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class VendorRow:
    """One translated vendor.

    - ``name``: the provider name configs use; ``base_url``: the default base (with its
      version path), which ``custom_host`` replaces;
    - ``auth_header``/``auth_prefix``: how the key is sent;
    - ``chat_path(model, stream)``, ``embed_path(model, body)``: the path below the base;
    - ``chat_request(body, model)``, ``embed_request(body, model)``: the wire bodies (they
      raise :class:`~relaygate.errors.GatewayError` for what the vendor cannot take);
    - ``chat_response(payload, model, created, id)``, ``embed_response(payload, model)``:
      the OpenAI answers (``id`` is used when the vendor gave none);
    - ``error(status, payload)``: ``(status, OpenAI error body)`` of an error answer;
    - ``stream(writer)``: the :class:`~relaygate.providers.translation.EventTranslator` of
      one stream, writing through ``writer``;
    - ``parameters``: the chat parameters it honours and those it does not
      (:mod:`relaygate.providers.parameters`).
    """

    name: str
    base_url: str
    auth_header: str
    auth_prefix: str
    chat_path: Callable[[str, bool], str]
    embed_path: Callable[[str, Body], str]
    chat_request: Callable[[Body, str], dict[str, Any]]
    embed_request: Callable[[Body, str], dict[str, Any]]
    chat_response: Callable[[Body, str, int, str], dict[str, Any]]
    embed_response: Callable[[Body, str], dict[str, Any]]
    error: Callable[[int, Any], tuple[int, bytes]]
    stream: Callable[[ChunkWriter], EventTranslator]
    parameters: ParameterTable


def new_id() -> str:
    """An answer id for an answer the vendor gave none."""
    return "chatcmpl-" + uuid.uuid4().hex[:24]


class TranslatedAdapter:
    """:class:`~relaygate.providers.base.TranslatingAdapter` for a :class:`VendorRow`.

    Serves chat (plain and streamed) and embeddings; ``/v1/completions`` is refused (400
    ``unsupported_operation``, which falls back). ``clock`` dates answers (``created``),
    ``ids`` names answers the vendor gave no id.
    """

    def __init__(
        self, row: VendorRow, clock: Clock | None = None, ids: Callable[[], str] = new_id
    ) -> None:
        self.row = row
        self._clock = clock
        self._ids = ids

    stream_content_types: tuple[str, ...] = ()
    """The vendors' streams are ``text/event-stream``."""

    @property
    def name(self) -> str:
        """The provider's name as configs spell it."""
        return self.row.name

    def _created(self) -> int:
        return now_seconds(self._clock) if self._clock else now_seconds()

    def _model(self, request: GatewayRequest, body: Body) -> str:
        return required_model(self.row.name, body).removeprefix("models/")

    def build_request(
        self, request: GatewayRequest, target: Target, extra_headers: Mapping[str, str]
    ) -> UpstreamRequest:
        """See :meth:`relaygate.providers.base.ProviderAdapter.build_request`."""
        row = self.row
        if request.operation not in (Operation.CHAT, Operation.EMBEDDINGS):
            raise GatewayError(
                400,
                f"provider '{row.name}' does not serve {request.operation.value}",
                code="unsupported_operation",
            )
        body = merged_body(request, target)
        model = self._model(request, body)
        try:
            if request.operation is Operation.CHAT:
                check_parameters(row.parameters, request, target, body)
                payload = row.chat_request(body, model)
                path = row.chat_path(model, request.stream)
            else:
                payload = row.embed_request(body, model)
                path = row.embed_path(model, body)
        except UNREADABLE as exc:
            # A shape the translator does not read: the caller's request, answered as such.
            raise GatewayError(
                400,
                f"provider '{row.name}' cannot take this request ({type(exc).__name__})",
                code="untranslatable_request",
            ) from None
        headers = json_headers(request.stream, extra_headers)
        if target.api_key:
            headers[row.auth_header] = row.auth_prefix + target.api_key.reveal()
        return UpstreamRequest(
            method="POST",
            url=(target.custom_host or row.base_url) + path,
            headers=headers,
            content=orjson.dumps(payload),
            stream=request.stream,
            idle_timeout_s=stream_idle_s(target.stream_idle_timeout_ms, target.request_timeout_ms),
        )

    def parse_response(self, request: GatewayRequest, status: int, body: bytes) -> Any:
        """The OpenAI answer (chat completion or embeddings list) of the vendor's 2xx
        ``body``; :class:`ValueError` when it is not one, :class:`Refused` when it is a
        refusal answered as an error (Gemini's prompt block)."""
        payload = parse_json_object(body)
        assert request.target is not None
        model = self._model(request, merged_body(request, request.target))
        try:
            if request.operation is Operation.EMBEDDINGS:
                return self.row.embed_response(payload, model)
            return self.row.chat_response(payload, model, self._created(), self._ids())
        except Refused:
            raise
        except UNREADABLE as exc:
            raise ValueError(f"upstream answer unreadable: {exc}") from None

    def stream_translator(self, request: GatewayRequest) -> StreamTranslator:
        """See :meth:`relaygate.providers.base.TranslatingAdapter.stream_translator`."""
        assert request.target is not None
        body = merged_body(request, request.target)
        writer = ChunkWriter(
            id=self._ids(),
            model=self._model(request, body),
            created=self._created(),
            usage_chunk=wants_usage_chunk(body),
        )
        events: EventTranslator = self.row.stream(writer)
        return SseEvents(events)

    def error_body(self, status: int, headers: Mapping[str, str], body: bytes) -> bytes:
        """See :meth:`relaygate.providers.base.TranslatingAdapter.error_body`."""
        try:
            payload = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            payload = None
        return self.row.error(status, payload)[1]
