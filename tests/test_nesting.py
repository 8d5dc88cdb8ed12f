"""The iterative JSON depth measure (relaygate.nesting) used on bodies, metadata and configs."""

from __future__ import annotations

from typing import Any

import pytest

from relaygate.nesting import may_be_too_deep, too_deep


def nested_dicts(levels: int) -> Any:
    """``{"a": {"a": ... 1}}`` with ``levels`` objects."""
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


def nested_lists(levels: int) -> Any:
    """``[[... 1]]`` with ``levels`` lists."""
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [
        (1, 0, None),
        ("text", 1, None),
        ({}, 1, None),
        ({}, 0, ()),
        ([1, 2, 3], 1, None),
        ({"a": [1]}, 2, None),
        ({"a": [1]}, 1, ("a",)),
        ({"a": 1, "b": {"c": [{}]}}, 3, ("b", "c", 0)),
        ([{"x": 1}, [[[]]]], 3, (1, 0, 0)),
        (nested_dicts(100), 100, None),
        (nested_dicts(101), 100, ("a",) * 100),
        (nested_lists(101), 100, (0,) * 100),
    ],
    ids=[
        "scalar",
        "string",
        "empty-object-fits",
        "empty-object-past-zero",
        "flat-list",
        "exactly-at-limit",
        "one-past-limit",
        "deep-branch-found-beside-a-shallow-one",
        "list-indexes-in-the-path",
        "objects-at-limit",
        "objects-one-past-limit",
        "lists-one-past-limit",
    ],
)
def test_too_deep_names_the_first_container_past_the_limit(
    value: Any, limit: int, expected: Any
) -> None:
    assert too_deep(value, limit) == expected


def test_too_deep_measures_depths_recursion_cannot_reach() -> None:
    """Fifty thousand levels would overflow any recursive walk; the measure answers."""
    assert too_deep(nested_lists(50_000), 100) == (0,) * 100
    assert too_deep(nested_lists(50_000), 60_000) is None


@pytest.mark.parametrize(
    ("raw", "limit", "expected"),
    [
        (b'{"a": [1, 2]}', 2, False),
        (b'{"a": [1, {"b": 2}]}', 2, True),
        ('{"a": "[[[[["}', 2, True),
        ("[]", 1, False),
    ],
)
def test_bracket_count_prefilter_never_clears_a_document_that_could_be_too_deep(
    raw: bytes | str, limit: int, expected: bool
) -> None:
    assert may_be_too_deep(raw, limit) is expected
