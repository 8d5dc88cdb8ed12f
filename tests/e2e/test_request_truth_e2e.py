"""Through a real `relaygate serve`, four sources tell one story about each request.

The gateway runs as a process exporting OTLP to a receiver in this test, logging JSON
lines to its output, counting on ``/metrics``, and answering with headers. For a clean
success, a stream cut after its 200, a client hanging up mid-stream and an exhausted
request, the response headers, the ``request`` log line, the exported trace and the
``/metrics`` deltas agree on the outcome, the serving target, the status, the tokens and
the durations (the histograms' sums move by exactly what the log line reports).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from relaygate.strategies.outcome import Account, account
from tests.e2e.helpers_e2e import CLIENT_TIMEOUT_S, MockUpstream, running_mocks, server_config
from tests.servers import RunningServer, relaygate_process, serve_in_thread
from tests.telemetry.test_otlp_export_e2e import otlp_env, receiver

PRIMARY, BACKUP = "config.targets[0]", "config.targets[1]"
CONFIG = "truth"
WAIT_S = 15.0
OTLP_ERROR = 2
"""The OTLP status code of an ERROR span (0 is unset)."""

Series = tuple[str, frozenset[tuple[str, str]]]


@dataclass
class Stage:
    """The running gateway, its upstreams and the spans its receiver collected."""

    gateway: RunningServer
    mocks: dict[str, MockUpstream]
    spans: list[dict[str, Any]]


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    spans: list[dict[str, Any]] = []
    with running_mocks("primary", "backup") as mocks, serve_in_thread(receiver(spans)) as otlp:
        config = server_config(
            {
                CONFIG: {
                    # A cut stream must reach the client as cut here (recovery has its own
                    # truth tests in tests/telemetry/test_recovery_telemetry.py).
                    "strategy": {"mode": "fallback", "recover_streams": False},
                    "targets": [
                        mocks["primary"].target(name="primary"),
                        mocks["backup"].target(name="backup"),
                    ],
                }
            },
            default_config=CONFIG,
            telemetry={
                "service_name": "relaygate-truth",
                "traces": {"detail": "full"},
                "logs": {"level": "info", "format": "json"},
            },
        )
        path: Path = tmp_path_factory.mktemp("truth") / "relaygate.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        with relaygate_process(path, env=otlp_env(otlp.url)) as gateway:
            yield Stage(gateway, mocks, spans)


@pytest.fixture
def fresh(stage: Stage) -> Stage:
    for mock in stage.mocks.values():
        mock.clear()
    return stage


# -- the four sources ------------------------------------------------------------------------
def scrape(gateway: RunningServer) -> dict[Series, float]:
    """Every sample on ``/metrics``, keyed by name and labels."""
    text = httpx.get(f"{gateway.url}/metrics", timeout=CLIENT_TIMEOUT_S).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def moved(
    before: dict[Series, float], after: dict[Series, float], name: str
) -> dict[Series, float]:
    """The ``name`` samples that changed, with how much."""
    changes = {}
    for key, value in after.items():
        if key[0] == name and value != before.get(key, 0.0):
            changes[key] = value - before.get(key, 0.0)
    return changes


def total(changes: dict[Series, float]) -> float:
    return sum(changes.values())


def wait_for(find: Any, what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = find()
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {WAIT_S} s")


def request_line(gateway: RunningServer, request_id: str) -> dict[str, Any]:
    """The gateway's JSON ``request`` log line for ``request_id`` (waiting for it)."""

    def find() -> dict[str, Any] | None:
        for raw in gateway.output().splitlines():
            if not raw.startswith("{"):
                continue
            line = json.loads(raw)
            if line.get("event") == "request" and line.get("request_id") == request_id:
                return dict(line)
        return None

    found: dict[str, Any] = wait_for(find, f"request log line for {request_id}")
    return found


