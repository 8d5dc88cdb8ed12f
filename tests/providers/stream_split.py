"""Checks that a stream translator's output does not depend on how the bytes were chunked."""

from __future__ import annotations

from collections.abc import Callable

from relaygate.providers.translation import EventTranslator, translate_all


def _chunked(raw: bytes, size: int) -> list[bytes]:
    return [raw[i : i + size] for i in range(0, len(raw), size)]


def assert_split_anywhere(raw: bytes, make: Callable[[], EventTranslator], expected: bytes) -> None:
    """``raw`` translated whole, cut in two at every position, and in pieces of 1 to 7
    bytes gives ``expected`` every time."""
    assert b"".join(translate_all(make(), [raw])) == expected
    for cut in range(1, len(raw)):
        out = b"".join(translate_all(make(), [raw[:cut], raw[cut:]]))
        assert out == expected, f"differs when cut at byte {cut}"
    for size in range(1, 8):
        out = b"".join(translate_all(make(), _chunked(raw, size)))
        assert out == expected, f"differs in pieces of {size} bytes"
