"""A config from Portkey's documentation, exactly as README.md shows it, works unchanged:
sent in ``x-portkey-config`` through the openai SDK, its requests are spread over its keys."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import httpx
import openai
import pytest

import relaygate
from relaygate.gateway import GatewayDeps
from tests.conftest import MockFactory
from tests.test_docs_examples import REPO, blocks

NAME = "portkey-loadbalance.json"


def documented_config() -> str:
    """The README's block written to ``portkey-loadbalance.json``, as written."""
    found = [b.text for b in blocks(REPO / "README.md") if b.attrs.get("file") == NAME]
    assert len(found) == 1, f"README.md has one ```json file={NAME} block"
    return found[0]


def test_the_documented_config_is_portkeys_loadbalance_over_three_keys() -> None:
    config = json.loads(documented_config())
    assert config["strategy"] == {"mode": "loadbalance"}
    assert [t["api_key"] for t in config["targets"]] == ["sk-1", "sk-2", "sk-3"]


async def test_the_documented_config_spreads_requests_over_its_keys_unchanged(
    mock_upstream: MockFactory,
) -> None:
    upstream = mock_upstream(name="openai")
    picks = itertools.cycle([0.1, 0.5, 0.9])  # one draw per request: each third in turn
    transport = relaygate.AsyncTransport(
        {"security": {"egress": {"allow_private": True}}},
        GatewayDeps(rand=lambda: next(picks)),
    )
    header_config = " ".join(documented_config().split())  # one header line, same JSON
    async with httpx.AsyncClient(transport=transport) as http:
        client = openai.AsyncOpenAI(
            base_url="http://relaygate/v1",
            api_key="unused",
            http_client=http,
            default_headers={
                "x-portkey-config": header_config,
                "x-portkey-custom-host": f"{upstream.url}/v1",
            },
        )
        for _ in range(6):
            reply = await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
            assert reply.choices[0].message.content == "Hello from openai"
    async with httpx.AsyncClient() as plain:
        seen = (await plain.get(f"{upstream.url}/_mock/requests")).json()
    keys = Counter(r["headers"]["authorization"] for r in _recorded(seen))
    assert keys == {"Bearer sk-1": 2, "Bearer sk-2": 2, "Bearer sk-3": 2}


def _recorded(payload: object) -> list[dict[str, dict[str, str]]]:
    if isinstance(payload, dict):
        payload = payload.get("requests", payload)
    assert isinstance(payload, list)
    return payload


@pytest.mark.parametrize("slug", ["@openai-prod"])
def test_a_portkey_provider_slug_is_refused_saying_what_to_write_instead(slug: str) -> None:
    from relaygate.config.compile import provider_issue
    from relaygate.config.model import Target

    issue = provider_issue(Target(provider=slug, path="config"), frozenset({"openai"}))
    assert issue is not None and "Portkey provider slug" in issue and "api_key" in issue
