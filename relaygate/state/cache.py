"""Response-cache keys and entries.

A cached answer is found by the exact request: the SHA-256 of the operation, the config
(its id; for a config a caller wrote, the headers that carried it), the request's
``x-portkey-metadata`` (conditional routing reads it), the partition (the
gateway key's name, or a digest of the caller's credential when gateway auth is off; one
shared partition when ``state.cache.share_across_keys``) and the request body normalised as
JSON with sorted keys and no whitespace. So two requests differing only in key order or
spacing share an entry, and nothing is shared across gateway keys unless configured.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from relaygate.config.model import RoutingConfig
from relaygate.security.keys import KeyScope
from relaygate.state.backend import CACHE_PREFIX

__all__ = ["cache_key", "decode_entry", "encode_entry"]

_CALLER_CONFIG_HEADERS = ("x-portkey-config", "x-portkey-provider", "x-portkey-custom-host")
"""Headers that choose a caller-written config: part of its cache key."""


def cache_key(
    operation: str,
    body: Mapping[str, Any],
    config: RoutingConfig,
    headers: Mapping[str, str],
    principal: KeyScope | None,
    credential: str | None,
    shared: bool,
) -> str:
    """The state key of the cached answer to this request (see the module docstring)."""
    digest = hashlib.sha256()
    # The metadata can choose the route (conditional configs), so it is part of the key.
    parts = [operation, config.id, headers.get("x-portkey-metadata", "")]
    if config.caller_supplied:
        parts += [headers.get(name, "") for name in _CALLER_CONFIG_HEADERS]
    if shared:
        parts.append("*")
    elif principal is not None:
        parts.append("key:" + principal.name)
    else:
        parts.append("cred:" + hashlib.sha256((credential or "").encode()).hexdigest())
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    digest.update(
        json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )
    return CACHE_PREFIX + digest.hexdigest()


def encode_entry(content_type: str, body: bytes) -> bytes:
    """A cached answer as stored: its content type, a newline, its body."""
    return content_type.encode("latin-1", "replace") + b"\n" + body


def decode_entry(raw: bytes) -> tuple[str, bytes] | None:
    """``(content type, body)`` of a stored entry, ``None`` when it is not one."""
    head, sep, body = raw.partition(b"\n")
    if not sep:
        return None
    return head.decode("latin-1"), body
