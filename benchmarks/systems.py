"""The systems under test and how each is asked for the four kinds of request.

A :class:`System` knows, for each request kind, the path, headers and body that make it do
that job against the benchmark upstreams:

* ``single``: one target, the fast upstream (nginx, immediate 200);
* ``slow``: one target, the 50 ms upstream;
* ``fallback``: a 503 target first, then the fast upstream;
* ``stream``: one target answering a 7-event SSE stream.

relaygate is configured with named configs chosen per request by ``x-portkey-config: <id>``;
Portkey takes the same config inline as JSON in that header; LiteLLM gets one model name per
kind. ``direct`` sends the same bodies straight to the upstreams.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from benchmarks.loadgen import Request

Kind = Literal["single", "slow", "fallback", "stream"]
"""The request kinds every system is measured on."""

KINDS: tuple[Kind, ...] = ("single", "slow", "fallback", "stream")

API_KEY = "bench-key"
"""The (fake) provider key every target carries; the upstreams do not check it."""

CHAT_PATH = "/v1/chat/completions"


def chat_body(model: str = "gpt-4o-mini", stream: bool = False) -> bytes:
    """A typical small chat-completion request body."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Say hello to the benchmark."},
        ],
        "max_tokens": 16,
        "temperature": 0,
    }
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Upstreams:
    """Where the benchmark upstreams listen."""

    nginx_port: int
    slow_port: int

    def base(self, kind: Literal["fast", "fail", "sse", "slow"]) -> str:
        """OpenAI-style base URL (``.../v1``) of one upstream behaviour."""
        if kind == "slow":
            return f"http://127.0.0.1:{self.slow_port}/v1"
        return f"http://127.0.0.1:{self.nginx_port}/{kind}/v1"


def portkey_configs(up: Upstreams) -> dict[Kind, dict[str, Any]]:
    """The Portkey-format config of each request kind (relaygate's named configs too)."""

    def target(base: str) -> dict[str, Any]:
        return {"provider": "openai", "api_key": API_KEY, "custom_host": base}

    return {
        "single": target(up.base("fast")),
        "slow": target(up.base("slow")),
        "fallback": {
            "strategy": {"mode": "fallback"},
            "targets": [target(up.base("fail")), target(up.base("fast"))],
        },
        "stream": target(up.base("sse")),
    }


TAIL_SAMPLING: dict[str, Any] = {"keep_ok_ratio": 0.1, "latency_threshold_ms": 2000}
"""The README's production tail-sampling policy."""

PRODUCTION_TRACES: dict[str, Any] = {"detail": "attempts", "tail_sampling": TAIL_SAMPLING}
"""The README's production tracing setting (the ``relaygate-tail`` system's): tail
sampling by :data:`TAIL_SAMPLING`, the request span and one span per upstream attempt."""


