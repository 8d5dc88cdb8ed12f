"""CPU cost of one OTLP/HTTP span export batch, by exporter, HTTP client, compression and size.

Posts batches of relaygate-shaped client spans (``encoder_bench.build_spans``) to
``otlp_sink.py`` (a separate process that answers 200 and discards, pinned to another core
where ``taskset`` exists) and reads this process's CPU time (``time.process_time``) around
each pass: encoding, compression and the HTTP client, everything the gateway's export thread
pays per batch. Variants, all in the same run:

* ``sdk``: the SDK's ``OTLPSpanExporter`` (protobuf message encoding, ``requests``);
* ``lean+requests``: relaygate's ``LeanOTLPSpanExporter`` forced onto ``requests`` (what it
  posted through before);
* ``lean+urllib3``: ``LeanOTLPSpanExporter`` on a kept urllib3 pool (what it posted through
  before, and still does to ``https://`` endpoints);
* ``lean+kept``: ``LeanOTLPSpanExporter`` as relaygate builds it for an ``http://`` endpoint
  (one kept connection, ``relaygate.exporters.otlp_transport``);
* ``encode only``: ``SpanEncoder`` alone, the floor under any HTTP client;

each without and with gzip, in batches of 128 (relaygate's export batch size) and 512 (the
SDK's). Figures are the best of ``--passes`` passes, as ms per batch and µs per span.

Run: ``python -m benchmarks.export_bench [--batches 40] [--passes 5]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import requests
from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from benchmarks.encoder_bench import build_spans
from benchmarks.procs import free_port
from relaygate.exporters.otlp_encoding import SpanEncoder
from relaygate.exporters.otlp_http import LeanOTLPSpanExporter

Export = Callable[[Sequence[ReadableSpan]], Any]


def best_ms_per_batch(export: Export, batches: list[list[ReadableSpan]], passes: int) -> float:
    """Best-of-``passes`` CPU ms per batch for exporting every batch once."""
    best = float("inf")
    for _ in range(passes):
        started = time.process_time()
        for batch in batches:
            if export(batch) is SpanExportResult.FAILURE:
                raise SystemExit("an export failed: is the sink running?")
        best = min(best, time.process_time() - started)
    return best * 1000 / len(batches)


def variants(url: str) -> dict[str, Callable[[bool], Export]]:
    """Each exporter under test, built for ``url`` without or with gzip."""

    def compression(gzip: bool) -> Compression:
        return Compression.Gzip if gzip else Compression.NoCompression

    def lean_requests(gzip: bool) -> Export:
        exporter = LeanOTLPSpanExporter(
            endpoint=url, compression=compression(gzip), session=requests.Session()
        )
        return exporter.export

    def lean_urllib3(gzip: bool) -> Export:
        transport = Urllib3HTTPTransport()
        exporter = LeanOTLPSpanExporter(
            endpoint=url, compression=compression(gzip), _transport=transport
        )
        return exporter.export

    return {
        "sdk": lambda gzip: OTLPSpanExporter(endpoint=url, compression=compression(gzip)).export,
        "lean+requests": lean_requests,
        "lean+urllib3": lean_urllib3,
        "lean+kept": lambda gzip: (
            LeanOTLPSpanExporter(endpoint=url, compression=compression(gzip)).export
        ),
    }


def main(argv: list[str] | None = None) -> int:
    """Start the sink, time every variant and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=40, help="batches per pass")
    parser.add_argument("--passes", type=int, default=5)
    ns = parser.parse_args(argv)
    port = free_port()
    pin = ["taskset", "-c", "1"] if shutil.which("taskset") else []
    sink = subprocess.Popen(
        [*pin, sys.executable, "-m", "benchmarks.otlp_sink", "--port", str(port)],
    )
    try:
        time.sleep(1.0)
        url = f"http://127.0.0.1:{port}/v1/traces"
        encoder = SpanEncoder()
        print(f"best of {ns.passes} passes of {ns.batches} batches; CPU of this process")
        print(f"{'exporter':16} {'gzip':>5} {'batch':>6} {'ms/batch':>9} {'µs/span':>8}")
        for size in (128, 512):
            spans = build_spans(True, size * ns.batches)
            batches = [spans[i : i + size] for i in range(0, len(spans), size)]
            rows: list[tuple[str, bool, float]] = [
                ("encode only", False, best_ms_per_batch(encoder.encode, batches, ns.passes))
            ]
            for name, build in variants(url).items():
                for gzip in (False, True):
                    rows.append((name, gzip, best_ms_per_batch(build(gzip), batches, ns.passes)))
            for name, gzip, ms in rows:
                gz = "on" if gzip else "off"
                print(f"{name:16} {gz:>5} {size:6d} {ms:9.3f} {ms * 1000 / size:8.2f}")
    finally:
        sink.terminate()
        sink.wait(5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
