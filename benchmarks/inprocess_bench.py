"""relaygate's own CPU per request, without an HTTP server or a wire client.

Drives the ASGI app returned by ``create_app`` directly (a prepared ASGI scope and a
``receive`` that hands over the body) against an in-memory upstream that answers at once, so
what is measured is relaygate alone: routing, config resolution, the pipeline, the provider
adapter, and telemetry. Telemetry on means every span made and serialized with relaygate's
OTLP encoder (the bytes are then discarded instead of posted), metrics recorded and one JSON
log line per request written to ``/dev/null``; off means no spans, logs at ``warning``;
tail means telemetry on at the README's production setting (:data:`TAIL_SAMPLING`: clean
successes kept at 10 %, every other trace kept; ``detail: attempts``).
Each configuration runs in a fresh interpreter (logging and tracing are process-wide); the
figure is the best of ``--repeat`` runs of ``--requests`` requests, CPU time of the whole
process (the span export thread included). After a warm-up the collector is settled as a
served start-up settles it (:func:`relaygate.collector.settle`: start-up's objects frozen,
the young threshold raised).

Run: ``python -m benchmarks.inprocess_bench [--requests 4000] [--repeat 3]``.

``--calls`` counts instead, with :mod:`cProfile`, the Python function calls one request
makes (functions written in Python, relaygate's and its libraries'; C built-ins left out),
in the event loop's thread: a figure that does not drift with the machine's load.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import orjson

from benchmarks.systems import chat_body

CHAT_BODY = chat_body()
"""The benchmark's usual small chat request."""
ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello, benchmark."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23},
    }
)
FAILURE = orjson.dumps({"error": {"message": "overloaded", "type": "server_error"}})


TAIL_SAMPLING = {"keep_ok_ratio": 0.1, "latency_threshold_ms": 2000}
"""The documented production tail-sampling policy (README, Tail sampling), used with the
production setting's ``detail: attempts``."""

MODES = ("on", "tail", "off")
"""Telemetry on (every trace exported), on with tail sampling, off."""


def server_config(mode: str) -> dict[str, Any]:
    """Named configs ``single`` and ``fallback`` (a 503 target, then a healthy one), with
    telemetry in ``mode`` (one of :data:`MODES`)."""

    def target(path: str) -> dict[str, Any]:
        return {"provider": "openai", "api_key": "bench-key", "custom_host": f"http://up{path}"}

    traces: dict[str, Any] = {
        "exporter": "otlp",
        "endpoint": "http://127.0.0.1:9",
        "detail": "full",
    }
    if mode == "tail":
        traces["tail_sampling"] = TAIL_SAMPLING
        traces["detail"] = "attempts"
    tel: dict[str, Any] = (
        {
            "traces": traces,
            "metrics": {"enabled": True},
            "logs": {"level": "info", "format": "json"},
        }
        if mode != "off"
        else {
            "traces": {"exporter": "none", "detail": "off"},
            "metrics": {"enabled": False},
            "logs": {"level": "warning", "format": "json"},
        }
    )
    return {
        "default_config": "single",
        "configs": {
            "single": target("/ok/v1"),
            "fallback": {
                "strategy": {"mode": "fallback"},
                "targets": [target("/fail/v1"), target("/ok/v1")],
            },
        },
        "telemetry": {"service_name": "relaygate-bench", **tel},
        # A real fallback on every request: the default circuit breaker would skip the
        # always-failing target after five requests.
        "breaker": {"enabled": False},
    }


