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


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """One HTTP call to make upstream, fully built: the I/O module sends it as is.

    ``idle_timeout_s`` bounds the wait between two streamed chunks once the stream is handed
    on (``None``: unbounded; see :func:`~relaygate.strategies.attempt_bound.stream_idle_s`).
    ``egress`` is set when a caller chose the destination: the client then checks the URL
    and every address it connects to against it (``None``: an operator-chosen destination).
    """

    method: str
    url: str
    headers: dict[str, str]
    content: bytes
    stream: bool = False
    idle_timeout_s: float | None = None
    egress: EgressPolicy | None = None

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
