"""CPU cost per span of OTLP/protobuf span encoding: the OTLP library's encoder vs ``SpanEncoder``.

Builds 6400 typical relaygate client spans: ten attributes (``gen_ai.operation.name``,
``gen_ai.system``, ``gen_ai.request.model``, ``server.address``, ``server.port``,
``http.response.status_code``, ``relaygate.attempt``, ``relaygate.target.path``,
``relaygate.config.id``, ``gen_ai.usage.output_tokens``; no ``error.type``), all but the token
count repeating across requests the way provider, model, target and config names do, and one
``relaygate.first_chunk`` event with a float attribute. They are made once through
relaygate's ``LeanTracer`` (how relaygate makes the spans it exports: plain dict attributes)
and once through the SDK's tracer (``BoundedAttributes``), then encodes each set in batches
of 64 (relaygate's export batch size) with

* ``encode_spans(batch).SerializePartialToString()`` from
  ``opentelemetry-exporter-otlp-proto-common`` (what ``OTLPSpanExporter`` does), and
* ``SpanEncoder().encode(batch)`` from ``relaygate.exporters.otlp_encoding``,

timing each pass over all batches with ``time.process_time`` (CPU time of this process) and
printing the best of three passes as µs per span, plus their ratio. A third set,
``gateway spans``, is what a single-target request really exports (``build_gateway_spans``:
the SERVER span, the config-resolve span and the CLIENT span with the attributes relaygate
sets, a unique request id and response id per request, a float and a tuple among them).
Both encoders run in the same process on the same spans; the outputs are checked to decode
to equal messages first.

Run: ``python -m benchmarks.encoder_bench``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Tracer

from relaygate.exporters.otlp_encoding import SpanEncoder
from relaygate.exporters.spans import LeanTracer

SPANS = 6400
BATCH = 64
PASSES = 3

_TARGETS = (
    ("openai", "gpt-4o-mini", "api.openai.com", 443),
    ("openai", "gpt-4o", "api.openai.com", 443),
    ("anthropic", "claude-3-5-haiku-latest", "api.anthropic.com", 443),
    ("mistral", "mistral-small-latest", "api.mistral.ai", 443),
    ("ollama", "llama3.1:8b", "localhost", 11434),
)
_CONFIGS = ("cfg-default", "cfg-fallback-cheap", "cfg-loadbalance")


def _attributes(rng: random.Random) -> tuple[str, dict[str, str | int]]:
    system, model, host, port = rng.choice(_TARGETS)
    return model, {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": system,
        "gen_ai.request.model": model,
        "server.address": host,
        "server.port": port,
        "http.response.status_code": rng.choice((200, 200, 200, 429)),
        "relaygate.attempt": rng.choice((1, 1, 1, 2)),
        "relaygate.target.path": f"targets[{rng.randrange(3)}]",
        "relaygate.config.id": rng.choice(_CONFIGS),
        "gen_ai.usage.output_tokens": rng.randrange(1, 2048),
    }


def build_spans(lean: bool, count: int = SPANS, seed: int = 7) -> list[ReadableSpan]:
    """``count`` finished client spans shaped like relaygate's per-attempt spans.

    ``lean``: made by relaygate's ``LeanTracer`` (plain dict attributes, as relaygate exports
    its own spans); otherwise by the SDK's tracer (``BoundedAttributes``, ``BoundedList``).
    """
    rng = random.Random(seed)
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider = TracerProvider(resource=Resource.create({"service.name": "relaygate"}))
    provider.add_span_processor(processor)
    tracer: Tracer = (
        LeanTracer.of(provider, processor, "relaygate")
        if lean
        else provider.get_tracer("relaygate")
    )
    for _ in range(count):
        model, attributes = _attributes(rng)
        with tracer.start_as_current_span(
            f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            span.add_event("relaygate.first_chunk", {"time_to_first_chunk_s": rng.random()})
    provider.shutdown()
    return list(exporter.get_finished_spans())


def build_gateway_spans(count: int = SPANS, seed: int = 7) -> list[ReadableSpan]:
    """About ``count`` finished spans, three per request, shaped like those a single-target
    chat request makes in relaygate (made by ``LeanTracer``, as relaygate exports them)."""
    rng = random.Random(seed)
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider = TracerProvider(resource=Resource.create({"service.name": "relaygate"}))
    provider.add_span_processor(processor)
    tracer = LeanTracer.of(provider, processor, "relaygate")
    for _ in range(count // 3):
        system, model, host, port = rng.choice(_TARGETS)
        config = rng.choice(_CONFIGS)
        tokens_in, tokens_out = rng.randrange(1, 4096), rng.randrange(1, 2048)
        with tracer.start_as_current_span(
            "POST /v1/chat/completions", kind=SpanKind.SERVER
        ) as root:
            with tracer.start_as_current_span("relaygate.config_resolve") as resolve:
                resolve.set_attribute("relaygate.config.id", config)
            attempt = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": system,
                "gen_ai.request.model": model,
                "relaygate.target.path": "config",
                "relaygate.attempt": 1,
                "relaygate.backoff_s": 0.0,
                "relaygate.stream": False,
                "server.address": host,
                "server.port": port,
                "relaygate.outcome": "ok",
                "http.response.status_code": 200,
                "gen_ai.response.model": model,
                "gen_ai.response.id": f"chatcmpl-{rng.getrandbits(64):016x}",
                "gen_ai.response.finish_reasons": ("stop",),
                "gen_ai.usage.input_tokens": tokens_in,
                "gen_ai.usage.output_tokens": tokens_out,
            }
            with tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT) as client:
                client.set_attributes(attempt)
            root.set_attributes(
                {
                    "http.request.method": "POST",
                    "relaygate.request_id": f"{rng.getrandbits(96):024x}",
                    "gen_ai.operation.name": "chat",
                    "http.route": "/v1/chat/completions",
                    "http.response.status_code": 200,
                    "relaygate.config.id": config,
                    "relaygate.attempts": 1,
                    "relaygate.outcome": "ok",
                    "relaygate.route": "config:200",
                    "relaygate.served_by": "config",
                    "gen_ai.usage.input_tokens": tokens_in,
                    "gen_ai.usage.output_tokens": tokens_out,
                }
            )
    provider.shutdown()
    return list(exporter.get_finished_spans())


def best_us_per_span(
    encode: Callable[[Sequence[ReadableSpan]], bytes], spans: list[ReadableSpan]
) -> float:
    """Best-of-``PASSES`` CPU µs per span for encoding ``spans`` in batches of ``BATCH``."""
    batches = [spans[i : i + BATCH] for i in range(0, len(spans), BATCH)]
    best = float("inf")
    for _ in range(PASSES):
        start = time.process_time()
        for batch in batches:
            encode(batch)
        best = min(best, time.process_time() - start)
    return best / len(spans) * 1e6


def _library(batch: Sequence[ReadableSpan]) -> bytes:
    data: bytes = encode_spans(batch).SerializePartialToString()
    return data


def main() -> None:
    """Build the spans, check both encoders agree, time them and print the comparison."""
    print(f"{SPANS} spans, batches of {BATCH}, best of {PASSES} passes (process CPU time)")
    sets = (
        ("relaygate tracer", lambda: build_spans(True)),
        ("SDK tracer", lambda: build_spans(False)),
        ("gateway", build_gateway_spans),
    )
    for label, build in sets:
        spans = build()
        encoder = SpanEncoder()
        sample = spans[:BATCH]
        if ExportTraceServiceRequest.FromString(encoder.encode(sample)) != encode_spans(sample):
            raise SystemExit("SpanEncoder output differs from encode_spans")
        library_us = best_us_per_span(_library, spans)
        ours_us = best_us_per_span(encoder.encode, spans)
        print(
            f"{label + ' spans:':24} encode_spans {library_us:7.2f} µs/span, "
            f"SpanEncoder {ours_us:6.2f} µs/span, ratio {library_us / ours_us:5.2f}x"
        )


if __name__ == "__main__":
    main()