def chat_scope(body: bytes, *extra: tuple[bytes, bytes]) -> dict[str, Any]:
    """The ASGI scope of a chat-completion POST carrying ``body``, with ``extra`` headers."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"relaygate"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *extra,
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8787),
    }


def served_scope(scope: dict[str, Any]) -> dict[str, Any]:
    """``scope`` as relaygate's own server protocol hands it over: with the connection's
    client watch (:class:`~relaygate.drain.ClientWatch`) in its extensions, the body in."""
    from relaygate.drain import CLIENT_WATCH_KEY, ClientWatch

    watch = ClientWatch()
    watch.body_complete = True
    return {**scope, "extensions": {CLIENT_WATCH_KEY: {"watch": watch}}}


def measure(mode: str, kind: str, requests: int, calls: bool = False) -> float:
    """CPU milliseconds per request of ``requests`` requests of ``kind`` (this process);
    with ``calls``, Python function calls per request instead."""
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    import relaygate.exporters.otel as otel
    from relaygate import collector
    from relaygate.app import create_app
    from relaygate.exporters.logging import configure_logging
    from relaygate.exporters.otlp_encoding import SpanEncoder
    from relaygate.gateway import GatewayDeps
    from relaygate.providers.client import UpstreamResponse

    class EncodeAndDiscard(SpanExporter):
        def __init__(self) -> None:
            self.encoder = SpanEncoder()

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            self.encoder.encode(spans)
            return SpanExportResult.SUCCESS

    class Upstream:
        async def send(self, request: Any) -> UpstreamResponse:
            failing = "/fail/" in request.url
            return UpstreamResponse(
                status=503 if failing else 200,
                headers={"content-type": "application/json"},
                body=FAILURE if failing else ANSWER,
            )

        async def aclose(self) -> None:
            return None

    # Spans must not be dropped for want of queue space: the loop outruns the exporter.
    os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = str(requests * 8)
    library_exporter = otel._exporter

    def exporter(name: str, *args: Any) -> SpanExporter | None:
        return EncodeAndDiscard() if name == "otlp" else library_exporter(name, *args)

    otel._exporter = exporter
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - where the log lines go
    config = server_config(mode)
    configure_logging(config["telemetry"]["logs"]["level"], "json", env={})
    app = create_app(config, GatewayDeps(upstream=Upstream()))
    scope = served_scope(chat_scope(CHAT_BODY, (b"x-portkey-config", kind.encode())))
    statuses: set[int] = set()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": CHAT_BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.add(message["status"])

    async def run(count: int) -> None:
        for _ in range(count):
            await app(dict(scope), receive, send)

    import uvloop

    uvloop.run(run(300))
    # As a served start-up ends (relaygate.collector), once the warm-up made what lives on.
    collector.settle()
    profile = cProfile.Profile() if calls else None
    started = time.process_time()
    if profile is not None:
        profile.enable()
    uvloop.run(run(requests))
    if profile is not None:
        profile.disable()
    app.state.gateway.telemetry.shutdown()  # flush: encoding counts too
    spent = time.process_time() - started
    if statuses != {200}:
        raise SystemExit(f"unexpected statuses {statuses}")
    if profile is not None:
        stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
        python = sum(v[1] for (path, _, _), v in stats.items() if path != "~")
        return float(python) / requests
    return spent * 1000 / requests


def main(argv: list[str] | None = None) -> int:
    """Print CPU ms per request, telemetry on, tail-sampled and off, single target and
    fallback, with the ratios to off."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--calls", action="store_true", help="Python function calls per request instead"
    )
    parser.add_argument("--child", nargs=2, metavar=("TELEMETRY", "KIND"), help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.child:
        figure = measure(ns.child[0], ns.child[1], ns.requests, ns.calls)
        print(f"{figure:.4f}", file=sys.__stdout__)
        return 0
    if ns.calls:
        return _print_calls(ns.requests)
    print(f"{ns.requests} requests per run, best of {ns.repeat} runs, CPU ms per request")
    print(
        f"{'kind':10} {'telemetry on':>13} {'tail':>8} {'off':>8} {'on / off':>9} "
        f"{'tail / off':>11}"
    )
    for kind in ("single", "fallback"):
        best: dict[str, float] = {}
        for telemetry in MODES:
            runs = []
            for _ in range(ns.repeat):
                runs.append(_child(telemetry, kind, ns.requests))
            best[telemetry] = min(runs)
        on, tail, off = (best[mode] for mode in MODES)
        print(f"{kind:10} {on:13.3f} {tail:8.3f} {off:8.3f} {on / off:8.2f}x {tail / off:10.2f}x")
    return 0


def _child(mode: str, kind: str, requests: int, *extra: str) -> float:
    argv_child = ["--requests", str(requests), *extra, "--child", mode, kind]
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.inprocess_bench", *argv_child],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def _print_calls(requests: int) -> int:
    print(f"Python function calls per request ({requests} requests, cProfile)")
    print(f"{'kind':10} " + " ".join(f"{mode:>8}" for mode in MODES))
    for kind in ("single", "fallback"):
        counts = [_child(mode, kind, requests, "--calls") for mode in MODES]
        print(f"{kind:10} " + " ".join(f"{count:8.1f}" for count in counts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
