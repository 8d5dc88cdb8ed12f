"""The provider adapter interface: pure translation between the canonical request and a wire format.

An adapter never does I/O. It turns a :class:`~relaygate.exchange.GatewayRequest` bound to a
:class:`~relaygate.config.model.Target` into an :class:`UpstreamRequest`, and turns the
upstream's answer back into an OpenAI-shaped payload. Providers whose API is OpenAI's share
one adapter configured by a table row; providers that need translation (Anthropic, Google,
Bedrock, Cohere) implement :class:`ProviderAdapter` in a module of their own, registered by
name in :mod:`relaygate.providers.registry`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from relaygate.config.model import Target
from relaygate.exchange import ByteSource, GatewayRequest
from relaygate.security.egress import EgressPolicy


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """One HTTP call to make upstream, fully built: the I/O module sends it as is.

    ``idle_timeout_s`` bounds the wait between two streamed chunks once the stream is handed
    on (``None``: unbounded; see :func:`~relaygate.strategies.attempt_bound.stream_idle_s`).
    ``egress`` is set when a caller chose the destination: the client then checks the URL
    and every address it connects to against it (``None``: an operator-chosen destination).
    ``stream_content_types`` widens what counts as a streamed answer.
    """

    method: str
    url: str
    headers: dict[str, str]
    content: bytes
    stream: bool = False
    idle_timeout_s: float | None = None
    egress: EgressPolicy | None = None
    stream_content_types: tuple[str, ...] = ()
    """Content types (substrings) of a streamed answer besides ``text/event-stream``
    (Bedrock's ``application/vnd.amazon.eventstream``)."""

    @property
    def host(self) -> str:
        """``host`` of the URL, for the ``server.address`` span attribute."""
        rest = self.url.split("://", 1)[-1]
        hostport = rest.split("/", 1)[0]
        if hostport.startswith("["):
            return hostport.split("]", 1)[0] + "]"
        return hostport.rsplit(":", 1)[0] if ":" in hostport else hostport

    @property
    def port(self) -> int:
        """Port of the URL (the scheme's default when absent)."""
        scheme, _, rest = self.url.partition("://")
        hostport = rest.split("/", 1)[0]
        tail = hostport.rsplit("]", 1)[-1]
        if ":" in tail:
            try:
                return int(tail.rsplit(":", 1)[1])
            except ValueError:
                pass
        return 443 if scheme == "https" else 80


class ProviderAdapter(Protocol):
    """Translation for one provider. Implementations are stateless and do no I/O."""

    @property
    def name(self) -> str:
        """The provider's name as configs spell it (``openai``, ``azure-openai``...)."""
        ...

    def build_request(
        self, request: GatewayRequest, target: Target, extra_headers: Mapping[str, str]
    ) -> UpstreamRequest:
        """The upstream call for ``request`` sent to ``target``.

        ``extra_headers`` (forwarded client headers, trace context) are added as given.
        Raises :class:`~relaygate.errors.GatewayError` when the target cannot serve the
        operation or lacks a required setting.
        """
        ...

    def parse_response(self, request: GatewayRequest, status: int, body: bytes) -> Any:
        """The OpenAI-shaped payload of a complete 2xx answer.

        Raises :class:`ValueError` when the body is not a valid answer (the caller reports
        ``invalid_response``).
        """
        ...


class AnswerTranslation(Protocol):
    """Optional hooks of an adapter whose wire format is not OpenAI's, found as its
    ``translation`` attribute (:func:`translation_of`; adapters without one are
    OpenAI-shaped and pass answers through). With a translation:

    - :meth:`ProviderAdapter.parse_response` returns the OpenAI payload, which the handler
      serialises as the answer's body (the upstream's bytes are not sent on);
    - a streamed 2xx answer is read through :meth:`translate_stream`, whose output must be
      OpenAI ``chat.completion.chunk`` SSE events (``data:`` lines, a usage chunk, ``[DONE]``):
      the pipeline's one :class:`~relaygate.exchange.ResponseStream` wraps it, so telemetry,
      deadlines (the idle bound stays on the raw upstream stream) and mid-stream recovery
      work unchanged; the source's exceptions must pass through, and a vendor's in-band
      error or truncated stream must raise
      :class:`~relaygate.providers.client.StreamInterrupted` (a break);
    - a 4xx/5xx body is rewritten by :meth:`translate_error` into OpenAI's error shape; the
      status stays the upstream's, as sent (policy equivalences such as 529 ≈ 503 live in
      :data:`~relaygate.strategies.triggers.STATUS_ALIASES`).
    """

    def translate_stream(self, request: GatewayRequest, source: ByteSource) -> ByteSource:
        """OpenAI chunk events read from the vendor's stream ``source``."""
        ...

    def translate_error(self, request: GatewayRequest, status: int, body: bytes) -> bytes:
        """OpenAI's ``{"error": {...}}`` body for the vendor's error ``body``."""
        ...


def translation_of(adapter: object) -> AnswerTranslation | None:
    """``adapter.translation`` when the adapter has one, else ``None`` (OpenAI-shaped)."""
    translation: AnswerTranslation | None = getattr(adapter, "translation", None)
    return translation


class StreamTranslator(Protocol):
    """Turns one streamed answer's wire bytes into OpenAI-style SSE bytes, incrementally.

    One instance per stream (it keeps partial frames between calls). ``feed`` takes the
    bytes as they arrive, in chunks cut anywhere, and answers the SSE bytes they complete
    (possibly ``b""``); ``end`` answers what remains once the wire stream ended cleanly
    (a closing usage event, ``data: [DONE]``). Both raise :class:`ValueError` when the
    wire bytes are not a valid stream (the stream is then reported broken).
    """

    def feed(self, data: bytes) -> bytes:
        """SSE bytes completed by ``data``."""
        ...

    def end(self) -> bytes:
        """SSE bytes closing the stream after its last wire chunk."""
        ...


class TranslatingAdapter(ProviderAdapter, Protocol):
    """An adapter whose provider speaks its own wire format, not OpenAI's (additive hook).

    The provider handler asks for these only when the adapter has them
    (:func:`stream_translation_of`): ``parse_response`` answers the OpenAI payload, which is
    sent re-encoded (never the upstream's bytes); ``stream_translator`` makes the
    per-stream translator applied to a streamed 2xx answer before anything reads it (so
    the pipeline's one stream type, telemetry, deadlines and recovery see OpenAI chunks);
    ``error_body`` answers an OpenAI-shaped error body for a non-2xx answer.
    ``stream_content_types`` are the content types (substrings) of the provider's
    streamed answers besides ``text/event-stream``.
    """

    stream_content_types: tuple[str, ...]

    def stream_translator(self, request: GatewayRequest) -> StreamTranslator:
        """A fresh translator for one streamed answer to ``request``."""
        ...

    def error_body(self, status: int, headers: Mapping[str, str], body: bytes) -> bytes:
        """The OpenAI-shaped error body (``{"error": {...}}``) for a non-2xx answer."""
        ...


def stream_translation_of(adapter: ProviderAdapter) -> TranslatingAdapter | None:
    """``adapter`` when it translates a wire format of its own, else ``None``."""
    if getattr(adapter, "stream_translator", None) is None:
        return None
    return adapter  # type: ignore[return-value]


async def prepare_adapter(adapter: object, target: Target) -> None:
    """Await ``adapter.prepare(target)`` when the adapter has one: work an adapter needs
    done before :meth:`ProviderAdapter.build_request` that must not run on the event loop
    (Bedrock resolves the AWS credential chain in a worker thread); nothing otherwise."""
    prepare = getattr(adapter, "prepare", None)
    if prepare is not None:
        await prepare(target)