def trace_of(spans: list[dict[str, Any]], request_id: str) -> list[dict[str, Any]]:
    """The exported spans of the request's trace, once its SERVER span has arrived (it ends
    last, so its children were exported with it or before)."""

    def find() -> list[dict[str, Any]] | None:
        for span in list(spans):
            if span["attributes"].get("relaygate.request_id") == request_id:
                return [s for s in list(spans) if s["trace_id"] == span["trace_id"]]
        return None

    found: list[dict[str, Any]] = wait_for(find, f"trace of {request_id}")
    return found


@dataclass
class Story:
    """What each source said about one request."""

    headers: httpx.Headers
    line: dict[str, Any]
    trace: list[dict[str, Any]]
    before: dict[Series, float]
    after: dict[Series, float]

    @property
    def server(self) -> dict[str, Any]:
        (server,) = [s for s in self.trace if not s["parent_span_id"]]
        return server

    def moved(self, name: str) -> dict[Series, float]:
        return moved(self.before, self.after, name)


def story(stage: Stage, headers: httpx.Headers, before: dict[Series, float]) -> Story:
    request_id = headers["x-request-id"]
    line = request_line(stage.gateway, request_id)
    trace = trace_of(stage.spans, request_id)
    return Story(headers, line, trace, before, scrape(stage.gateway))


def one_story(s: Story) -> None:
    """The checks every scenario shares: the four sources agree with each other."""
    line, server, attrs = s.line, s.server, s.server["attributes"]
    outcome = line["outcome"]
    # Ids: the header, the log line and the span name the same request and trace.
    assert attrs["relaygate.request_id"] == s.headers["x-request-id"] == line["request_id"]
    assert line["trace_id"] == server["trace_id"] and line["span_id"] == server["span_id"]
    # Outcome and status: the span and the one requests_total series that moved.
    assert attrs["relaygate.outcome"] == outcome
    assert attrs["http.response.status_code"] == line["status"]
    ((_name, labels),) = s.moved("relaygate_requests_total")
    assert dict(labels) == {
        "config": CONFIG,
        "operation": "chat",
        "status_class": f"{line['status'] // 100}xx",
        "outcome": outcome,
    }
    assert total(s.moved("relaygate_requests_total")) == 1
    # The span fails exactly when the outcome counts against availability.
    assert (server["status_code"] == OTLP_ERROR) is (account(outcome) is Account.BAD)
    assert (attrs.get("error.type") is None) is (outcome == "ok")
    # Serving target: only on success, the same in span, log and header.
    if outcome == "ok":
        assert attrs["relaygate.served_by"] == line["served_by"]
        assert s.headers["x-relaygate-served-by"] == line["served_by"]
    else:
        assert "relaygate.served_by" not in attrs and line["served_by"] is None
    # Tokens: the log line, the span and the token counters.
    assert attrs.get("gen_ai.usage.input_tokens") == line["tokens_in"]
    assert attrs.get("gen_ai.usage.output_tokens") == line["tokens_out"]
    tokens = s.moved("relaygate_upstream_tokens_total")
    by_type = {dict(labels)["type"]: value for (_, labels), value in tokens.items()}
    assert by_type.get("input") == line["tokens_in"]
    assert by_type.get("output") == line["tokens_out"]
    # Durations: the histograms moved by one observation of what the log line reports.
    duration = s.moved("relaygate_request_duration_seconds_sum")
    overhead = s.moved("relaygate_gateway_overhead_seconds_sum")
    assert total(s.moved("relaygate_request_duration_seconds_count")) == 1
    assert total(duration) == pytest.approx(line["duration_ms"] / 1000, abs=2e-6)
    assert total(overhead) == pytest.approx(line["overhead_ms"] / 1000, abs=2e-6)
    assert 0 <= line["overhead_ms"] <= line["duration_ms"]
    # The span tree: every parent ends after its children.
    by_id = {span["span_id"]: span for span in s.trace}
    for child in s.trace:
        parent = by_id.get(child["parent_span_id"])
        if parent is not None:
            assert parent["end_ns"] >= child["end_ns"], (parent["name"], child["name"])


CHAT: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
STREAM: dict[str, Any] = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}


