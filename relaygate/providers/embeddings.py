"""Embedding answers in the encoding the client asked for.

The openai SDK asks for ``encoding_format: "base64"`` by default (little-endian float32) and
decodes it; the Portkey SDK passes whatever arrives to the user. Some OpenAI-compatible
providers ignore ``encoding_format`` and always answer float lists. So an answer whose
vectors are not in the requested encoding is converted, and the client always receives the
format it asked for (``float`` when it asked for none).
"""

from __future__ import annotations

import base64
import struct
from typing import Any


def encode_floats(vector: list[float]) -> str:
    """A float vector as base64 of little-endian float32 values."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def decode_floats(text: str) -> list[float]:
    """The inverse of :func:`encode_floats`."""
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def conform(payload: Any, requested: Any) -> bool:
    """Rewrite ``payload``'s embeddings in place to the ``requested`` encoding.

    Returns whether anything changed. ``requested`` other than ``"base64"`` means floats.
    Entries whose ``embedding`` is neither a float list nor a string are left alone. Raises
    :class:`ValueError` when an embedding cannot be converted (a list holding something other
    than float32-range numbers, a string that is not base64).
    """
    want_base64 = requested == "base64"
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        return False
    changed = False
    for item in data:
        if not isinstance(item, dict):
            continue
        vector = item.get("embedding")
        try:
            if want_base64 and isinstance(vector, list):
                item["embedding"] = encode_floats(vector)
                changed = True
            elif not want_base64 and isinstance(vector, str):
                item["embedding"] = decode_floats(vector)
                changed = True
        except (ValueError, struct.error, OverflowError):
            raise ValueError(
                "answered an embedding that cannot be converted to the encoding asked for"
            ) from None
    return changed
