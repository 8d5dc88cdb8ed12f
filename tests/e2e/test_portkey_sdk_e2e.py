"""End to end through the official Portkey SDK (``portkey-ai``) pointed at a real
``relaygate serve`` process, with real fault-simulator upstreams on loopback.

The Portkey SDK sends its config as ``x-portkey-config`` (a JSON object or a config id), its
own key as ``x-portkey-api-key``, and ``Authorization: Bearer OPENAI_API_KEY`` as a
placeholder when no provider key is given; relaygate must treat that placeholder as no key.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from portkey_ai import Portkey
from portkey_ai._vendor import openai as portkey_openai

from tests.e2e.helpers_e2e import (
    MESSAGES,
    Mocks,
    answer_of,
    chunk_text,
    server_config,
)
from tests.servers import RunningServer, running_gateway

PLACEHOLDER_KEY = "OPENAI_API_KEY"
PORTKEY_KEY = "pk-test"


def _fallback(mocks: Mocks, **first: Any) -> dict[str, Any]:
    """A fallback config over alpha then beta; ``first`` adds fields to alpha's target."""
    return {
        "strategy": {"mode": "fallback"},
        "targets": [mocks["alpha"].target(**first), mocks["beta"].target()],
    }


@pytest.fixture(scope="module")
def gateway(mocks: Mocks, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The relaygate process serving this module's named configs."""
    alpha, beta = mocks["alpha"], mocks["beta"]
    configs = {
        "pk-fallback": _fallback(mocks),
        "pk-exhaust": {
            "strategy": {"mode": "fallback"},
            "targets": [
                alpha.target(retry={"attempts": 2}),
                beta.target(retry={"attempts": 1}),
            ],
        },
        "pk-keyless": {"provider": "openai", "custom_host": alpha.base_url},
    }
    with running_gateway(tmp_path_factory.mktemp("gateway"), server_config(configs)) as server:
        yield server


def portkey(gateway: RunningServer, **options: Any) -> Portkey:
    """A Portkey SDK client of the gateway; ``options`` are Portkey constructor options."""
    return Portkey(base_url=f"{gateway.url}/v1", api_key=PORTKEY_KEY, **options)


def complete(client: Portkey) -> tuple[str, dict[str, str]]:
    """One non-streamed chat completion: the answer text and the Portkey response headers.

    Header names are as the Portkey SDK reports them (``x-portkey-`` removed).
    """
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert not isinstance(answer, Iterator)
    assert answer.choices
    message = answer.choices[0].message
    text = message.content if message else None
    assert isinstance(text, str), text
    return text, answer.get_headers() or {}


def test_an_inline_dict_config_falls_back_after_a_503(gateway: RunningServer, mocks: Mocks) -> None:
    mocks["alpha"].script("503")
    text, headers = complete(portkey(gateway, config=_fallback(mocks)))
    assert text == answer_of("beta")
    assert headers["last-used-option-index"] == "config.targets[1]"
    assert (mocks["alpha"].hits(), mocks["beta"].hits()) == (1, 1)


def test_a_named_config_id_is_used(gateway: RunningServer, mocks: Mocks) -> None:
    mocks["alpha"].script("503")
    text, headers = complete(portkey(gateway, config="pk-fallback"))
    assert text == answer_of("beta")
    assert headers["last-used-option-index"] == "config.targets[1]"
    (forwarded,) = mocks["beta"].requests()
    assert forwarded["headers"]["authorization"] == "Bearer sk-beta"


def test_the_sdks_placeholder_key_never_reaches_the_upstream_in_a_config_less_call(
    gateway: RunningServer, mocks: Mocks
) -> None:
    client = portkey(gateway, provider="openai", custom_host=mocks["alpha"].base_url)
    text, _ = complete(client)
    assert text == answer_of("alpha")
    (forwarded,) = mocks["alpha"].requests()
    assert "authorization" not in forwarded["headers"]
    assert not any(PLACEHOLDER_KEY in value for value in forwarded["headers"].values())
    assert not any(PORTKEY_KEY in value for value in forwarded["headers"].values())


def test_the_sdks_placeholder_key_never_reaches_the_upstream_of_a_keyless_target(
    gateway: RunningServer, mocks: Mocks
) -> None:
    text, _ = complete(portkey(gateway, config="pk-keyless"))
    assert text == answer_of("alpha")
    (forwarded,) = mocks["alpha"].requests()
    assert not any(PLACEHOLDER_KEY in value for value in forwarded["headers"].values())
    assert not any(PORTKEY_KEY in value for value in forwarded["headers"].values())


def test_the_trace_id_given_to_the_sdk_comes_back_in_the_response(
    gateway: RunningServer,
) -> None:
    _, headers = complete(portkey(gateway, config="pk-fallback", trace_id="trace-e2e-42"))
    assert headers["trace-id"] == "trace-e2e-42"


def test_a_streamed_completion_falls_back_and_delivers_every_chunk(
    gateway: RunningServer, mocks: Mocks
) -> None:
    mocks["alpha"].script("503")
    client = portkey(gateway, config=_fallback(mocks))
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert isinstance(stream, Iterator)
    assert chunk_text(stream) == answer_of("beta")
    assert (mocks["alpha"].hits(), mocks["beta"].hits()) == (1, 1)


def test_an_exhausted_503_is_not_retried_again_by_the_sdk(
    gateway: RunningServer, mocks: Mocks
) -> None:
    mocks["alpha"].script("503", loop=True)
    mocks["beta"].script("503", loop=True)
    with pytest.raises(portkey_openai.InternalServerError) as caught:
        complete(portkey(gateway, config="pk-exhaust"))
    assert caught.value.status_code == 503
    assert caught.value.response.headers["x-portkey-trace-id"]
    # The config asks for 1 + 2 calls on alpha and 1 + 1 on beta; nothing more.
    assert (mocks["alpha"].hits(), mocks["beta"].hits()) == (3, 2)
