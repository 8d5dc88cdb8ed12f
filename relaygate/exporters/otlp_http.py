"""OTLP/HTTP span export with relaygate's span encoder.

:class:`LeanOTLPSpanExporter` is the SDK's ``OTLPSpanExporter`` — same configuration
(endpoint, headers, timeout, compression, certificates from its arguments or the
``OTEL_EXPORTER_OTLP_*`` variables), same HTTP client, retries and size limit — whose
batches are serialized by :class:`~relaygate.exporters.otlp_encoding.SpanEncoder` instead
of through protobuf message objects: the same bytes on the wire at a fraction of the CPU
(encoding was the largest single item in relaygate's profile with every span exported).

It relies on the exporter's internal HTTP client; if a future SDK lays that out
differently, :attr:`LeanOTLPSpanExporter.lean` is ``False`` and batches go through the
SDK's own ``export`` unchanged (a test pins the lean path for the versions relaygate
depends on).

Batches to an ``http://`` endpoint are posted over one kept connection by
:class:`~relaygate.exporters.otlp_transport.KeptHTTPTransport` (one ``sendall`` per batch and
a small response reader); ``https://`` ones over one kept urllib3 connection pool (the SDK's
own ``Urllib3HTTPTransport``). Either is far cheaper than ``requests``, whose per-call work
(merging session and environment settings, building a prepared request, cookie and redirect
handling) cost about as much CPU as encoding the batch (``python -m
benchmarks.export_bench``). Everything that configures the export is unchanged: endpoint,
headers, timeout, compression, the client certificate and the CA certificate from the
arguments or the ``OTEL_EXPORTER_OTLP_*`` variables, retries and their back-off. Without a
CA certificate configured, the bundle is ``REQUESTS_CA_BUNDLE``, else ``CURL_CA_BUNDLE``,
else ``certifi``'s, as ``requests`` picks it. Where only ``requests`` would honour the
set-up, it is kept: a ``session`` or credential-provider session given, or a proxy variable
(``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, any case) set.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from relaygate.exporters.otlp_encoding import SpanEncoder
from relaygate.exporters.otlp_transport import KeptHTTPTransport

_logger = logging.getLogger(__name__)

_INTERNALS = ("_metrics", "_shutdown", "_max_request_size")

_REQUESTS_ONLY_VARS = (
    "https_proxy",
    "http_proxy",
    "all_proxy",
    "otel_python_exporter_otlp_http_credential_provider",
    "otel_python_exporter_otlp_http_traces_credential_provider",
)
"""Variables (compared in lower case) that only the ``requests`` transport honours."""


def kept_transport(
    env: Mapping[str, str],
    certificate_file: str | None = None,
    client_key_file: str | None = None,
    client_certificate_file: str | None = None,
) -> Any | None:
    """The kept transport for an exporter set up by these arguments and ``env``: plain HTTP
    over one kept connection, HTTPS through a urllib3 pool with the certificates resolved as
    the SDK resolves them; ``None`` where ``requests`` must stay (see the module
    docstring)."""
    if any(name.lower() in _REQUESTS_ONLY_VARS for name in env):
        return None
    try:
        from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport
    except ImportError:  # pragma: no cover - shipped with the OTLP/HTTP exporter
        return None
    verify: str | None = (
        certificate_file
        or env.get("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE")
        or env.get("OTEL_EXPORTER_OTLP_CERTIFICATE")
        or env.get("REQUESTS_CA_BUNDLE")
        or env.get("CURL_CA_BUNDLE")
    )
    if verify is None:
        try:
            import certifi
        except ImportError:  # pragma: no cover - a dependency of requests
            return None
        verify = certifi.where()
    key = (
        client_key_file
        or env.get("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY")
        or env.get("OTEL_EXPORTER_OTLP_CLIENT_KEY")
    )
    certificate = (
        client_certificate_file
        or env.get("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE")
        or env.get("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")
    )
    cert = (certificate, key) if certificate and key else certificate
    return KeptHTTPTransport(Urllib3HTTPTransport(verify=verify, cert=cert))


class LeanOTLPSpanExporter(OTLPSpanExporter):
    """``OTLPSpanExporter`` encoding with :class:`SpanEncoder` and posting over a kept
    urllib3 pool (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if not args and "session" not in kwargs and "_transport" not in kwargs:
            transport = kept_transport(
                os.environ,
                kwargs.get("certificate_file"),
                kwargs.get("client_key_file"),
                kwargs.get("client_certificate_file"),
            )
            if transport is not None:
                kwargs["_transport"] = transport
        super().__init__(*args, **kwargs)
        self._encoder = SpanEncoder()
        client_export = getattr(getattr(self, "_client", None), "export", None)
        self.lean = callable(client_export) and all(hasattr(self, name) for name in _INTERNALS)
        """Whether batches take the lean encoder (see the module docstring)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Encode ``spans`` and post them, as ``OTLPSpanExporter.export`` does."""
        if not self.lean:
            return super().export(spans)
        if self._shutdown:
            _logger.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE
        with self._metrics.export_operation(len(spans)) as result:
            try:
                data = self._encoder.encode(spans)
            except Exception as error:  # a bad batch is dropped and logged, never raised
                _logger.error("Failed to encode span batch: %s", error)
                result.error = error
                return SpanExportResult.FAILURE
            limit = self._max_request_size
            if 0 < limit < len(data):
                _logger.warning(
                    "Dropping span batch: serialized size %d bytes exceeds max_request_size "
                    "%d bytes.",
                    len(data),
                    limit,
                )
                result.error = ValueError("span batch exceeds max_request_size")
                return SpanExportResult.FAILURE
            exported = self._client.export(data)
            if not exported.success:
                result.error = exported.error
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS
