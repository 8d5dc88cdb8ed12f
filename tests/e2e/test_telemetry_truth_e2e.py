"""Four sources, one story: spans at an OTLP receiver, `/metrics` deltas, the JSON log and the
response headers of a real `relaygate serve` agree on every attempt of a request.

For each scenario (retry then success, fallback after 503 with a named and an inline config,
fallback after a timeout, a garbage body behind a 200, a streamed fallback) the test reads
the four sources independently and checks they name the same targets in the same order with
the same outcomes, statuses as the upstream sent them (none when nothing was answered), one
``error.type``, and that every log line about the request names its request, its trace and
a span of that trace (an attempt's line: its own CLIENT span).
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.e2e.helpers_e2e import (
    CLIENT_TIMEOUT_S,
    FAST_RETRY,
    MESSAGES,
    MockUpstream,
    running_mocks,
)
from tests.servers import RunningServer, relaygate_process, serve_in_thread

SERVER, CLIENT = 2, 3
"""OTLP span kinds."""

WAIT_S = 30.0
"""Longest wait for a request's spans and log lines to arrive (a loaded machine)."""


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in value.array_value.values)
    return getattr(value, kind) if kind else None


@dataclass
class Spans:
    """Spans received by the OTLP receiver, decoded to plain dicts."""

    items: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> Starlette:
        """An OTLP/HTTP (protobuf) trace receiver appending to :attr:`items`."""

        async def traces(request: Request) -> Response:
            payload = ExportTraceServiceRequest()
            payload.ParseFromString(await request.body())
            for resource_spans in payload.resource_spans:
                for scope in resource_spans.scope_spans:
                    for span in scope.spans:
                        self.items.append(
                            {
                                "name": span.name,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent": span.parent_span_id.hex(),
                                "kind": span.kind,
                                "start": span.start_time_unix_nano,
                                "status": span.status.code,
                                "attributes": {a.key: _value(a.value) for a in span.attributes},
                                "events": [
                                    (e.name, {a.key: _value(a.value) for a in e.attributes})
                                    for e in span.events
                                ],
                            }
                        )
            return Response(b"", media_type="application/x-protobuf")

        return Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])

    def trace_of(self, request_id: str, attempts: int) -> list[dict[str, Any]]:
        """The spans of the request ``request_id`` once its SERVER span and ``attempts``
        CLIENT spans arrived."""
        deadline = time.monotonic() + WAIT_S
        while True:
            servers = [
                s
                for s in list(self.items)
                if s["kind"] == SERVER and s["attributes"].get("relaygate.request_id") == request_id
            ]
            if servers:
                trace = [s for s in list(self.items) if s["trace_id"] == servers[0]["trace_id"]]
                if sum(s["kind"] == CLIENT for s in trace) >= attempts:
                    return trace
            assert time.monotonic() < deadline, f"spans of {request_id} did not arrive"
            time.sleep(0.05)


def log_lines(gateway: RunningServer, request_id: str) -> list[dict[str, Any]]:
    """The gateway's JSON log lines about ``request_id``, once its ``request`` line is out."""
    deadline = time.monotonic() + WAIT_S
    while True:
        lines = []
        for text in gateway.output().splitlines():
            if text.startswith("{"):
                line = json.loads(text)
                if line.get("request_id") == request_id:
                    lines.append(line)
        if any(line["event"] == "request" for line in lines):
            return lines
        assert time.monotonic() < deadline, f"no request line for {request_id}"
        time.sleep(0.05)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(gateway: RunningServer) -> Samples:
    """Every sample of ``/metrics``, keyed by name and sorted labels."""
    text = httpx.get(f"{gateway.url}/metrics", timeout=CLIENT_TIMEOUT_S).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def delta(before: Samples, after: Samples, name: str, *keys: str) -> dict[tuple[str, ...], float]:
    """How much each series of ``name`` grew, keyed by the values of ``keys`` (summed)."""
    grown: dict[tuple[str, ...], float] = collections.defaultdict(float)
    for (sample, labels), value in after.items():
        if sample != name:
            continue
        change = value - before.get((sample, labels), 0.0)
        if change:
            named = dict(labels)
            grown[tuple(named.get(k, "") for k in keys)] += change
    return dict(grown)


@dataclass
class Gateway:
    """The running gateway, its upstreams and its span receiver."""

    server: RunningServer
    spans: Spans
    primary: MockUpstream
    backup: MockUpstream


def _targets(primary: MockUpstream, backup: MockUpstream, **first: Any) -> list[dict[str, Any]]:
    return [
        primary.target(name="primary", **first),
        backup.target(name="backup", provider="together-ai"),
    ]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    spans = Spans()
    with (
        running_mocks("primary", "backup") as mocks,
        serve_in_thread(spans.app()) as receiver,
    ):
        primary, backup = mocks["primary"], mocks["backup"]
        config = {
            "configs": {
                "fallback": {
                    "strategy": {"mode": "fallback"},
                    "targets": _targets(primary, backup),
                },
                "retry": primary.target(name="primary", retry={"attempts": 2}),
                "timeout": {
                    "strategy": {"mode": "fallback"},
                    "targets": _targets(primary, backup, request_timeout=300),
                },
            },
            "retry": dict(FAST_RETRY),
            "security": {"egress": {"allow_private": True}},
            "telemetry": {
                "service_name": "relaygate-truth",
                "traces": {"exporter": "otlp", "endpoint": receiver.url, "detail": "full"},
                "logs": {"level": "debug", "format": "json"},
            },
        }
        path = tmp_path_factory.mktemp("truth") / "relaygate.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        with relaygate_process(path, env={"OTEL_BSP_SCHEDULE_DELAY": "50"}) as server:
            yield Gateway(server, spans, primary, backup)


Attempt = tuple[str, int | None, str]
"""(target name, status as the upstream sent it, reason)."""


def _route(header: str) -> list[tuple[str, str]]:
    """``x-relaygate-route`` as (target path, token) per attempt, in order."""
    out = []
    for group in header.split(">"):
        path, tokens = group.rsplit(":", 1)
        out += [(path, token) for token in tokens.split(",")]
    return out


def check_one_story(
    gw: Gateway,
    request_id: str,
    headers: httpx.Headers,
    before: Samples,
    config: str,
    expected: list[Attempt],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Check the four sources against ``expected`` and each other; the CLIENT spans and the
    log lines are returned for scenario-specific checks."""
    trace = gw.spans.trace_of(request_id, len(expected))
    lines = log_lines(gw.server, request_id)
    after = scrape(gw.server)
    clients = sorted((s for s in trace if s["kind"] == CLIENT), key=lambda s: s["start"])
    paths = {
        s["attributes"]["relaygate.target.name"]: s["attributes"]["relaygate.target.path"]
        for s in clients
    }

    # Spans: targets, order, statuses as sent (absent when nothing answered), outcomes.
    assert [
        (
            s["attributes"]["relaygate.target.name"],
            s["attributes"].get("http.response.status_code"),
            s["attributes"]["relaygate.outcome"],
        )
        for s in clients
    ] == expected
    error_types = [s["attributes"].get("error.type") for s in clients]
    for span, (_, _, reason) in zip(clients, expected, strict=True):
        assert (span["status"] == 2) == (reason != "ok")  # STATUS_CODE_ERROR

    # Headers: the route story and the serving target.
    tokens = [
        str(status) if reason in ("ok", "status_5xx", "status_4xx", "status_429") else reason
        for _, status, reason in expected
    ]
    assert _route(headers["x-relaygate-route"]) == [
        (paths[name], token) for (name, _, _), token in zip(expected, tokens, strict=True)
    ]
    assert headers["x-portkey-last-used-option-index"] == paths[expected[-1][0]]

    # Logs: the request line's attempts and the upstream_attempt lines, joined to the spans.
    trace_id = clients[0]["trace_id"]
    span_ids = {s["span_id"] for s in trace}
    (request_line,) = [line for line in lines if line["event"] == "request"]
    attempt_lines = [line for line in lines if line["event"] == "upstream_attempt"]
    for entries in (request_line["attempts"], attempt_lines):
        assert [(a["target"], a["status"], a["reason"]) for a in entries] == expected
        assert [a["target_path"] for a in entries] == [paths[n] for n, _, _ in expected]
        assert [a["error_type"] for a in entries] == error_types
        assert [a["span_id"] for a in entries] == [s["span_id"] for s in clients]
    for line in lines:
        assert line["trace_id"] == trace_id, line
        assert line["span_id"] in span_ids, line
        assert line["config"] == config, line
    assert request_line["span_id"] == next(s["span_id"] for s in trace if s["kind"] == SERVER)

    # Metrics: the attempts counter and the GenAI duration moved by exactly these attempts.
    status_classes = [f"{status // 100}xx" if status else "none" for _, status, _ in expected]
    assert delta(
        before,
        after,
        "relaygate_upstream_attempts_total",
        "config",
        "target",
        "status_class",
        "reason",
    ) == dict(
        collections.Counter(
            (config, name, cls, reason)
            for (name, _, reason), cls in zip(expected, status_classes, strict=True)
        )
    )
    assert delta(
        before, after, "gen_ai_client_operation_duration_seconds_count", "error_type"
    ) == dict(collections.Counter((e or "",) for e in error_types))
    return clients, lines


def _send(
    gw: Gateway, config: str | dict[str, Any], **extra: Any
) -> tuple[str, httpx.Headers, Any]:
    client = openai.OpenAI(
        base_url=f"{gw.server.url}/v1", api_key="sk-client", max_retries=0, timeout=CLIENT_TIMEOUT_S
    )
    value = config if isinstance(config, str) else json.dumps(config)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        extra_headers={"x-portkey-config": value},
        **extra,
    )
    return raw.headers["x-request-id"], raw.headers, raw.parse()


def _prepare(gw: Gateway, primary: str, backup: str = "") -> Samples:
    gw.primary.clear()
    gw.backup.clear()
    gw.primary.script(primary)
    gw.backup.script(backup)
    return scrape(gw.server)


def test_retry_then_success_tells_one_story(gateway: Gateway) -> None:
    before = _prepare(gateway, "503,200")
    request_id, headers, _ = _send(gateway, "retry")
    clients, lines = check_one_story(
        gateway,
        request_id,
        headers,
        before,
        "retry",
        [("primary", 503, "status_5xx"), ("primary", 200, "ok")],
    )
    assert headers["x-portkey-retry-attempt-count"] == "1"
    (retry_line,) = [line for line in lines if line["event"] == "retry"]
    events = [
        attrs
        for s in gateway.spans.trace_of(request_id, 2)
        for name, attrs in s["events"]
        if name == "relaygate.retry"
    ]
    assert [(e["relaygate.target.name"], e["relaygate.retry.reason"]) for e in events] == [
        ("primary", "status_5xx")
    ]
    assert (retry_line["target"], retry_line["reason"]) == ("primary", "status_5xx")
    assert retry_line["wait_ms"] == pytest.approx(
        events[0]["relaygate.retry.wait_s"] * 1000, abs=1e-3
    )
    assert clients[1]["attributes"]["relaygate.backoff_s"] == events[0]["relaygate.retry.wait_s"]


@pytest.mark.parametrize("inline", [False, True], ids=["named", "inline"])
def test_fallback_after_503_tells_one_story(gateway: Gateway, inline: bool) -> None:
    before = _prepare(gateway, "503")
    config: str | dict[str, Any] = "fallback"
    if inline:
        config = {
            "strategy": {"mode": "fallback"},
            "targets": _targets(gateway.primary, gateway.backup),
        }
    request_id, headers, _ = _send(gateway, config)
    config_id = "inline" if inline else "fallback"
    expected = [("primary", 503, "status_5xx"), ("backup", 200, "ok")]
    clients, lines = check_one_story(gateway, request_id, headers, before, config_id, expected)
    assert clients[0]["attributes"]["error.type"] == "503"
    (fallback_line,) = [line for line in lines if line["event"] == "fallback"]
    (event,) = [
        attrs
        for s in gateway.spans.trace_of(request_id, 2)
        for name, attrs in s["events"]
        if name == "relaygate.fallback"
    ]
    assert (
        (event["relaygate.fallback.from.name"], event["relaygate.fallback.to.name"])
        == (
            fallback_line["from_target"],
            fallback_line["to_target"],
        )
        == ("primary", "backup")
    )
    assert (event["relaygate.fallback.from.path"], event["relaygate.fallback.to.path"]) == (
        fallback_line["from_target_path"],
        fallback_line["to_target_path"],
    )
    assert event["relaygate.fallback.reason"] == fallback_line["reason"] == "status_5xx"
    after = scrape(gateway.server)
    assert delta(
        before, after, "relaygate_fallbacks_total", "config", "from_target", "to_target", "reason"
    ) == {(config_id, "primary", "backup", "status_5xx"): 1.0}


def test_fallback_after_timeout_records_no_status_for_the_attempt_nothing_answered(
    gateway: Gateway,
) -> None:
    before = _prepare(gateway, "hang")
    request_id, headers, _ = _send(gateway, "timeout")
    clients, _ = check_one_story(
        gateway,
        request_id,
        headers,
        before,
        "timeout",
        [("primary", None, "timeout"), ("backup", 200, "ok")],
    )
    assert clients[0]["attributes"]["error.type"] == "timeout"


def test_a_garbage_body_is_recorded_as_the_200_the_upstream_sent(gateway: Gateway) -> None:
    before = _prepare(gateway, "garbage")
    request_id, headers, _ = _send(gateway, "fallback")
    clients, _ = check_one_story(
        gateway,
        request_id,
        headers,
        before,
        "fallback",
        [("primary", 200, "invalid_response"), ("backup", 200, "ok")],
    )
    assert clients[0]["attributes"]["error.type"] == "invalid_response"


def test_a_streamed_fallback_keeps_finish_reasons_and_id_and_lasts_the_whole_stream(
    gateway: Gateway,
) -> None:
    before = _prepare(gateway, "503", "200@chunk_delay_ms=20")
    request_id, headers, stream = _send(
        gateway, "fallback", stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    ids = {c.id for c in chunks}
    clients, lines = check_one_story(
        gateway,
        request_id,
        headers,
        before,
        "fallback",
        [("primary", 503, "status_5xx"), ("backup", 200, "ok")],
    )
    served = clients[1]["attributes"]
    (line,) = [a for a in lines if a["event"] == "upstream_attempt" and a["reason"] == "ok"]
    assert served["gen_ai.response.finish_reasons"] == ("stop",)
    assert ids == {served["gen_ai.response.id"]} == {line["response_id"]}
    assert line["finish_reasons"] == ["stop"]
    usage = chunks[-1].usage
    assert usage is not None
    assert (served["gen_ai.usage.output_tokens"], line["tokens_out"]) == (
        usage.completion_tokens,
        usage.completion_tokens,
    )
    # The streamed attempt lasts until its stream ended: more than its first chunk, by at
    # least the scripted gaps between the chunks that followed.
    (first,) = [attrs for name, attrs in clients[1]["events"] if name == "relaygate.first_chunk"]
    assert line["ttfc_ms"] == pytest.approx(
        first["relaygate.first_chunk.elapsed_s"] * 1000, abs=1e-3
    )
    assert line["ms"] > line["ttfc_ms"]
    after = scrape(gateway.server)
    duration = delta(before, after, "relaygate_upstream_duration_seconds_sum", "target")[
        ("backup",)
    ]
    assert duration == pytest.approx(line["ms"] / 1000, abs=1e-3)
