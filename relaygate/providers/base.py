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
from relaygate.exchange import GatewayRequest
from relaygate.security.egress import EgressPolicy
from relaygate.translate import StreamTranslator


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


class TranslatingAdapter(ProviderAdapter, Protocol):
    """An adapter whose provider speaks a wire format of its own, not OpenAI's: the one
    translation interface (Anthropic, Gemini, Cohere, Bedrock, and the Responses bridge over
    any adapter), found by :func:`translating_adapter`. Adapters without it are
    OpenAI-shaped and their answers pass through as sent. With it:

    - :meth:`ProviderAdapter.parse_response` answers the OpenAI payload, which the handler
      sends re-encoded (never the upstream's bytes); it raises
      :class:`~relaygate.providers.translation.Refused` for a 2xx answer that is a refusal
      to be answered as an error (Gemini's prompt block);
    - :meth:`stream_translator` makes the per-stream
      :class:`~relaygate.translate.StreamTranslator` a streamed 2xx answer is read through
      (a :class:`~relaygate.translate.TranslatedStream`) before anything reads it, so the
      pipeline's one stream type, telemetry, deadlines (the idle bound stays on the raw
      upstream stream) and mid-stream recovery see OpenAI chunks; a vendor's in-band error
      or a truncated stream raises ``ValueError`` or
      :class:`~relaygate.providers.client.StreamInterrupted` (a break), a refusal at the
      stream's start :class:`~relaygate.providers.translation.Refused`;
    - :meth:`error_body` answers an OpenAI-shaped error body for a non-2xx answer; the
      status stays the upstream's, as sent (policy equivalences such as 529 ≈ 503 live in
      :data:`~relaygate.strategies.triggers.STATUS_ALIASES`).

    ``stream_content_types`` are the content types (substrings) of the provider's streamed
    answers besides ``text/event-stream`` (Bedrock's eventstream).
    """

    stream_content_types: tuple[str, ...]

    def stream_translator(self, request: GatewayRequest) -> StreamTranslator:
        """A fresh translator for one streamed answer to ``request``."""
        ...

    def error_body(self, status: int, headers: Mapping[str, str], body: bytes) -> bytes:
        """The OpenAI-shaped error body (``{"error": {...}}``) for a non-2xx answer."""
        ...


def translating_adapter(adapter: ProviderAdapter) -> TranslatingAdapter | None:
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