def relaygate_server_config(
    up: Upstreams | None,
    port: int,
    telemetry: bool,
    sink_port: int | None,
    traces: dict[str, Any] | None = None,
    configs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``relaygate serve`` config: the four named configs (or ``configs``, the first being
    the default), telemetry fully on or off.

    On: every span exported over OTLP/HTTP to the sink at ``sink_port`` (detail ``full``,
    every request sampled), Prometheus metrics recorded, one JSON log line per request;
    ``traces`` overrides tracing settings (:data:`PRODUCTION_TRACES`: tail-sampled at the
    production setting instead of all exported).
    Off: no exporter (spans off), metrics disabled, logs at ``warning``.
    """
    if telemetry:
        assert sink_port is not None
        tel: dict[str, Any] = {
            "service_name": "relaygate-bench",
            "traces": {
                "exporter": "otlp",
                "endpoint": f"http://127.0.0.1:{sink_port}",
                "sample_ratio": 1.0,
                "detail": "full",
            },
            "metrics": {"enabled": True},
            "logs": {"level": "info", "format": "json"},
        }
        if traces is not None:
            tel["traces"].update(traces)
    else:
        tel = {
            "service_name": "relaygate-bench",
            "traces": {"exporter": "none", "detail": "off"},
            "metrics": {"enabled": False},
            "logs": {"level": "warning", "format": "json"},
        }
    if configs is None:
        assert up is not None
        configs = {str(kind): config for kind, config in portkey_configs(up).items()}
    return {
        "listen": {"host": "127.0.0.1", "port": port},
        "default_config": next(iter(configs)),
        "configs": configs,
        "telemetry": tel,
        # The fallback rows measure a real fallback (a failed attempt, then the next target),
        # like the peers' configs: the default circuit breaker would skip the always-failing
        # primary after five requests (python -m benchmarks.breaker_outage measures that).
        "breaker": {"enabled": False},
    }


@dataclass
class System:
    """How to address one system under test for each request kind."""

    name: str
    port: int
    requests: dict[Kind, Request] = field(default_factory=dict)
    replicas: tuple[int, ...] = ()
    """Ports of further replicas serving the same requests (load is spread over all)."""

    def request(self, kind: Kind) -> Request:
        """The request of ``kind``; ``KeyError`` if this system does not serve it."""
        return self.requests[kind]

    def spread(self, kind: Kind) -> list[Request]:
        """The request of ``kind`` to each replica, this system's own port first."""
        first = self.requests[kind]
        return [first, *(replace(first, port=port) for port in self.replicas)]


def direct_system(up: Upstreams) -> System:
    """The upstreams called without any gateway (the baseline of every ratio)."""
    plain = chat_body()
    streamed = chat_body(stream=True)
    return System(
        "direct",
        up.nginx_port,
        {
            "single": Request(up.nginx_port, "/fast" + CHAT_PATH, (), plain),
            "slow": Request(up.slow_port, CHAT_PATH, (), plain),
            "stream": Request(up.nginx_port, "/sse" + CHAT_PATH, (), streamed),
        },
    )


def relaygate_system(name: str, port: int) -> System:
    """relaygate on ``port``, its named configs chosen by header."""
    return System(
        name,
        port,
        {
            kind: Request(
                port,
                CHAT_PATH,
                (("x-portkey-config", kind),),
                chat_body(stream=kind == "stream"),
            )
            for kind in KINDS
        },
    )


def floor_system(port: int, name: str = "floor") -> System:
    """The bare pass-through proxy: the fast, 50 ms and streaming upstreams by path (the
    floors of :mod:`benchmarks.stack_floors` answer the first two only)."""
    requests: dict[Kind, Request] = {
        "single": Request(port, "/", (), chat_body()),
        "slow": Request(port, "/slow", (), chat_body()),
    }
    if name == "floor":
        requests["stream"] = Request(port, "/stream", (), chat_body(stream=True))
    return System(name, port, requests)


def portkey_system(port: int, up: Upstreams) -> System:
    """Portkey's gateway on ``port``: the same configs, sent inline as header JSON."""
    configs = portkey_configs(up)
    return System(
        "portkey",
        port,
        {
            kind: Request(
                port,
                CHAT_PATH,
                (("x-portkey-config", json.dumps(configs[kind], separators=(",", ":"))),),
                chat_body(stream=kind == "stream"),
            )
            for kind in KINDS
        },
    )


LITELLM_KEY = "sk-relaygate-bench"
"""The LiteLLM proxy's master key in the benchmark (loopback only)."""


def litellm_config(up: Upstreams) -> str:
    """A LiteLLM proxy config: one model per kind, the 503 model falling back to the fast one."""
    bases: dict[str, Literal["fast", "fail", "sse", "slow"]] = {
        "single": "fast",
        "slow": "slow",
        "fail": "fail",
        "stream": "sse",
    }
    lines = ["model_list:"]
    for model, base in bases.items():
        lines += [
            f"  - model_name: bench-{model}",
            "    litellm_params:",
            "      model: openai/gpt-4o-mini",
            f"      api_base: {up.base(base)}",
            f"      api_key: {API_KEY}",
            "      max_retries: 0",
        ]
    lines += [
        "litellm_settings:",
        "  num_retries: 0",
        "  request_timeout: 30",
        "router_settings:",
        "  num_retries: 0",
        '  fallbacks: [{"bench-fail": ["bench-single"]}]',
        "general_settings:",
        f"  master_key: {LITELLM_KEY}",
    ]
    return "\n".join(lines) + "\n"


def litellm_system(port: int) -> System:
    """LiteLLM's proxy on ``port``: the kind is chosen by model name."""
    models: dict[Kind, str] = {
        "single": "bench-single",
        "slow": "bench-slow",
        "fallback": "bench-fail",
        "stream": "bench-stream",
    }
    auth = (("authorization", f"Bearer {LITELLM_KEY}"),)
    return System(
        "litellm",
        port,
        {
            kind: Request(port, CHAT_PATH, auth, chat_body(model, stream=kind == "stream"))
            for kind, model in models.items()
        },
    )


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON and return ``path``."""
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
