"""Cross-vendor fallback through `relaygate serve`: Gemini and Cohere targets behind the openai SDK.

The fault simulators speak Gemini's and Cohere's own wire formats (``/v1beta/models/...``,
``/v2/chat``); relaygate translates both ways, so the client sees OpenAI's shapes whichever
vendor answered, and the trace, the metrics and the log line name each vendor tried.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
import yaml

from tests.e2e.helpers_e2e import CLIENT_TIMEOUT_S, FAST_RETRY, MockUpstream, running_mocks
from tests.e2e.test_telemetry_truth_e2e import Spans, delta, log_lines, scrape
from tests.servers import RunningServer, relaygate_process, serve_in_thread

pytestmark = pytest.mark.gateway_process

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]
ASK: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]


def gemini(mock: MockUpstream, **fields: Any) -> dict[str, Any]:
    """A ``google`` target calling ``mock`` in Gemini's format."""
    return {
        "name": "gemini",
        "provider": "google",
        "api_key": "g-key",
        "custom_host": f"{mock.url}/v1beta",
        "override_params": {"model": "gemini-2.0-flash"},
        **fields,
    }


def cohere(mock: MockUpstream, **fields: Any) -> dict[str, Any]:
    """A ``cohere`` target calling ``mock`` in Cohere's v2 format."""
    return {
        "name": "cohere",
        "provider": "cohere",
        "api_key": "c-key",
        "custom_host": f"{mock.url}/v2",
        "override_params": {"model": "command-a-03-2025"},
        **fields,
    }


@dataclass
class Gateway:
    server: RunningServer
    spans: Spans
    gem: MockUpstream
    coh: MockUpstream
    oai: MockUpstream

    def sdk(self, config: str) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.server.url}/v1",
            api_key="unused",
            max_retries=0,
            timeout=CLIENT_TIMEOUT_S,
            default_headers={"x-portkey-config": config},
        )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    spans = Spans()
    with (
        running_mocks("gem", "coh", "oai") as mocks,
        serve_in_thread(spans.app()) as receiver,
    ):
        gem, coh, oai = mocks["gem"], mocks["coh"], mocks["oai"]
        openai_target = oai.target(name="openai", override_params={"model": "gpt-4o-mini"})
        config = {
            "configs": {
                "gemini_first": {
                    "strategy": {"mode": "fallback"},
                    "targets": [gemini(gem), cohere(coh), openai_target],
                },
                "cohere_first": {
                    "strategy": {"mode": "fallback"},
                    "targets": [cohere(coh), openai_target],
                },
                "filters_differ": {
                    "strategy": {"mode": "fallback", "on_error_codes": ["content_filter"]},
                    "targets": [gemini(gem), openai_target],
                },
                "gemini_embed": gemini(gem, override_params={"model": "text-embedding-004"}),
                "cohere_embed": cohere(coh, override_params={"model": "embed-v4.0"}),
            },
            "retry": dict(FAST_RETRY),
            "security": {"egress": {"allow_private": True}},
            "telemetry": {
                "traces": {"exporter": "otlp", "endpoint": receiver.url, "detail": "full"},
                "logs": {"level": "info", "format": "json"},
            },
        }
        path = tmp_path_factory.mktemp("vendors") / "relaygate.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        with relaygate_process(path, env={"OTEL_BSP_SCHEDULE_DELAY": "50"}) as server:
            yield Gateway(server, spans, gem, coh, oai)


@pytest.fixture(autouse=True)
def _clean(gateway: Gateway) -> None:
    for mock in (gateway.gem, gateway.coh, gateway.oai):
        mock.clear()


def _stream_text(
    sdk: openai.OpenAI, **kw: Any
) -> tuple[dict[str, str], str, list[Any], str | None, Any]:
    """Stream one chat: its headers, text, tool call deltas, last finish reason and usage."""
    with sdk.chat.completions.with_streaming_response.create(
        model="any", messages=ASK, stream=True, stream_options={"include_usage": True}, **kw
    ) as raw:
        headers = dict(raw.headers)
        text, calls, finish, usage = "", [], None, None
        for chunk in raw.parse():
            usage = chunk.usage or usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                calls.extend(choice.delta.tool_calls or ())
                finish = choice.finish_reason or finish
    return headers, text, calls, finish, usage


def test_gemini_429_falls_back_to_cohere_with_a_tool_call(gateway: Gateway) -> None:
    gateway.gem.script("429")
    raw = gateway.sdk("gemini_first").chat.completions.with_raw_response.create(
        model="any", messages=ASK, tools=TOOLS
    )
    answer = raw.parse()
    assert raw.headers["x-relaygate-route"] == "config.targets[0]:429>config.targets[1]:200"
    call = answer.choices[0].message.tool_calls[0]
    assert answer.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather",
        {"query": "coh"},
    )
    sent = gateway.coh.requests()[0]
    assert sent["path"] == "/v2/chat" and sent["headers"]["authorization"] == "Bearer c-key"
    assert sent["body"]["model"] == "command-a-03-2025"
    assert sent["body"]["tools"] == TOOLS
    assert gateway.gem.requests()[0]["headers"]["x-goog-api-key"] == "g-key"

    lines = log_lines(gateway.server, raw.headers["x-request-id"])
    request_line = next(line for line in lines if line["event"] == "request")
    tried = [(a["provider"], a["status"]) for a in request_line["attempts"]]
    assert tried == [("google", 429), ("cohere", 200)]
    trace = gateway.spans.trace_of(raw.headers["x-request-id"], attempts=2)
    vendors = [s["attributes"].get("gen_ai.provider.name") for s in trace if s["kind"] == 3]
    assert vendors == ["gcp.gemini", "cohere"]


