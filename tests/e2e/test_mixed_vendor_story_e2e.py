"""Issue #13's "done when", end to end through ``relaygate serve``: one mixed-vendor fallback
config, every vendor's own wire format, driven by the ``openai``, ``anthropic`` and
``portkey-ai`` SDKs, streamed and not, with a tool call.

Five fault simulators each speak one vendor's API: Anthropic's Messages API (answering
``529 overloaded_error``), Gemini (429 ``RESOURCE_EXHAUSTED``), Bedrock Converse
(``ThrottlingException``), Cohere v2 (503) and an OpenAI-compatible host (the tool call).
Each SDK gets the OpenAI-compatible target's tool call back in its own shape, and the three
signals name every vendor tried and why it failed: the CLIENT spans at an OTLP receiver
(``gen_ai.provider.name``, the status as sent, ``error.type``), the per-target series of
``/metrics`` and the JSON log's request line (its route and attempts). A second table of
cases has the OpenAI-compatible target fail and each other vendor answer the tool call: the
vendor's own usage fields, its finish reason and (streamed) the time to its first chunk
reach the span and the per-target series.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml
from portkey_ai import Portkey

from tests.e2e.helpers_e2e import (
    CLIENT_TIMEOUT_S,
    FAST_RETRY,
    STREAMING,
    Mocks,
    answer_of,
    running_mocks,
)
from tests.e2e.test_bedrock_responses_e2e import MODEL_ID, bedrock_target
from tests.e2e.test_cross_vendor_e2e import cohere, gemini
from tests.e2e.test_telemetry_truth_e2e import CLIENT, Samples, Spans, delta, log_lines, scrape
from tests.servers import RunningServer, relaygate_process, serve_in_thread

pytestmark = pytest.mark.gateway_process

SCHEMA: dict[str, Any] = {"type": "object", "properties": {"text": {"type": "string"}}}
TOOL_OPENAI: dict[str, Any] = {
    "type": "function",
    "function": {"name": "lookup", "description": "Look a text up.", "parameters": SCHEMA},
}
TOOL_ANTHROPIC: dict[str, Any] = {
    "name": "lookup",
    "description": "Look a text up.",
    "input_schema": SCHEMA,
}
QUESTION = "Look something up."

VENDORS: dict[str, tuple[str, str]] = {
    "claude": ("anthropic", "anthropic"),
    "gemini": ("google", "gcp.gemini"),
    "bedrock": ("bedrock", "aws.bedrock"),
    "cohere": ("cohere", "cohere"),
    "gpt": ("openai", "openai"),
}
"""Target name → (the config's provider, ``gen_ai.provider.name``)."""

FAILURES: list[tuple[str, str, int, str]] = [
    ("claude", "529", 529, "status_5xx"),
    ("gemini", "429", 429, "status_429"),
    ("bedrock", "429", 429, "status_429"),
    ("cohere", "503", 503, "status_5xx"),
]
"""The chain's failing targets in order: name, fault script, the status the vendor sends and
the attempt's reason."""

WIRES: dict[str, tuple[str, str]] = {
    "claude": ("/v1/messages", "tools"),
    "gemini": ("/v1beta/models/gemini-2.0-flash:", "tools"),
    "bedrock": (f"/model/{MODEL_ID}/converse", "toolConfig"),
    "cohere": ("/v2/chat", "tools"),
    "gpt": ("/v1/chat/completions", "tools"),
}
"""Target name → (the start of the path its vendor's API is called at, the body field that
carries the tools in that API)."""


@dataclass
class Gateway:
    server: RunningServer
    spans: Spans
    mocks: Mocks


def _targets(mocks: Mocks) -> dict[str, dict[str, Any]]:
    """Each vendor's target, named as in :data:`VENDORS`."""
    return {
        "claude": mocks["claude"].target(
            name="claude", provider="anthropic", override_params={"model": "claude-x"}
        ),
        "gemini": gemini(mocks["gemini"]),
        "bedrock": bedrock_target(mocks["bedrock"], name="bedrock"),
        "cohere": cohere(mocks["cohere"]),
        "gpt": mocks["gpt"].target(name="gpt", override_params={"model": "gpt-x"}),
    }


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    spans = Spans()
    with running_mocks(*VENDORS) as mocks, serve_in_thread(spans.app()) as receiver:
        targets = _targets(mocks)
        configs: dict[str, Any] = {
            "every-vendor": {
                "strategy": {"mode": "fallback"},
                "targets": [targets[name] for name in VENDORS],
            },
        }
        for name in VENDORS:
            if name != "gpt":
                configs[f"gpt-then-{name}"] = {
                    "strategy": {"mode": "fallback"},
                    "targets": [targets["gpt"], targets[name]],
                }
        config = {
            "configs": configs,
            "retry": dict(FAST_RETRY),
            "breaker": {"enabled": False},
            "security": {"egress": {"allow_private": True}},
            "telemetry": {
                "service_name": "relaygate-mixed-vendors",
                "traces": {"exporter": "otlp", "endpoint": receiver.url, "detail": "full"},
                "logs": {"level": "info", "format": "json"},
            },
        }
        path = tmp_path_factory.mktemp("mixed") / "relaygate.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        with relaygate_process(path, env={"OTEL_BSP_SCHEDULE_DELAY": "50"}) as server:
            yield Gateway(server, spans, mocks)


@pytest.fixture(autouse=True)
def _clean(gateway: Gateway) -> None:
    for mock in gateway.mocks.values():
        mock.clear()


@dataclass
class Answer:
    """What an SDK read, in OpenAI's terms: the request id, the tool calls (name, parsed
    arguments) and the finish reason (Anthropic's ``tool_use`` read as ``tool_calls``)."""

    request_id: str
    calls: list[tuple[str, Any]]
    finish: str | None


def _openai_calls(choices: list[Any], *, stream: bool) -> tuple[list[tuple[str, Any]], Any]:
    """The tool calls and last finish reason of chat choices (chunks' when ``stream``)."""
    if not stream:
        (choice,) = choices
        calls = choice.message.tool_calls or []
        return (
            [(c.function.name, json.loads(c.function.arguments)) for c in calls],
            choice.finish_reason,
        )
    pieces: dict[int, tuple[str, str]] = {}
    finish = None
    for choice in choices:
        finish = choice.finish_reason or finish
        for call in choice.delta.tool_calls or ():
            name, arguments = pieces.get(call.index, ("", ""))
            function = call.function
            pieces[call.index] = (
                name + ((function.name or "") if function else ""),
                arguments + ((function.arguments or "") if function else ""),
            )
    return [(name, json.loads(args)) for name, args in pieces.values()], finish


def _ask_openai(gw: Gateway, config: str, *, stream: bool) -> Answer:
    client = openai.OpenAI(
        base_url=f"{gw.server.url}/v1", api_key="sk-client", max_retries=0, timeout=CLIENT_TIMEOUT_S
    )
    raw = client.chat.completions.with_raw_response.create(
        model="any",
        messages=[{"role": "user", "content": QUESTION}],
        tools=[TOOL_OPENAI],  # type: ignore[list-item]
        stream=stream,
        extra_headers={"x-portkey-config": config},
    )
    parsed: Any = raw.parse()
    choices = [c for chunk in parsed for c in chunk.choices] if stream else parsed.choices
    calls, finish = _openai_calls(choices, stream=stream)
    return Answer(raw.headers["x-request-id"], calls, finish)


def _ask_anthropic(gw: Gateway, config: str, *, stream: bool) -> Answer:
    client = anthropic.Anthropic(
        base_url=gw.server.url, api_key="sk-client", max_retries=0, timeout=CLIENT_TIMEOUT_S
    )
    ask: dict[str, Any] = {
        "model": "any",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": QUESTION}],
        "tools": [TOOL_ANTHROPIC],
        "extra_headers": {"x-portkey-config": config},
    }
    if stream:
        with client.messages.stream(**ask) as events:
            kinds = [event.type for event in events]
            message = events.get_final_message()
            request_id = events.response.headers["request-id"]
        assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    else:
        raw = client.messages.with_raw_response.create(**ask)
        message, request_id = raw.parse(), raw.headers["request-id"]
    finish = {"tool_use": "tool_calls", "end_turn": "stop"}.get(str(message.stop_reason))
    calls = [(b.name, b.input) for b in message.content if b.type == "tool_use"]
    return Answer(request_id, calls, finish)


def _ask_portkey(gw: Gateway, config: str, *, stream: bool) -> Answer:
    client = Portkey(base_url=f"{gw.server.url}/v1", api_key="pk-client", config=config)
    answer: Any = client.chat.completions.create(
        model="any",
        messages=[{"role": "user", "content": QUESTION}],
        tools=[TOOL_OPENAI],
        stream=stream,
    )
    if stream:
        request_id = answer.response.headers["x-request-id"]
        calls, finish = _openai_calls([c for chunk in answer for c in chunk.choices], stream=True)
    else:
        # With no trace id from the client, the trace id the SDK reports is the request id.
        request_id = answer.get_headers()["trace-id"]
        calls, finish = _openai_calls(answer.choices, stream=False)
    return Answer(request_id, calls, finish)


SDKS = {"openai": _ask_openai, "anthropic": _ask_anthropic, "portkey": _ask_portkey}
BY_SDK = pytest.mark.parametrize("sdk", list(SDKS))


def _signals(gw: Gateway, request_id: str, before: Samples, tried: int) -> dict[str, Any]:
    """The three signals of one request: its CLIENT spans (oldest first), its JSON log
    request line, and how ``/metrics`` moved."""
    trace = gw.spans.trace_of(request_id, tried)
    clients = sorted((s for s in trace if s["kind"] == CLIENT), key=lambda s: s["start"])
    (line,) = [x for x in log_lines(gw.server, request_id) if x["event"] == "request"]
    return {"spans": clients, "line": line, "after": scrape(gw.server), "before": before}


def _check_asked_in_its_wire_format(gw: Gateway, name: str) -> None:
    """Target ``name``'s vendor was asked once, at its API's path, offered the tool."""
    (asked,) = gw.mocks[name].requests()
    path, tools = WIRES[name]
    assert asked["path"].startswith(path), asked["path"]
    assert "lookup" in json.dumps(asked["body"][tools])


@BY_SDK
@STREAMING
def test_every_vendor_fails_in_turn_and_all_three_signals_say_which_and_why(
    gateway: Gateway, sdk: str, stream: bool
) -> None:
    for name, script, _, _ in FAILURES:
        gateway.mocks[name].script(script)
    before = scrape(gateway.server)
    answer = SDKS[sdk](gateway, "every-vendor", stream=stream)

    # The client: the OpenAI-compatible target's tool call, in the SDK's own shape.
    assert answer.calls == [("lookup", {"text": answer_of("gpt")})]
    assert answer.finish == "tool_calls"
    for name in VENDORS:
        _check_asked_in_its_wire_format(gateway, name)

    expected: list[tuple[str, int, str | None, str]] = [
        (name, status, str(status), reason) for name, _, status, reason in FAILURES
    ]
    expected.append(("gpt", 200, None, "ok"))
    seen = _signals(gateway, answer.request_id, before, len(expected))

    # Trace: one CLIENT span per attempt naming the vendor, its status as sent, and why.
    assert [
        (
            s["attributes"]["relaygate.target.name"],
            s["attributes"]["gen_ai.provider.name"],
            s["attributes"].get("http.response.status_code"),
            s["attributes"].get("error.type"),
        )
        for s in seen["spans"]
    ] == [(name, VENDORS[name][1], status, why) for name, status, why, _ in expected]
    assert [s["status"] == 2 for s in seen["spans"]] == [why is not None for *_, why, _ in expected]

    # Log: the request line's route and attempts.
    line = seen["line"]
    assert line["outcome"] == "ok"
    assert line["route"] == (
        "config.targets[0]:529>config.targets[1]:429>config.targets[2]:429"
        ">config.targets[3]:503>config.targets[4]:200"
    )
    assert [
        (a["target"], a["provider"], a["status"], a["reason"], a["error_type"])
        for a in line["attempts"]
    ] == [(name, VENDORS[name][0], status, reason, why) for name, status, why, reason in expected]

    # Metrics: per-target attempt series, and the GenAI duration by vendor and error type.
    assert delta(
        seen["before"],
        seen["after"],
        "relaygate_upstream_attempts_total",
        "target",
        "provider",
        "status_class",
    ) == {(name, VENDORS[name][0], f"{status // 100}xx"): 1.0 for name, status, *_ in expected}
    assert delta(
        seen["before"],
        seen["after"],
        "gen_ai_client_operation_duration_seconds_count",
        "gen_ai_provider_name",
        "error_type",
    ) == dict(collections.Counter((VENDORS[name][1], why or "") for name, _, why, _ in expected))


@BY_SDK
@STREAMING
@pytest.mark.parametrize("vendor", ["claude", "gemini", "bedrock", "cohere"])
def test_each_vendor_answers_the_tool_call_when_the_openai_target_fails(
    gateway: Gateway, sdk: str, stream: bool, vendor: str
) -> None:
    gateway.mocks["gpt"].script("503")
    before = scrape(gateway.server)
    answer = SDKS[sdk](gateway, f"gpt-then-{vendor}", stream=stream)
    assert answer.finish == "tool_calls"
    ((name, arguments),) = answer.calls
    assert name == "lookup" and isinstance(arguments, dict) and arguments
    _check_asked_in_its_wire_format(gateway, vendor)
    seen = _signals(gateway, answer.request_id, before, 2)
    assert seen["line"]["route"] == "config.targets[0]:503>config.targets[1]:200"
    assert [
        (s["attributes"]["gen_ai.provider.name"], s["attributes"].get("error.type"))
        for s in seen["spans"]
    ] == [("openai", "503"), (VENDORS[vendor][1], None)]
    # The answering vendor's own usage fields and finish reason, read for telemetry.
    answered = seen["spans"][1]["attributes"]
    assert answered["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert answered["gen_ai.usage.input_tokens"] > 0 and answered["gen_ai.usage.output_tokens"] > 0
    provider = VENDORS[vendor][0]
    tokens = delta(
        before, seen["after"], "relaygate_upstream_tokens_total", "target", "provider", "type"
    )
    assert tokens == {
        (vendor, provider, "input"): answered["gen_ai.usage.input_tokens"],
        (vendor, provider, "output"): answered["gen_ai.usage.output_tokens"],
    }
    first_chunks = delta(
        before,
        seen["after"],
        "relaygate_upstream_time_to_first_chunk_seconds_count",
        "target",
        "provider",
    )
    assert first_chunks == ({(vendor, provider): 1.0} if stream else {})


@pytest.mark.parametrize("auth", ["x-api-key", "authorization"])
def test_the_messages_stream_on_the_wire_has_event_lines_and_usage_in_message_delta(
    gateway: Gateway, auth: str
) -> None:
    for name, script, _, _ in FAILURES:
        gateway.mocks[name].script(script)
    key = "sk-client" if auth == "x-api-key" else "Bearer sk-client"
    ask = {
        "model": "any",
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": QUESTION}],
        "tools": [TOOL_ANTHROPIC],
    }
    headers = {auth: key, "anthropic-version": "2023-06-01", "x-portkey-config": "every-vendor"}
    with httpx.stream(
        "POST",
        f"{gateway.server.url}/v1/messages",
        json=ask,
        headers=headers,
        timeout=CLIENT_TIMEOUT_S,
    ) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        assert answer.headers["request-id"] == answer.headers["x-request-id"]
        wire = answer.read()
    events = []
    for block in wire.decode().split("\n\n"):
        lines = [line for line in block.splitlines() if line and not line.startswith(":")]
        if lines:
            name, data = lines
            assert name.startswith("event: ") and data.startswith("data: "), block
            payload = json.loads(data[6:])
            assert payload["type"] == name[7:]
            events.append(payload)
    kinds = [event["type"] for event in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    (last_delta,) = [event for event in events if event["type"] == "message_delta"]
    assert last_delta["delta"]["stop_reason"] == "tool_use"
    assert last_delta["usage"]["output_tokens"] > 0
    (tool,) = [e for e in events if e["type"] == "content_block_start"]
    assert tool["content_block"]["name"] == "lookup"
