"""Streaming deadlines end to end: a real ``relaygate serve`` process in front of real
fault-simulator upstreams on loopback, driven with the official openai SDK.

``first_token_timeout`` cuts a target slow to start its answer before anything reached the
client, so fallback answers instead; a stream that has started is never cut by it.
``stream_idle_timeout`` ends a stream that goes silent: before its first chunk it falls
back, after chunks reached the client it ends with the in-band error event and is counted
under the reason ``stream_idle``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.helpers_e2e import (
    CLIENT_TIMEOUT_S,
    MESSAGES,
    MockUpstream,
    answer_of,
    chunk_text,
    config_header,
    openai_client,
    running_mocks,
    server_config,
)
from tests.servers import RunningServer, running_gateway

FIRST_TOKEN_MS = 500
"""The first-token timeout of the targets made to miss it (their first token comes a
minute late)."""
STARTED_FIRST_TOKEN_MS = 2_000
"""The first-token timeout of the slow-but-started stream: its first content comes after
:data:`CHUNK_DELAY_MS`, well within it, and the whole stream takes longer than it."""
CHUNK_DELAY_MS = 500
IDLE_MS = 500

Mocks = dict[str, MockUpstream]


def _configs(mocks: Mocks) -> dict[str, Any]:
    alpha, beta = mocks["alpha"], mocks["beta"]
    return {
        "first-token": {
            "strategy": {"mode": "fallback"},
            "targets": [alpha.target(first_token_timeout=FIRST_TOKEN_MS), beta.target()],
        },
        "started": {
            "strategy": {"mode": "fallback"},
            "targets": [alpha.target(first_token_timeout=STARTED_FIRST_TOKEN_MS), beta.target()],
        },
        "idle-fallback": {
            "strategy": {"mode": "fallback"},
            "targets": [alpha.target(stream_idle_timeout=IDLE_MS), beta.target()],
        },
        "idle-solo": alpha.target(stream_idle_timeout=IDLE_MS, name="solo"),
    }


@pytest.fixture(scope="module")
def mocks() -> Iterator[Mocks]:
    """Two fault-simulator upstreams shared by the module: alpha and beta."""
    with running_mocks("alpha", "beta") as running:
        yield running


@pytest.fixture(autouse=True)
def _clean_mocks(mocks: Mocks) -> None:
    for mock in mocks.values():
        mock.clear()


@pytest.fixture(scope="module")
def gateway(mocks: Mocks, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The relaygate process serving every named config of this module."""
    config = server_config(_configs(mocks))
    with running_gateway(tmp_path_factory.mktemp("deadlines"), config) as server:
        yield server


@pytest.fixture(scope="module")
def client(gateway: RunningServer) -> Iterator[openai.OpenAI]:
    """An openai SDK client of the gateway."""
    with openai_client(f"{gateway.url}/v1") as sdk:
        yield sdk


def streamed(sdk: openai.OpenAI, config: str) -> tuple[httpx.Headers, str]:
    """The response headers and the assembled text of a streamed chat completion."""
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=config_header(config)
    )
    return raw.headers, chunk_text(raw.parse())


def test_a_first_token_later_than_first_token_timeout_falls_back(
    client: openai.OpenAI, mocks: Mocks
) -> None:
    mocks["alpha"].script("200@first_token_delay_ms=60000")
    headers, text = streamed(client, "first-token")
    assert text == answer_of("beta")
    assert headers["x-relaygate-route"] == "config.targets[0]:timeout>config.targets[1]:200"
    assert mocks["alpha"].hits() == 1


def test_a_stream_stalled_after_its_opening_falls_back_under_first_token_timeout(
    client: openai.OpenAI, mocks: Mocks
) -> None:
    mocks["alpha"].script("200@stall_after_chunks=1")  # the role-only chunk, then silence
    headers, text = streamed(client, "first-token")
    assert text == answer_of("beta")
    assert headers["x-relaygate-route"] == "config.targets[0]:timeout>config.targets[1]:200"


def test_a_slow_but_started_stream_is_not_cut_by_first_token_timeout(
    client: openai.OpenAI, mocks: Mocks
) -> None:
    mocks["alpha"].script(f"200@chunk_delay_ms={CHUNK_DELAY_MS}")
    headers, text = streamed(client, "started")
    assert text == answer_of("alpha")
    assert headers["x-relaygate-route"] == "config.targets[0]:200"
    assert mocks["beta"].hits() == 0


def test_a_stream_silent_since_its_headers_falls_back_as_stream_idle(
    client: openai.OpenAI, mocks: Mocks
) -> None:
    mocks["alpha"].script("200@stall_after_chunks=0")
    headers, text = streamed(client, "idle-fallback")
    assert text == answer_of("beta")
    assert headers["x-relaygate-route"] == "config.targets[0]:stream_idle>config.targets[1]:200"
    assert mocks["alpha"].hits() == 1  # a stalled target is not retried on itself


def test_a_stall_after_chunks_reached_the_client_ends_with_an_error_event(
    client: openai.OpenAI, mocks: Mocks, gateway: RunningServer
) -> None:
    mocks["alpha"].script("200@stall_after_chunks=3")
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        extra_headers=config_header("idle-solo"),
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)
    assert not isinstance(caught.value, openai.APIConnectionError)
    assert "no data from upstream" in caught.value.message
    text = chunk_text(received)
    assert text, "the chunks sent before the stall reach the client"
    assert answer_of("alpha").startswith(text) and text != answer_of("alpha")
    series = 'reason="stream_idle"'
    assert series in _attempt_lines(gateway, target="solo", containing=series)


def _attempt_lines(gateway: RunningServer, *, target: str, containing: str) -> str:
    """The ``relaygate_upstream_attempts_total`` samples of ``target``, once one contains
    ``containing`` (a stream's attempt is recorded when the stream has ended, which the
    gateway does right after the client's last byte), or as they are after 10 s."""
    give_up = time.monotonic() + 10
    with httpx.Client(timeout=CLIENT_TIMEOUT_S) as http:
        while True:
            metrics = http.get(f"{gateway.url}/metrics").text
            lines = "\n".join(
                line
                for line in metrics.splitlines()
                if line.startswith("relaygate_upstream_attempts_total{")
                and f'target="{target}"' in line
            )
            if containing in lines or time.monotonic() > give_up:
                return lines
            time.sleep(0.05)
