"""Mid-stream recovery across vendors through `relaygate serve`: a Gemini stream cut after
text reached the client is finished by Cohere, and the reverse, with the openai SDK reading
one coherent stream.

Both simulators answer the same text word for word (``answer``) in different numbers of
chunks and in their own wire formats; the translated streams are what recovery compares.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from tests.e2e.helpers_e2e import (
    MESSAGES,
    MockUpstream,
    config_header,
    openai_client,
    running_mocks,
    server_config,
)
from tests.e2e.test_cross_vendor_e2e import cohere, gemini
from tests.servers import RunningServer, running_gateway

pytestmark = pytest.mark.gateway_process

ANSWER = (
    "Across vendors the answer stays whole: Gemini starts it and Cohere finishes it, word for word."
)

Mocks = dict[str, MockUpstream]


@pytest.fixture(scope="module")
def mocks() -> Iterator[Mocks]:
    with ExitStack() as stack:
        found: Mocks = {}
        found |= stack.enter_context(running_mocks("gem", answer=ANSWER, stream_chunks=12))
        found |= stack.enter_context(running_mocks("coh", answer=ANSWER, stream_chunks=7))
        yield found


@pytest.fixture(autouse=True)
def _clean(mocks: Mocks) -> None:
    for mock in mocks.values():
        mock.clear()


@pytest.fixture(scope="module")
def gateway(mocks: Mocks, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    gem, coh = gemini(mocks["gem"]), cohere(mocks["coh"])
    configs = {
        "gemini_then_cohere": {"strategy": {"mode": "fallback"}, "targets": [gem, coh]},
        "cohere_then_gemini": {"strategy": {"mode": "fallback"}, "targets": [coh, gem]},
    }
    with running_gateway(tmp_path_factory.mktemp("recovery"), server_config(configs)) as server:
        yield server


@pytest.mark.parametrize(
    ("config", "broken", "cut"),
    [
        ("gemini_then_cohere", "gem", "200@cut_after_chunks=5"),
        ("cohere_then_gemini", "coh", "200@cut_after_chunks=5"),
    ],
)
def test_a_cut_stream_is_finished_by_the_other_vendor(
    gateway: RunningServer, mocks: Mocks, config: str, broken: str, cut: str
) -> None:
    mocks[broken].script(cut)
    sdk = openai_client(f"{gateway.url}/v1")
    pieces: list[str] = []
    ids: set[str] = set()
    finish: Any = None
    with sdk.chat.completions.create(
        model="any", messages=MESSAGES, stream=True, extra_headers=config_header(config)
    ) as stream:
        for chunk in stream:
            ids.add(chunk.id)
            for choice in chunk.choices:
                pieces.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
    assert "".join(pieces) == ANSWER
    assert finish == "stop"
    assert len(ids) == 1
    assert all(mock.hits() == 1 for mock in mocks.values())
    route = stream.response.headers["x-relaygate-route"]
    assert route == "config.targets[0]:200"  # the header left with the first chunk
