"""Mid-stream recovery end to end: the official openai SDK streaming through a real
``relaygate serve`` process whose primary upstream (a fault simulator on loopback) cuts its
stream after some chunks reached the client.

The simulators answer the same text word for word (``answer``) but cut it into different
numbers of chunks, so the recovering stream's chunk boundaries never line up with the
broken one's; ``other`` answers a different text, so a recovery through it diverges.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import openai
import pytest

from tests.e2e.helpers_e2e import (
    MESSAGES,
    MockUpstream,
    config_header,
    openai_client,
    running_mocks,
    server_config,
)
from tests.servers import RunningServer, running_gateway

ANSWER = (
    "Recovery works word for word: the quick brown fox jumps over the lazy dog, "
    "then naps in the warm afternoon sun while the gateway keeps the answer whole."
)
CUT = "200@cut_after_chunks=5"
"""The primary's fault: the role chunk and four pieces of text reach the client, then the
connection drops."""

Mocks = dict[str, MockUpstream]


@pytest.fixture(scope="module")
def mocks() -> Iterator[Mocks]:
    """primary (the text in 12 chunks), backup (the same text in 5), other (another text)."""
    with ExitStack() as stack:
        found: Mocks = {}
        found |= stack.enter_context(running_mocks("primary", answer=ANSWER, stream_chunks=12))
        found |= stack.enter_context(running_mocks("backup", answer=ANSWER, stream_chunks=5))
        found |= stack.enter_context(running_mocks("other", answer=ANSWER.upper()))
        yield found


@pytest.fixture(autouse=True)
def _clean(mocks: Mocks) -> None:
    for mock in mocks.values():
        mock.clear()


@pytest.fixture(scope="module")
def gateway(mocks: Mocks, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    primary, backup, other = mocks["primary"], mocks["backup"], mocks["other"]
    configs = {
        "recover": {
            "strategy": {"mode": "fallback"},
            "targets": [primary.target(), backup.target()],
        },
        "diverge": {
            "strategy": {"mode": "fallback"},
            "targets": [primary.target(), other.target()],
        },
        "off": {
            "strategy": {"mode": "fallback", "recover_streams": False},
            "targets": [primary.target(), backup.target()],
        },
        "retry": {
            "strategy": {"mode": "single", "recover_streams": True},
            "targets": [primary.target(retry={"attempts": 1})],
        },
        "from-anthropic": {
            "strategy": {"mode": "fallback"},
            "targets": [primary.target(provider="anthropic"), backup.target()],
        },
        "to-anthropic": {
            "strategy": {"mode": "fallback"},
            "targets": [primary.target(), backup.target(provider="anthropic")],
        },
    }
    with running_gateway(tmp_path_factory.mktemp("gw"), server_config(configs)) as server:
        yield server


@pytest.fixture(scope="module")
def client(gateway: RunningServer) -> Iterator[openai.OpenAI]:
    with openai_client(f"{gateway.url}/v1") as sdk:
        yield sdk


def stream(sdk: openai.OpenAI, config: str) -> tuple[str, list[Any]]:
    """Stream a chat answer through ``config``; the text the SDK assembled and its chunks.
    An error event raises ``openai.APIError`` with the text so far in ``received``."""
    chunks: list[Any] = []
    events = sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=config_header(config),
    )
    for chunk in events:
        chunks.append(chunk)
    return text_of(chunks), chunks


def text_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def clean_answer(mock: MockUpstream) -> tuple[str, Any]:
    """The whole answer and usage of ``mock`` asked directly, with nothing cut."""
    with openai_client(mock.base_url) as direct:
        chunks = list(
            direct.chat.completions.create(
                model="gpt-4o-mini",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    return text_of(chunks), chunks[-1].usage


def test_a_stream_cut_midway_is_finished_by_the_fallback_word_for_word(
    client: openai.OpenAI, mocks: Mocks
) -> None:
    mocks["primary"].script(CUT)
    text, chunks = stream(client, "recover")
    full, usage = clean_answer(mocks["backup"])
    assert text == full == ANSWER
    assert chunks[-1].usage == usage, "the client's usage is the recovering attempt's"
    assert len({c.id for c in chunks}) == 1, "one coherent stream: the first attempt's id"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert mocks["backup"].hits() == 2  # the recovery, then the direct call above


def test_a_recovery_whose_text_differs_ends_with_the_error_event(
    client: openai.OpenAI, mocks: Mocks
) -> None:
    mocks["primary"].script(CUT)
    received: list[Any] = []
    events = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=config_header("diverge")
    )
    with pytest.raises(openai.APIError, match="recovery diverged") as caught:
        for chunk in events:
            received.append(chunk)
    assert not isinstance(caught.value, openai.APIConnectionError)
    assert text_of(received) and ANSWER.startswith(text_of(received))
    assert mocks["other"].hits() == 1


def test_with_recovery_off_the_break_ends_the_stream_without_trying_the_fallback(
    client: openai.OpenAI, mocks: Mocks
) -> None:
    mocks["primary"].script(CUT)
    with pytest.raises(openai.APIError, match="upstream stream interrupted") as caught:
        stream(client, "off")
    assert "recovery" not in str(caught.value)
    assert mocks["backup"].hits() == 0


def test_the_retries_of_the_same_target_recover_its_stream(
    client: openai.OpenAI, mocks: Mocks
) -> None:
    mocks["primary"].script(f"{CUT},200")
    text, _ = stream(client, "retry")
    assert text == ANSWER
    assert mocks["primary"].hits() == 2


@pytest.mark.parametrize("config", ["from-anthropic", "to-anthropic"])
def test_a_stream_cut_midway_is_recovered_across_vendors(
    client: openai.OpenAI, mocks: Mocks, config: str
) -> None:
    mocks["primary"].script(CUT)
    text, chunks = stream(client, config)
    assert text == ANSWER
    assert len({c.id for c in chunks}) == 1, "one coherent stream: the first attempt's id"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None
    assert [r["path"] for r in mocks["primary"].requests()] == [
        "/v1/messages" if config == "from-anthropic" else "/v1/chat/completions"
    ]
    assert [r["path"] for r in mocks["backup"].requests()] == [
        "/v1/messages" if config == "to-anthropic" else "/v1/chat/completions"
    ]
