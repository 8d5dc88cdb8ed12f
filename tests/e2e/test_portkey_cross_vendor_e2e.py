"""Mixed-vendor fallback end to end through the official Portkey SDK (``portkey-ai``).

The SDK sends an inline fallback config (``x-portkey-config``) to a real ``relaygate serve``:
an ``anthropic`` target whose simulator answers ``529 overloaded_error`` on ``/v1/messages``,
then a ``google`` target whose simulator answers 429 on ``/v1beta``, then an OpenAI-compatible
target that answers 200. Streamed or not, with a tool offered or not, the SDK reads OpenAI's
shapes, and the route story (header and JSON log) and ``/metrics`` name each vendor tried with
the status it sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from portkey_ai._vendor import openai as portkey_openai

from tests.e2e.helpers_e2e import STREAMING, Mocks, answer_of, server_config
from tests.e2e.test_anthropic_e2e import _anthropic_target, _openai_target
from tests.e2e.test_cross_vendor_e2e import ASK, TOOLS, gemini
from tests.e2e.test_portkey_sdk_e2e import portkey
from tests.e2e.test_telemetry_truth_e2e import delta, log_lines, scrape
from tests.servers import RunningServer, running_gateway

pytestmark = pytest.mark.gateway_process

MOCK_NAMES = ("claude", "gem", "gpt")

ROUTE = "config.targets[0]:529>config.targets[1]:429>config.targets[2]:200"
"""Overloaded Claude, rate-limited Gemini, then the OpenAI-compatible answer."""

TRIED = [("claude", "anthropic", 529), ("gemini", "google", 429), ("gpt", "openai", 200)]
"""Each attempt's target name, provider and the status its vendor sent, in order."""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A relaygate process with no named configs, logging one JSON line per request."""
    config = server_config({}, telemetry={"logs": {"level": "info", "format": "json"}})
    with running_gateway(tmp_path_factory.mktemp("portkey-xv"), config) as server:
        yield server


def _mixed(mocks: Mocks) -> dict[str, Any]:
    """The inline config: Claude, then Gemini, then an OpenAI-compatible target."""
    return {
        "strategy": {"mode": "fallback"},
        "targets": [
            _anthropic_target(mocks["claude"]),
            gemini(mocks["gem"]),
            _openai_target(mocks["gpt"]),
        ],
    }


def _ask(gateway: RunningServer, mocks: Mocks, *, stream: bool, tools: bool) -> Any:
    """Script the two failures and send one chat through the SDK with the inline config."""
    mocks["claude"].script("529")
    mocks["gem"].script("429")
    client = portkey(gateway, config=_mixed(mocks))
    offered: dict[str, Any] = {"tools": TOOLS} if tools else {}
    return client.chat.completions.create(model="any", messages=ASK, stream=stream, **offered)


def _check_story(gateway: RunningServer, request_id: str, before: Any) -> None:
    """The JSON log and ``/metrics`` name the three vendors tried, in order, with statuses."""
    (line,) = [x for x in log_lines(gateway, request_id) if x["event"] == "request"]
    assert (line["route"], line["outcome"]) == (ROUTE, "ok")
    assert [(a["target"], a["provider"], a["status"]) for a in line["attempts"]] == TRIED
    grown = delta(
        before, scrape(gateway), "relaygate_upstream_attempts_total", "target", "provider"
    )
    assert grown == {(name, provider): 1.0 for name, provider, _ in TRIED}


def _check_vendors_asked(mocks: Mocks, *, tools: bool) -> None:
    """Each vendor was asked once, in its own wire format, with the tool when offered."""
    (claude,), (gem,), (gpt,) = (mocks[n].requests() for n in MOCK_NAMES)
    assert claude["path"] == "/v1/messages" and claude["headers"]["x-api-key"] == "sk-claude"
    assert gem["path"].startswith("/v1beta/models/gemini-2.0-flash:")
    assert gpt["path"] == "/v1/chat/completions" and gpt["body"]["model"] == "gpt-x"
    assert [("tools" in asked["body"]) for asked in (claude, gem, gpt)] == [tools] * 3


def _read(answer: Any, *, stream: bool) -> tuple[Any, str, list[tuple[str, Any]], list[str]]:
    """What the SDK read: the ``x-portkey-*`` response headers, the text, the tool calls
    (name, parsed arguments) and the finish reasons. A stream's ``x-relaygate-route`` is
    checked on the way (the SDK exposes only ``x-portkey-*`` headers of a whole answer)."""
    if not stream:
        (choice,) = answer.choices
        headers = {f"x-portkey-{k}": v for k, v in answer.get_headers().items()}
        calls = [(c.function.name, c.function.arguments) for c in choice.message.tool_calls or ()]
        return headers, choice.message.content or "", _parsed(calls), [choice.finish_reason]
    assert isinstance(answer, portkey_openai.Stream)
    assert answer.response.headers["x-relaygate-route"] == ROUTE
    choices = [c for chunk in answer for c in chunk.choices]
    pieces: dict[int, tuple[str, str]] = {}
    for call in (call for c in choices for call in c.delta.tool_calls or ()):
        name, arguments = pieces.get(call.index, ("", ""))
        pieces[call.index] = (
            name + (call.function.name or ""),
            arguments + (call.function.arguments or ""),
        )
    text = "".join(c.delta.content or "" for c in choices)
    finishes = [c.finish_reason for c in choices if c.finish_reason]
    return answer.response.headers, text, _parsed(list(pieces.values())), finishes


def _parsed(calls: list[tuple[str, str]]) -> list[tuple[str, Any]]:
    return [(name, json.loads(arguments)) for name, arguments in calls]


@STREAMING
@pytest.mark.parametrize("tools", [False, True], ids=["text", "tool"])
def test_claude_529_then_gemini_429_fall_back_to_openai(
    gateway: RunningServer, mocks: Mocks, stream: bool, tools: bool
) -> None:
    before = scrape(gateway)
    answer = _ask(gateway, mocks, stream=stream, tools=tools)
    headers, text, calls, finishes = _read(answer, stream=stream)
    if tools:
        expected = ("", [("get_weather", {"text": answer_of("gpt")})], ["tool_calls"])
    else:
        expected = (answer_of("gpt"), [], ["stop"])
    assert (text, calls, finishes) == expected
    _check_vendors_asked(mocks, tools=tools)
    assert headers["x-portkey-last-used-option-index"] == "config.targets[2]"
    # With no trace id from the client, the trace id is the request id.
    _check_story(gateway, headers["x-portkey-trace-id"], before)
