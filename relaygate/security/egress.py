"""Egress policy: where a caller-supplied base URL may send traffic (server-side request forgery).

A base URL written by the operator (the server config, a provider's built-in URL) is trusted.
One chosen by a caller (``custom_host`` in an ``x-portkey-config`` JSON config,
``x-portkey-custom-host``, an Azure ``resource_name`` in a header config) is checked twice:

* when the config is resolved, :meth:`EgressPolicy.check_url` checks the scheme, port, host
  pattern and, for a literal IP address, the address itself;
* at connect time, :class:`GuardedResolver` (relaygate's aiohttp client) checks every address
  the host name resolves to, so a name that later resolves to a private address (DNS
  rebinding) is refused too. Redirects are never followed.

By default any public destination is allowed and private, loopback, link-local (cloud
metadata ``169.254.169.254`` included), carrier-grade NAT, multicast, reserved and
unspecified addresses are not. ``allow_private: true`` lifts that for local development;
``allow_hosts`` restricts callers to listed host names, ``*.suffix`` patterns, IP addresses
and CIDR networks (a listed entry also permits private addresses it names).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_PRIVATE_HINT = "security.egress.allow_private: true"
"""The server-config line that allows private destinations, quoted in refusals."""

_EXTRA_BLOCKED: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("100.64.0.0/10"),  # carrier-grade NAT (not flagged private everywhere)
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
)


class EgressDenied(OSError):
    """A destination refused by the egress policy; the message says why and how to allow it."""


def is_internal(address: IPAddress) -> bool:
    """Whether ``address`` is not a public unicast destination (see the module docstring)."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    if (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    ):
        return True
    return any(address in net for net in _EXTRA_BLOCKED if net.version == address.version)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


@dataclass(frozen=True)
class EgressPolicy:
    """Where caller-supplied base URLs may point (see the module docstring).

    ``schemes`` and ``ports`` (empty: any) bound the URL; ``hosts`` (empty: any) are exact
    names or ``*.suffix`` patterns; ``networks`` are IP networks (a single address is a
    /32 or /128). ``allow_private`` permits internal addresses everywhere.
    """

    allow_private: bool = False
    hosts: tuple[str, ...] = ()
    networks: tuple[IPNetwork, ...] = ()
    schemes: frozenset[str] = frozenset({"http", "https"})
    ports: frozenset[int] = frozenset()
    _exact: frozenset[str] = field(init=False, repr=False, compare=False)
    _suffixes: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        exact = {h.lower() for h in self.hosts if not h.startswith("*.")}
        suffixes = tuple(h[1:].lower() for h in self.hosts if h.startswith("*."))
        object.__setattr__(self, "_exact", frozenset(exact))
        object.__setattr__(self, "_suffixes", suffixes)

    @classmethod
    def from_entries(
        cls,
        allow_hosts: Iterable[str] = (),
        allow_private: bool = False,
        schemes: Iterable[str] = ("http", "https"),
        ports: Iterable[int] = (),
    ) -> EgressPolicy:
        """A policy from the server config's ``security.egress`` entries.

        An ``allow_hosts`` entry that parses as an IP address or network is a network;
        anything else is a host pattern. Raises :class:`ValueError` for a malformed pattern.
        """
        hosts: list[str] = []
        networks: list[IPNetwork] = []
        for entry in allow_hosts:
            text = entry.strip().lower()
            try:
                networks.append(ipaddress.ip_network(text.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = text[2:] if text.startswith("*.") else text
            if not name or "*" in name or "/" in name or ":" in name:
                raise ValueError(f"'{entry}' is not a host name, *.suffix, IP address or network")
            hosts.append(text)
        return cls(
            allow_private=allow_private,
            hosts=tuple(hosts),
            networks=tuple(networks),
            schemes=frozenset(s.lower() for s in schemes),
            ports=frozenset(ports),
        )

    @property
    def restricts_hosts(self) -> bool:
        """Whether only listed hosts and networks are allowed."""
        return bool(self.hosts or self.networks)

    def _host_listed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return host in self._exact or any(host.endswith(s) for s in self._suffixes)

    def _network_listed(self, address: IPAddress) -> bool:
        return any(address in net for net in self.networks if net.version == address.version)

    def check_url(self, url: str) -> str | None:
        """Why a caller may not use ``url`` as a base URL, or ``None`` when it may."""
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return "it is not a valid URL"
        host = parts.hostname or ""
        if parts.scheme not in self.schemes:
            return f"scheme '{parts.scheme}' is not allowed (security.egress.schemes)"
        if self.ports and port not in self.ports:
            return f"port {port} is not allowed (security.egress.ports)"
        literal = _literal(host)
        if literal is not None:
            return self.check_address(host, literal)
        if self.restricts_hosts and not self._host_listed(host):
            return f"host '{host}' is not in security.egress.allow_hosts"
        loopback_name = host == "localhost" or host.endswith(".localhost")
        if loopback_name and not (self.allow_private or self._host_listed(host)):
            return f"host '{host}' is a loopback name; allow it with {ALLOW_PRIVATE_HINT}"
        return None

    def check_address(self, host: str, address: IPAddress) -> str | None:
        """Why a connection to ``address`` (which ``host`` names) is refused, or ``None``."""
        listed = self._network_listed(address) or self._host_listed(host)
        if self.restricts_hosts and not listed:
            return f"address {address} is not in security.egress.allow_hosts"
        if is_internal(address) and not (self.allow_private or listed):
            return (
                f"'{host}' is an internal address ({address}); allow private destinations "
                f"with {ALLOW_PRIVATE_HINT}, or list it in security.egress.allow_hosts"
            )
        return None

    def filter_resolved(self, host: str, addresses: list[str]) -> list[str]:
        """The resolved ``addresses`` of ``host`` a connection may use.

        Raises :class:`EgressDenied` when none may be used.
        """
        allowed: list[str] = []
        reason = None
        for text in addresses:
            address = _literal(text)
            why = "unparseable address" if address is None else self.check_address(host, address)
            if why is None:
                allowed.append(text)
            else:
                reason = why
        if not allowed:
            raise EgressDenied(f"refused by the egress policy: {reason}")
        return allowed


DEFAULT_POLICY = EgressPolicy()
"""The default: public destinations only."""


class GuardedResolver:
    """An aiohttp resolver that drops addresses the :class:`EgressPolicy` refuses.

    Wraps aiohttp's default resolver; raises :class:`EgressDenied` (an ``OSError``, so
    aiohttp reports it as a connection error) when a name resolves only to refused
    addresses. aiohttp does not call a resolver for literal IP hosts: those are checked by
    :meth:`EgressPolicy.check_url` before the request is sent.
    """

    def __init__(self, policy: EgressPolicy, inner: Any = None) -> None:
        from aiohttp.resolver import DefaultResolver

        self._policy = policy
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[Any]:
        """The resolved entries of ``host`` whose addresses the policy allows."""
        entries = await self._inner.resolve(host, port, family)
        allowed = set(self._policy.filter_resolved(host, [e["host"] for e in entries]))
        return [e for e in entries if e["host"] in allowed]

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self._inner.close()
