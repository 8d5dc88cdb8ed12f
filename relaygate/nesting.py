"""How deep a decoded JSON value nests, measured without recursion.

Recursive code over untrusted JSON (``copy.deepcopy``, pydantic, ``orjson.dumps`` with its
255-level limit, the condition evaluator) fails with ``RecursionError`` or an encoder error on
a deep enough document. Request bodies, ``x-portkey-metadata`` and every routing config are
measured here first, iteratively, and refused when they nest deeper than their bound.
"""

from __future__ import annotations

from typing import Any

Path = tuple[str | int, ...]
"""Keys and list indexes from the root of a document to one of its values."""


def too_deep(value: Any, max_depth: int) -> Path | None:
    """The path of a container nested deeper than ``max_depth``, or ``None`` if none is.

    Depth counts containers (``dict``, ``list``, ``tuple``): a scalar has depth 0, ``{}`` and
    ``[1]`` depth 1, ``{"a": [1]}`` depth 2. The walk uses an explicit stack, so any depth is
    measured safely; it stops at the first container past the bound.
    """
    if not isinstance(value, dict | list | tuple):
        return None
    stack: list[tuple[Any, int, Path]] = [(value, 1, ())]
    while stack:
        node, depth, path = stack.pop()
        if depth > max_depth:
            return path
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in items:
            if isinstance(child, dict | list | tuple):
                stack.append((child, depth + 1, (*path, key)))
    return None


def may_be_too_deep(raw: bytes | str, max_depth: int) -> bool:
    """Whether the JSON text ``raw`` can nest deeper than ``max_depth`` at all.

    A document with at most ``max_depth`` opening brackets cannot, so most request bodies
    skip the walk of :func:`too_deep` after two ``count`` calls.
    """
    if isinstance(raw, str):
        return raw.count("{") + raw.count("[") > max_depth
    return raw.count(b"{") + raw.count(b"[") > max_depth
