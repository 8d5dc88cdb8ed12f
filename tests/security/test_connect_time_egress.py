"""relaygate's own client checks a caller-chosen destination at connect time: a name that
resolves to an internal address (DNS rebinding) is refused before any byte is sent."""

from __future__ import annotations

import pytest

from relaygate.providers.base import UpstreamRequest
from relaygate.providers.client import AiohttpUpstream, EgressRefused
from relaygate.security.egress import EgressPolicy
from tests.security.listener import listening
from tests.security.test_egress_policy import FakeResolver

BODY = b'{"model":"m","messages":[]}'


def request(url: str, egress: EgressPolicy | None) -> UpstreamRequest:
    return UpstreamRequest(
        method="POST",
        url=url,
        headers={"content-type": "application/json", "authorization": "Bearer sk-x"},
        content=BODY,
        egress=egress,
    )


async def test_a_name_resolving_to_loopback_is_refused_and_nothing_is_sent() -> None:
    with listening() as listener:
        client = AiohttpUpstream(resolver=FakeResolver("127.0.0.1"))
        url = f"http://rebind.example.com:{listener.port}/v1/chat/completions"
        try:
            with pytest.raises(EgressRefused, match="internal address"):
                await client.send(request(url, EgressPolicy()))
            assert listener.received == []
            # The same name with private destinations allowed reaches the listener: the
            # refusal above was the policy, not a broken route.
            allowed = AiohttpUpstream(resolver=FakeResolver("127.0.0.1"))
            answer = await allowed.send(request(url, EgressPolicy(allow_private=True)))
            assert answer.status == 200
            assert len(listener.received) == 1
            await allowed.aclose()
        finally:
            await client.aclose()


async def test_a_literal_internal_address_is_refused_before_connecting() -> None:
    with listening() as listener:
        client = AiohttpUpstream()
        try:
            with pytest.raises(EgressRefused):
                await client.send(request(f"{listener.base_url}/chat/completions", EgressPolicy()))
            assert listener.received == []
        finally:
            await client.aclose()


async def test_operator_destinations_are_not_checked() -> None:
    with listening() as listener:
        client = AiohttpUpstream()
        try:
            answer = await client.send(request(f"{listener.base_url}/chat/completions", None))
            assert answer.status == 200
        finally:
            await client.aclose()