def test_gemini_429_falls_back_to_cohere_streaming_with_a_tool_call(gateway: Gateway) -> None:
    gateway.gem.script("429")
    headers, text, calls, finish, usage = _stream_text(gateway.sdk("gemini_first"), tools=TOOLS)
    assert headers["x-relaygate-route"] == "config.targets[0]:429>config.targets[1]:200"
    assert finish == "tool_calls" and text == ""
    arguments = "".join(c.function.arguments or "" for c in calls)
    assert calls[0].function.name == "get_weather" and json.loads(arguments) == {"query": "coh"}
    assert usage is not None and usage.completion_tokens > 0


def test_a_gemini_answer_streams_in_openai_chunks_with_usage(gateway: Gateway) -> None:
    before = scrape(gateway.server)
    headers, text, calls, finish, usage = _stream_text(gateway.sdk("gemini_first"))
    assert headers["x-relaygate-served-by"] == "config.targets[0]"
    assert (text, calls, finish) == ("Hello from gem", [], "stop")
    assert usage is not None and usage.completion_tokens == 3
    grown = delta(
        before,
        scrape(gateway.server),
        "relaygate_upstream_tokens_total",
        "provider",
        "type",
    )
    assert grown[("google", "output")] == 3
    genai = delta(
        before,
        scrape(gateway.server),
        "gen_ai_client_token_usage_count",
        "gen_ai_provider_name",
        "gen_ai_token_type",
    )
    assert genai[("gcp.gemini", "output")] == 1


@pytest.mark.parametrize("stream", [False, True])
def test_a_gemini_safety_block_is_final(gateway: Gateway, stream: bool) -> None:
    gateway.gem.script("safety_block")
    sdk = gateway.sdk("gemini_first")
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="any", messages=ASK, stream=stream)
    assert refused.value.code == "content_filter"
    assert refused.value.response.headers["x-relaygate-route"] == "config.targets[0]:400"
    assert gateway.coh.hits() == 0 and gateway.oai.hits() == 0


def test_a_gemini_safety_block_falls_back_where_filters_differ(gateway: Gateway) -> None:
    gateway.gem.script("safety_block")
    raw = gateway.sdk("filters_differ").chat.completions.with_raw_response.create(
        model="any", messages=ASK
    )
    assert raw.parse().choices[0].message.content == "Hello from oai"
    assert raw.headers["x-relaygate-route"] == "config.targets[0]:400>config.targets[1]:200"


def test_a_gemini_candidate_stopped_by_safety_is_a_content_filter_finish(gateway: Gateway) -> None:
    gateway.gem.script("safety_finish")
    answer = gateway.sdk("gemini_first").chat.completions.create(model="any", messages=ASK)
    assert answer.choices[0].finish_reason == "content_filter"
    assert gateway.coh.hits() == 0


@pytest.mark.parametrize("stream", [False, True])
def test_cohere_503_falls_back_to_an_openai_compatible_target(
    gateway: Gateway, stream: bool
) -> None:
    gateway.coh.script("503")
    sdk = gateway.sdk("cohere_first")
    if stream:
        headers, text, _, finish, _ = _stream_text(sdk)
    else:
        raw = sdk.chat.completions.with_raw_response.create(model="any", messages=ASK)
        headers, answer = dict(raw.headers), raw.parse()
        text, finish = answer.choices[0].message.content or "", answer.choices[0].finish_reason
    assert headers["x-relaygate-route"] == "config.targets[0]:503>config.targets[1]:200"
    assert (text, finish) == ("Hello from oai", "stop")


def test_a_tool_result_goes_back_to_gemini_as_a_function_response(gateway: Gateway) -> None:
    first = gateway.sdk("gemini_first").chat.completions.create(
        model="any", messages=ASK, tools=TOOLS
    )
    call = first.choices[0].message.tool_calls[0]
    follow_up: list[Any] = [
        *ASK,
        {"role": "assistant", "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 18}'},
    ]
    answer = gateway.sdk("gemini_first").chat.completions.create(
        model="any", messages=follow_up, tools=TOOLS
    )
    assert answer.choices[0].message.content == "Hello from gem"
    contents = gateway.gem.requests()[-1]["body"]["contents"]
    assert contents[-1] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp_c": 18}}}],
    }


@pytest.mark.parametrize(("config", "mock"), [("gemini_embed", "gem"), ("cohere_embed", "coh")])
def test_embeddings_through_each_vendor(gateway: Gateway, config: str, mock: str) -> None:
    sdk = gateway.sdk(config)
    floats = sdk.embeddings.create(model="any", input=["a", "b"], encoding_format="float")
    default = sdk.embeddings.create(model="any", input="a")  # the SDK asks for base64
    assert [len(item.embedding) for item in floats.data] == [8, 8]
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding)
    paths = [r["path"] for r in getattr(gateway, mock).requests()]
    expected = {
        "gem": [
            "/v1beta/models/text-embedding-004:batchEmbedContents",
            "/v1beta/models/text-embedding-004:embedContent",
        ],
        "coh": ["/v2/embed", "/v2/embed"],
    }
    assert paths == expected[mock]


def test_text_completions_are_refused_by_translated_targets_and_fall_back(
    gateway: Gateway,
) -> None:
    answer = gateway.sdk("cohere_first").completions.create(model="any", prompt="hi")
    assert answer.choices[0].text == "Hello from oai"
    assert gateway.coh.hits() == 0
