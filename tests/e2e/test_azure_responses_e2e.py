"""The Responses API passed through to ``azure-openai`` end to end through ``relaygate
serve``, with the official openai SDK: Azure speaks Responses natively (its v1 route,
``.../openai/v1/responses``, the deployment as the model), so stateful fields reach it as
sent, a fallback from a throttled Bedrock target ends there with them intact, and a retry
at Azure is told in the route, the JSON log and the per-target series like any other.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.e2e.helpers_e2e import (
    STREAMING,
    Mocks,
    MockUpstream,
    answer_of,
    config_header,
    openai_client,
    server_config,
)
from tests.e2e.test_bedrock_responses_e2e import bedrock_target, response_text
from tests.e2e.test_telemetry_truth_e2e import delta, log_lines, scrape
from tests.servers import RunningServer, running_gateway

pytestmark = pytest.mark.gateway_process

MOCK_NAMES = ("bedrock", "azure")

DEPLOYMENT = "gpt4o-prod"


def azure_target(mock: MockUpstream) -> dict[str, Any]:
    """An ``azure-openai`` target whose resource is the simulator."""
    return {
        "provider": "azure-openai",
        "api_key": "az-key",
        "custom_host": f"{mock.url}/openai",
        "deployment_id": DEPLOYMENT,
        "api_version": "2024-10-21",
    }


@pytest.fixture(scope="module")
def gateway(mocks: Mocks, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A relaygate process serving this module's configs, one JSON log line per request."""
    configs = {
        "azure": azure_target(mocks["azure"]),
        "azure-retry": azure_target(mocks["azure"]) | {"retry": {"attempts": 1}},
        "bedrock-then-azure": {
            "strategy": {"mode": "fallback"},
            "targets": [bedrock_target(mocks["bedrock"]), azure_target(mocks["azure"])],
        },
    }
    config = server_config(configs, telemetry={"logs": {"level": "info", "format": "json"}})
    with running_gateway(tmp_path_factory.mktemp("azure"), config) as server:
        yield server


@pytest.fixture(scope="module")
def client(gateway: RunningServer) -> Iterator[openai.OpenAI]:
    """An openai SDK client of :func:`gateway`."""
    with openai_client(f"{gateway.url}/v1") as sdk:
        yield sdk


@STREAMING
def test_a_stateful_responses_request_is_passed_through_to_azure(
    client: openai.OpenAI, mocks: Mocks, stream: bool
) -> None:
    text = response_text(
        client,
        "azure",
        stream=stream,
        input="Say hello.",
        previous_response_id="resp_1",
        store=True,
    )
    assert text == answer_of("azure")
    (sent,) = mocks["azure"].requests()
    assert sent["path"] == "/openai/v1/responses"
    assert sent["headers"]["api-key"] == "az-key"
    assert sent["body"]["model"] == DEPLOYMENT
    assert (sent["body"]["previous_response_id"], sent["body"]["store"]) == ("resp_1", True)


@STREAMING
@pytest.mark.parametrize(
    ("extra", "first", "bedrock_hits"),
    [({}, "429", 1), ({"previous_response_id": "resp_1"}, "400", 0)],
    ids=["throttled", "stateful"],
)
def test_a_responses_request_falls_back_from_bedrock_to_azure(
    client: openai.OpenAI,
    mocks: Mocks,
    stream: bool,
    extra: dict[str, Any],
    first: str,
    bedrock_hits: int,
) -> None:
    """Throttled, Bedrock answers 429; asked for stored state, Bedrock (translated through
    chat) refuses it with a 400 before anything is sent. Either way Azure answers, natively."""
    mocks["bedrock"].script("429")
    raw = client.responses.with_raw_response.create(
        model="any",
        input="Say hello.",
        stream=stream,
        extra_headers=config_header("bedrock-then-azure"),
        **extra,
    )
    answer: Any = raw.parse()
    if stream:
        events = list(answer)
        assert events[-1].type == "response.completed"
        answer = events[-1].response
    assert answer.output_text == answer_of("azure")
    assert raw.headers["x-relaygate-route"] == f"config.targets[0]:{first}>config.targets[1]:200"
    assert mocks["bedrock"].hits() == bedrock_hits
    (sent,) = mocks["azure"].requests()
    assert sent["path"] == "/openai/v1/responses"
    assert {k: sent["body"].get(k) for k in extra} == extra


@STREAMING
def test_a_responses_request_is_retried_at_azure_and_told_in_the_log_and_metrics(
    gateway: RunningServer, client: openai.OpenAI, mocks: Mocks, stream: bool
) -> None:
    mocks["azure"].script("503,200")
    before = scrape(gateway)
    raw = client.responses.with_raw_response.create(
        model="any", input="Say hello.", stream=stream, extra_headers=config_header("azure-retry")
    )
    answer: Any = raw.parse()
    if stream:
        answer = list(answer)[-1].response
    assert answer.output_text == answer_of("azure")
    assert raw.headers["x-relaygate-route"] == "config:503,200"  # a lone target: the config
    assert [r["path"] for r in mocks["azure"].requests()] == ["/openai/v1/responses"] * 2
    (line,) = [
        x for x in log_lines(gateway, raw.headers["x-request-id"]) if x["event"] == "request"
    ]
    assert line["operation"] == "responses"
    assert [(a["provider"], a["status"]) for a in line["attempts"]] == [
        ("azure-openai", 503),
        ("azure-openai", 200),
    ]
    assert delta(
        before, scrape(gateway), "relaygate_upstream_attempts_total", "provider", "status_class"
    ) == {("azure-openai", "5xx"): 1.0, ("azure-openai", "2xx"): 1.0}
