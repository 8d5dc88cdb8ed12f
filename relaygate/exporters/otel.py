"""Tracing set-up: a tracer from the host's provider, the server config, or the OTEL_* variables.

Precedence: a tracer provider the host application already installed globally (relaygate
mounted in an app that traces) is used as is. Otherwise relaygate builds its own provider
(never installed globally) whose exporter is the server config's ``telemetry.traces.exporter``
when set to something other than ``none``, else ``OTEL_TRACES_EXPORTER``. ``otlp`` means
OTLP over HTTP/protobuf, configured by ``telemetry.traces.endpoint`` or the standard
``OTEL_EXPORTER_OTLP_*`` variables; the sampler is ``OTEL_TRACES_SAMPLER`` when set, else
parent-based by ``sample_ratio``. With no exporter the tracer is a no-op: spans cost nothing.

Spans are exported from a background thread with a bounded queue
(``BatchSpanProcessor``): an exporter that is down or slow drops spans, it never blocks
or fails a request. Shutting down waits at most ``flush_timeout_s`` for the last spans to
leave (an OTLP export's own timeout is that bound too, unless the ``OTEL_EXPORTER_OTLP_*``
variables set one), so a collector that accepts and never answers cannot hold a stopping
server past its grace period.

With a tail policy that samples (``keep_ok_ratio`` below 1), relaygate's tracer holds each
request's spans until the request is decided (:mod:`relaygate.exporters.tail`); the
head sampler above still decides first, so a trace it drops is never recorded at all.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider, Tracer

from relaygate.exporters.spans import LeanTracer
from relaygate.exporters.tail import (
    DEFAULT_MAX_BUFFERED_SPANS,
    DEFAULT_MAX_SPANS_PER_TRACE,
    TailSampler,
)
from relaygate.strategies.trace_sampling import TailPolicy

TRACER_NAME = "relaygate"

EXPORT_BATCH_SIZE = 128
"""Spans per export batch unless ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` says otherwise."""


@dataclass
class Tracing:
    """The tracer relaygate uses and how to flush it at shutdown."""

    tracer: Tracer
    shutdown: Callable[[], None]
    exporter: str
    tail: TailSampler | None = None
    """The tail sampler holding requests' spans until their decision, when one samples."""


def _nothing() -> None:
    return None


def setup_tracing(
    exporter: str = "none",
    endpoint: str | None = None,
    sample_ratio: float = 1.0,
    service_name: str = "relaygate",
    env: Mapping[str, str] | None = None,
    flush_timeout_s: float = 3.0,
    tail_policy: TailPolicy | None = None,
    max_spans_per_trace: int = DEFAULT_MAX_SPANS_PER_TRACE,
    max_buffered_spans: int = DEFAULT_MAX_BUFFERED_SPANS,
) -> Tracing:
    """Build the tracer by the precedence in the module docstring; ``tail_policy`` (when it
    samples) and the two bounds set up tail sampling of relaygate's own tracer."""
    env = os.environ if env is None else env
    current = trace.get_tracer_provider()
    if not isinstance(current, ProxyTracerProvider | NoOpTracerProvider):
        return Tracing(current.get_tracer(TRACER_NAME), _nothing, "host")
    chosen = exporter if exporter != "none" else env.get("OTEL_TRACES_EXPORTER", "none")
    chosen = chosen.split(",")[0].strip().lower() or "none"
    span_exporter = _exporter(chosen, endpoint, env, flush_timeout_s)
    if span_exporter is None:
        return Tracing(NoOpTracerProvider().get_tracer(TRACER_NAME), _nothing, "none")
    name = env.get("OTEL_SERVICE_NAME") or service_name
    sampler: Sampler | None = None
    if "OTEL_TRACES_SAMPLER" not in env:
        root: Sampler = ALWAYS_ON if sample_ratio >= 1 else TraceIdRatioBased(sample_ratio)
        sampler = ParentBased(root)
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}), sampler=sampler)
    # Smaller batches than the SDK's 512: encoding and posting a batch holds the GIL, and a
    # large batch shows up as a latency spike on whichever request is running meanwhile;
    # each post also costs ~1 ms of CPU, so not much smaller either (p99 at 1 connection:
    # 64 spans ~4.8 ms, 128 ~4.9 ms, 256 ~6.2 ms; CPU per request falls as batches grow).
    batch = None if "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" in env else EXPORT_BATCH_SIZE
    processor = BatchSpanProcessor(span_exporter, max_export_batch_size=batch)
    provider.add_span_processor(processor)
    shutdown = bounded(provider.shutdown, flush_timeout_s)
    tracer = LeanTracer.of(provider, processor, TRACER_NAME)
    # relaygate's own ParentBased(ALWAYS_ON) samples every local root: the tracer skips
    # asking it for those.
    tracer.roots_sampled = sampler is not None and sample_ratio >= 1
    if tail_policy is not None and tail_policy.samples:
        tracer.tail = TailSampler(processor, tail_policy, max_spans_per_trace, max_buffered_spans)
    return Tracing(tracer, shutdown, chosen, tracer.tail)


def bounded(fn: Callable[[], object], timeout_s: float) -> Callable[[], None]:
    """``fn`` run on a daemon thread, waited for at most ``timeout_s`` seconds.

    For shutdown work that may block on the network (the final span export): past the
    bound the caller goes on and the thread is left to die with the process.
    """

    def run() -> None:
        worker = threading.Thread(target=fn, name="relaygate-telemetry-flush", daemon=True)
        worker.start()
        worker.join(timeout_s)

    return run


_TIMEOUT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")


def _exporter(
    name: str, endpoint: str | None, env: Mapping[str, str], timeout_s: float
) -> SpanExporter | None:
    if name == "none":
        return None
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
        )
        if protocol != "http/protobuf":
            raise ValueError(f"OTLP protocol {protocol!r} is not supported; use http/protobuf")
        from relaygate.exporters.otlp_http import LeanOTLPSpanExporter

        timeout = None if any(var in env for var in _TIMEOUT_VARS) else max(timeout_s, 0.001)
        if endpoint:
            url = endpoint.rstrip("/")
            if not url.endswith("/v1/traces"):
                url += "/v1/traces"
            return LeanOTLPSpanExporter(endpoint=url, timeout=timeout)
        return LeanOTLPSpanExporter(timeout=timeout)
    raise ValueError(f"unknown traces exporter {name!r}; use none, otlp or console")
