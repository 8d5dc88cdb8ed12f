"""Gateway keys: stored as hashes in the server config, each optionally scoped.

A key is a random token (``rg-`` + 43 URL-safe characters, 256 bits) shown once by
``relaygate keys create``; the server config keeps only ``sha256:<hex>`` of it. A
high-entropy token needs no slow password hash: a SHA-256 digest cannot be reversed to it.
Lookup is one digest and one dict access per request.

A :class:`KeyScope` says what a key may do; ``None`` in a field means no restriction.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # imported for annotations only: strategies imports config, which imports this
    from relaygate.strategies.ratelimit import RateLimits

HASH_PREFIX: Final = "sha256:"
"""How a stored key hash starts."""

KEY_PREFIX: Final = "rg-"
"""How a generated gateway key starts (so it is recognisable in a secret scanner)."""


def hash_key(key: str) -> str:
    """``sha256:<hex digest>`` of ``key``: what the server config stores."""
    return HASH_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random gateway key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class KeyScope:
    """What one gateway key may do.

    ``configs``: named config ids it may select (``None``: any). ``inline_configs``: whether
    it may send a JSON config in ``x-portkey-config`` or make config-less
    ``x-portkey-provider`` calls. ``custom_hosts``: whether it may choose a base URL
    (``custom_host`` in its config, ``x-portkey-custom-host``). ``providers`` and ``models``:
    what every target it reaches may call (``None``: any). ``limits``: its rate limits and
    spend budget (``None``: none).
    """

    name: str
    configs: frozenset[str] | None = None
    inline_configs: bool = True
    custom_hosts: bool = True
    providers: frozenset[str] | None = None
    models: frozenset[str] | None = None
    limits: RateLimits | None = None


UNSCOPED: Final = KeyScope(name="unscoped")
"""The scope of a plain ``auth.api_keys`` entry, and of every caller when auth is off."""


class KeyStore:
    """Finds the scope of a presented key by its digest."""

    def __init__(self, scopes: Mapping[str, KeyScope]) -> None:
        self._by_digest = {digest.removeprefix(HASH_PREFIX): s for digest, s in scopes.items()}

    @classmethod
    def build(cls, plain: Iterable[str], hashed: Mapping[str, KeyScope]) -> KeyStore:
        """A store of ``plain`` keys (unscoped) and ``hashed`` entries (digest to scope)."""
        scopes = {hash_key(k): UNSCOPED for k in plain}
        scopes.update(hashed)
        return cls(scopes)

    def __bool__(self) -> bool:
        return bool(self._by_digest)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.lookup(key) is not None

    def lookup(self, key: str) -> KeyScope | None:
        """The scope of ``key``, or ``None`` when it is not a gateway key."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self._by_digest.get(digest)