def post(stage: Stage, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{stage.gateway.url}/v1/chat/completions",
        json=body,
        headers={"authorization": "Bearer sk-client"},
        timeout=CLIENT_TIMEOUT_S,
    )


# -- the scenarios ---------------------------------------------------------------------------
def test_a_clean_success_is_ok_served_by_its_target_everywhere(fresh: Stage) -> None:
    before = scrape(fresh.gateway)
    response = post(fresh, CHAT)
    assert response.status_code == 200
    s = story(fresh, response.headers, before)
    one_story(s)
    usage = response.json()["usage"]
    assert s.line["outcome"] == "ok" and s.line["served_by"] == PRIMARY
    assert (s.line["tokens_in"], s.line["tokens_out"]) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert s.headers["x-portkey-last-used-option-index"] == PRIMARY


def test_a_stream_cut_after_its_200_is_a_stream_error_not_a_success(fresh: Stage) -> None:
    fresh.mocks["primary"].script("200@cut_after_chunks=2")
    before = scrape(fresh.gateway)
    response = post(fresh, STREAM)
    assert response.status_code == 200
    assert "upstream_stream_interrupted" in response.text and "[DONE]" not in response.text
    s = story(fresh, response.headers, before)
    one_story(s)
    assert s.line["outcome"] == "stream_error"
    assert s.line["route"] == f"{PRIMARY}:stream_error"
    # Nothing counted it as an available success.
    assert not any(dict(k[1])["outcome"] == "ok" for k in s.moved("relaygate_requests_total"))
    # The headers left with the first chunk: they name the target that began to serve.
    assert s.headers["x-relaygate-served-by"] == PRIMARY
    # The strategy span lasted until the stream broke, and says it failed.
    (strategy,) = [span for span in s.trace if span["name"] == "relaygate.strategy"]
    assert strategy["status_code"] == OTLP_ERROR
    assert s.line["tokens_in"] is None  # the usage event never came


def test_a_client_hanging_up_mid_stream_is_client_disconnected(fresh: Stage) -> None:
    fresh.mocks["primary"].script("200@chunk_delay_ms=400")
    before = scrape(fresh.gateway)
    with (
        httpx.Client(timeout=CLIENT_TIMEOUT_S) as client,
        client.stream(
            "POST",
            f"{fresh.gateway.url}/v1/chat/completions",
            json=STREAM,
            headers={"authorization": "Bearer sk-client"},
        ) as response,
    ):
        assert response.status_code == 200
        first = next(response.iter_raw())
        assert first.startswith(b"data: ")
        headers = response.headers
    # The client is gone (its connection closed mid-stream).
    s = story(fresh, headers, before)
    one_story(s)
    assert s.line["outcome"] == "client_disconnected"
    assert s.server["attributes"]["error.type"] == "client_disconnected"
    assert s.server["status_code"] != OTLP_ERROR  # a client abort is not the gateway's failure
    assert (s.line["tokens_in"], s.line["tokens_out"]) == (None, None)
    # The request ended when the client left, long before the upstream would have finished.
    client_span = next(span for span in s.trace if span["kind"] == 3)  # SPAN_KIND_CLIENT
    assert client_span["attributes"]["relaygate.outcome"] == "client_disconnected"


def test_an_exhausted_request_names_its_last_target_but_no_serving_one(fresh: Stage) -> None:
    fresh.mocks["primary"].script("503")
    fresh.mocks["backup"].script("503")
    before = scrape(fresh.gateway)
    response = post(fresh, CHAT)
    assert response.status_code == 503
    s = story(fresh, response.headers, before)
    one_story(s)
    assert s.line["outcome"] == "status_5xx" and s.line["served_by"] is None
    assert "x-relaygate-served-by" not in s.headers
    assert s.headers["x-portkey-last-used-option-index"] == BACKUP
    assert total(s.moved("relaygate_exhausted_requests_total")) == 1
    (strategy,) = [span for span in s.trace if span["name"] == "relaygate.strategy"]
    assert strategy["status_code"] == OTLP_ERROR
    assert strategy["status_message"] == "status_5xx"
