"""Cross-vendor fallback end to end through a real ``relaygate serve`` process.

- the official ``anthropic`` SDK → ``POST /v1/messages`` → an ``anthropic`` target that
  answers ``529 overloaded_error`` → an OpenAI-compatible target that answers 200;
- the official ``openai`` SDK → ``POST /v1/chat/completions`` → an OpenAI-compatible target
  that answers 503 → an ``anthropic`` target that answers 200;

streaming and not, with tool calls. Both upstreams are fault simulators (each speaks both
wire formats: OpenAI's chat route and Anthropic's ``/v1/messages``); the spans (at an OTLP
receiver), ``/metrics`` and the JSON log name each vendor tried and its status.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml

from tests.e2e.helpers_e2e import (
    CLIENT_TIMEOUT_S,
    FAST_RETRY,
    MockUpstream,
    answer_of,
    running_mocks,
)
from tests.e2e.test_telemetry_truth_e2e import (
    CLIENT,
    Samples,
    Spans,
    delta,
    log_lines,
    scrape,
)
from tests.servers import RunningServer, relaygate_process, serve_in_thread

GATEWAY_KEY = "gw-anthropic-e2e"

TOOLS_ANTHROPIC: list[Any] = [
    {
        "name": "lookup",
        "description": "Look a text up.",
        "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}},
    }
]
TOOLS_OPENAI: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look a text up.",
            "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
        },
    }
]


@dataclass
class Gateway:
    server: RunningServer
    spans: Spans
    claude: MockUpstream
    gpt: MockUpstream


def _anthropic_target(mock: MockUpstream) -> dict[str, Any]:
    return mock.target(name="claude", provider="anthropic", override_params={"model": "claude-x"})


def _openai_target(mock: MockUpstream) -> dict[str, Any]:
    return mock.target(name="gpt", override_params={"model": "gpt-x"})


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    spans = Spans()
    with (
        running_mocks("claude", "gpt") as mocks,
        serve_in_thread(spans.app()) as receiver,
    ):
        claude, gpt = mocks["claude"], mocks["gpt"]
        config = {
            "configs": {
                "claude-first": {
                    "strategy": {"mode": "fallback"},
                    "targets": [_anthropic_target(claude), _openai_target(gpt)],
                },
                "gpt-first": {
                    "strategy": {"mode": "fallback"},
                    "targets": [_openai_target(gpt), _anthropic_target(claude)],
                },
                "claude-retry": _anthropic_target(claude) | {"retry": {"attempts": 1}},
            },
            "retry": dict(FAST_RETRY),
            "auth": {"api_keys": [GATEWAY_KEY]},
            "security": {"egress": {"allow_private": True}},
            "telemetry": {
                "service_name": "relaygate-anthropic",
                "traces": {"exporter": "otlp", "endpoint": receiver.url, "detail": "full"},
                "logs": {"level": "info", "format": "json"},
            },
        }
        path = tmp_path_factory.mktemp("anthropic") / "relaygate.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        with relaygate_process(path, env={"OTEL_BSP_SCHEDULE_DELAY": "50"}) as server:
            yield Gateway(server, spans, claude, gpt)


def _prepare(gw: Gateway, claude: str, gpt: str) -> Samples:
    for mock, script in ((gw.claude, claude), (gw.gpt, gpt)):
        mock.clear()
        mock.script(script)
    return scrape(gw.server)


def _check_story(
    gw: Gateway, request_id: str, before: Samples, config: str, expected: list[tuple[str, str, int]]
) -> None:
    """Spans, log and metrics name each vendor tried, in order, with its status as sent."""
    trace = gw.spans.trace_of(request_id, len(expected))
    clients = sorted((s for s in trace if s["kind"] == CLIENT), key=lambda s: s["start"])
    assert [
        (
            s["attributes"]["relaygate.target.name"],
            s["attributes"]["gen_ai.provider.name"],
            s["attributes"].get("http.response.status_code"),
        )
        for s in clients
    ] == expected
    lines = log_lines(gw.server, request_id)
    (request_line,) = [line for line in lines if line["event"] == "request"]
    assert request_line["outcome"] == "ok"
    assert [(a["target"], a["provider"], a["status"]) for a in request_line["attempts"]] == [
        (name, provider, status) for name, provider, status in expected
    ]
    grown = delta(before, scrape(gw.server), "relaygate_upstream_attempts_total", "target")
    assert grown == {(name,): 1.0 for name, _, _ in expected}


def _anthropic_client(gw: Gateway, *, bearer: bool) -> anthropic.Anthropic:
    if bearer:
        return anthropic.Anthropic(
            base_url=gw.server.url,
            auth_token=GATEWAY_KEY,
            api_key=None,
            max_retries=0,
            timeout=CLIENT_TIMEOUT_S,
        )
    return anthropic.Anthropic(
        base_url=gw.server.url, api_key=GATEWAY_KEY, max_retries=0, timeout=CLIENT_TIMEOUT_S
    )


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_anthropic_sdk_falls_back_from_overloaded_claude_to_openai(
    gateway: Gateway, stream: bool
) -> None:
    before = _prepare(gateway, "529", "")
    client = _anthropic_client(gateway, bearer=stream)
    ask: dict[str, Any] = {
        "model": "claude-any",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Look something up."}],
        "tools": TOOLS_ANTHROPIC,
        "extra_headers": {"x-portkey-config": "claude-first"},
    }
    if stream:
        with client.messages.stream(**ask) as events:
            kinds = [event.type for event in events]
            message = events.get_final_message()
            request_id = events.response.headers["request-id"]
            headers = events.response.headers
        assert kinds[0] == "message_start" and "message_stop" in kinds
    else:
        raw = client.messages.with_raw_response.create(**ask)
        message = raw.parse()
        request_id = raw.headers["request-id"]
        headers = raw.headers
    assert message.stop_reason == "tool_use"
    (block,) = message.content
    assert block.type == "tool_use"
    assert block.name == "lookup" and block.input == {"text": answer_of("gpt")}
    assert message.usage.output_tokens > 0
    assert headers["x-portkey-last-used-option-index"] == "config.targets[1]"
    # What reached the vendors: the Messages API at claude (its key as x-api-key), chat at gpt.
    (asked_claude,) = gateway.claude.requests()
    assert asked_claude["path"] == "/v1/messages"
    assert asked_claude["headers"]["x-api-key"] == "sk-claude"
    assert asked_claude["headers"]["anthropic-version"]
    assert asked_claude["body"]["tools"][0]["input_schema"]["type"] == "object"
    (asked_gpt,) = gateway.gpt.requests()
    assert asked_gpt["path"] == "/v1/chat/completions"
    assert asked_gpt["body"]["tools"][0]["function"]["name"] == "lookup"
    _check_story(
        gateway,
        request_id,
        before,
        "claude-first",
        [("claude", "anthropic", 529), ("gpt", "openai", 200)],
    )


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_openai_sdk_falls_back_from_openai_503_to_claude(gateway: Gateway, stream: bool) -> None:
    before = _prepare(gateway, "", "503")
    client = openai.OpenAI(
        base_url=f"{gateway.server.url}/v1",
        api_key=GATEWAY_KEY,
        max_retries=0,
        timeout=CLIENT_TIMEOUT_S,
    )
    ask: dict[str, Any] = {
        "model": "gpt-any",
        "messages": [{"role": "user", "content": "Look something up."}],
        "tools": TOOLS_OPENAI,
        "extra_headers": {"x-portkey-config": "gpt-first"},
    }
    if stream:
        with client.chat.completions.with_streaming_response.create(stream=True, **ask) as raw:
            request_id = raw.headers["x-request-id"]
            chunks = list(raw.parse())
        calls: dict[int, dict[str, str]] = {}
        finish = None
        for chunk in chunks:
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                for call in choice.delta.tool_calls or []:
                    entry = calls.setdefault(call.index, {"name": "", "arguments": ""})
                    if call.function and call.function.name:
                        entry["name"] = call.function.name
                    if call.function and call.function.arguments:
                        entry["arguments"] += call.function.arguments
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
        assert chunks[0].model == "claude-x"
        (name, arguments) = next((c["name"], c["arguments"]) for c in calls.values())
    else:
        whole = client.chat.completions.with_raw_response.create(**ask)
        request_id = whole.headers["x-request-id"]
        completion = whole.parse()
        choice = completion.choices[0]
        finish = choice.finish_reason
        assert choice.message.tool_calls is not None
        (call,) = choice.message.tool_calls
        assert call.type == "function"
        name, arguments = call.function.name, call.function.arguments
        assert completion.usage is not None and completion.usage.prompt_tokens > 0
    assert finish == "tool_calls"
    assert name == "lookup" and json.loads(arguments) == {"text": answer_of("claude")}
    (asked_claude,) = gateway.claude.requests()
    assert asked_claude["path"] == "/v1/messages"
    assert asked_claude["body"]["model"] == "claude-x"
    assert asked_claude["body"]["max_tokens"] > 0
    _check_story(
        gateway,
        request_id,
        before,
        "gpt-first",
        [("gpt", "openai", 503), ("claude", "anthropic", 200)],
    )


def test_529_is_retried_like_503(gateway: Gateway) -> None:
    _prepare(gateway, "529,200", "")
    client = _anthropic_client(gateway, bearer=False)
    raw = client.messages.with_raw_response.create(
        model="claude-any",
        max_tokens=16,
        messages=[{"role": "user", "content": "Hello."}],
        extra_headers={"x-portkey-config": "claude-retry"},
    )
    message = raw.parse()
    assert [b.text for b in message.content if b.type == "text"] == [answer_of("claude")]
    assert raw.headers["x-portkey-retry-attempt-count"] == "1"
    assert gateway.claude.hits() == 2


def test_messages_errors_are_anthropic_shaped(gateway: Gateway) -> None:
    _prepare(gateway, "529", "503")
    client = _anthropic_client(gateway, bearer=False)
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(
            model="claude-any",
            max_tokens=16,
            messages=[{"role": "user", "content": "Hello."}],
            extra_headers={"x-portkey-config": "claude-first"},
        )
    assert caught.value.status_code == 503
    assert caught.value.body["type"] == "error"  # type: ignore[index]
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert caught.value.response.headers["request-id"]

    bad = httpx.post(
        f"{gateway.server.url}/v1/messages",
        headers={"x-api-key": GATEWAY_KEY, "x-portkey-config": "claude-first"},
        json={"model": "m", "messages": []},
        timeout=CLIENT_TIMEOUT_S,
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"

    unauthorized = httpx.post(
        f"{gateway.server.url}/v1/messages",
        headers={"x-api-key": "wrong"},
        json={"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]},
        timeout=CLIENT_TIMEOUT_S,
    )
    assert unauthorized.status_code == 401
    assert unauthorized.json()["error"]["type"] == "authentication_error"

    count = httpx.post(
        f"{gateway.server.url}/v1/messages/count_tokens",
        headers={"x-api-key": GATEWAY_KEY},
        json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
        timeout=CLIENT_TIMEOUT_S,
    )
    assert count.status_code == 400  # no config named: refused like any request
    assert count.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": count.json()["error"]["message"]},
    }


def test_anthropic_sdk_counts_tokens_at_an_anthropic_target(gateway: Gateway) -> None:
    _prepare(gateway, "", "")
    client = _anthropic_client(gateway, bearer=False)
    raw = client.messages.with_raw_response.count_tokens(
        model="claude-any",
        system="Be brief.",
        messages=[{"role": "user", "content": "Count these four words."}],
        tools=TOOLS_ANTHROPIC,
        extra_headers={"x-portkey-config": "gpt-first"},
    )
    # The OpenAI-compatible target cannot count (refused before any call), so the
    # fallback reaches claude, which counts the words of the system prompt and message.
    assert raw.parse().input_tokens == 2 + 4
    assert raw.headers["x-portkey-last-used-option-index"] == "config.targets[1]"
    assert gateway.gpt.hits() == 0
    (asked,) = gateway.claude.requests()
    assert asked["path"] == "/v1/messages/count_tokens"
    assert asked["headers"]["x-api-key"] == "sk-claude"
    assert set(asked["body"]) == {"model", "messages", "system", "tools"}
    assert asked["body"]["model"] == "claude-x"
    assert asked["body"]["tools"][0]["name"] == "lookup"


def test_a_failing_count_is_an_anthropic_error_the_sdk_raises(gateway: Gateway) -> None:
    _prepare(gateway, "529,529", "")
    client = _anthropic_client(gateway, bearer=True)
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.count_tokens(
            model="claude-any",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-portkey-config": "claude-retry"},
        )
    assert caught.value.status_code == 529
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert gateway.claude.hits() == 2  # tried, and retried once
