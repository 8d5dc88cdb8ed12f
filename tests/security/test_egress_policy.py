"""The egress policy: which caller-supplied destinations are refused, and why."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from relaygate.security.egress import (
    ALLOW_PRIVATE_HINT,
    EgressDenied,
    EgressPolicy,
    GuardedResolver,
)

DEFAULT = EgressPolicy()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:18101/v1",
        "http://127.1.2.3/v1",
        "http://10.0.0.5/v1",
        "http://172.16.0.1/v1",
        "http://192.168.1.1/v1",
        "http://169.254.169.254/latest",
        "http://100.64.0.1/v1",
        "http://0.0.0.0:8080/v1",
        "http://[::1]:8080/v1",
        "http://[fe80::1]/v1",
        "http://[fd00:ec2::254]/v1",
        "http://[fc00::1]/v1",
        "http://[::ffff:127.0.0.1]/v1",
        "http://224.0.0.1/v1",
        "http://localhost:8000/v1",
        "http://api.localhost/v1",
    ],
)
def test_internal_destinations_are_refused_by_default(url: str) -> None:
    why = DEFAULT.check_url(url)
    assert why is not None
    assert "security.egress" in why


@pytest.mark.parametrize(
    "url",
    ["https://api.openai.com/v1", "http://8.8.8.8/v1", "https://[2606:4700::1111]/v1"],
)
def test_public_destinations_are_allowed_by_default(url: str) -> None:
    assert DEFAULT.check_url(url) is None


def test_the_refusal_names_the_line_that_allows_local_development() -> None:
    why = DEFAULT.check_url("http://127.0.0.1:9/v1")
    assert why is not None and ALLOW_PRIVATE_HINT in why
    assert EgressPolicy(allow_private=True).check_url("http://127.0.0.1:9/v1") is None


def test_an_allow_list_admits_only_listed_hosts_patterns_and_networks() -> None:
    policy = EgressPolicy.from_entries(["api.example.com", "*.corp.example", "10.1.0.0/16"])
    assert policy.check_url("https://api.example.com/v1") is None
    assert policy.check_url("https://eu.corp.example/v1") is None
    assert policy.check_url("http://10.1.2.3/v1") is None  # listed: private but allowed
    assert policy.check_url("https://other.example.com/v1") is not None
    assert policy.check_url("https://corp.example.evil.com/v1") is not None
    assert policy.check_url("http://10.2.0.1/v1") is not None
    assert policy.check_url("http://8.8.8.8/v1") is not None


def test_schemes_and_ports_can_be_restricted() -> None:
    policy = EgressPolicy.from_entries(schemes=["https"], ports=[443])
    assert policy.check_url("https://api.example.com/v1") is None
    assert policy.check_url("http://api.example.com/v1") is not None
    assert policy.check_url("https://api.example.com:8443/v1") is not None


@pytest.mark.parametrize("entry", ["*", "a*.example.com", "http://x/y", ""])
def test_malformed_allow_list_entries_are_refused(entry: str) -> None:
    with pytest.raises(ValueError):
        EgressPolicy.from_entries([entry])


def test_resolved_addresses_are_filtered_and_all_internal_is_refused() -> None:
    assert DEFAULT.filter_resolved("mixed.test", ["10.0.0.1", "8.8.8.8"]) == ["8.8.8.8"]
    with pytest.raises(EgressDenied, match="internal address"):
        DEFAULT.filter_resolved("rebind.test", ["127.0.0.1"])


class FakeResolver:
    """Resolves every name to the addresses it was given (a rebinding DNS server)."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> list[Any]:
        return [
            {"hostname": host, "host": a, "port": port, "family": family, "proto": 0, "flags": 0}
            for a in self.addresses
        ]

    async def close(self) -> None:
        return None


async def test_the_guarded_resolver_drops_internal_answers_of_a_public_looking_name() -> None:
    guarded = GuardedResolver(DEFAULT, FakeResolver("169.254.169.254"))
    with pytest.raises(EgressDenied):
        await guarded.resolve("metadata.example.com", 80)
    mixed = GuardedResolver(DEFAULT, FakeResolver("127.0.0.1", "93.184.216.34"))
    hosts = [entry["host"] for entry in await mixed.resolve("example.com", 80)]
    assert hosts == ["93.184.216.34"]
