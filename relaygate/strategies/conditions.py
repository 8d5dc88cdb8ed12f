"""Portkey conditional-routing queries: evaluation against a request, and load-time checks.

A query is a mapping from dotted paths (``metadata.user_plan``, ``params.model``,
``params.messages.0.role``) or logical operators (``$and``, ``$or``) to conditions. A
condition is a literal (shorthand for ``$eq``) or an object of comparison operators. All keys
of a query, and all operators of a condition, must hold. Evaluation never raises: anything
malformed or incomparable simply does not match, and :func:`validate_query` reports the
malformed parts once, when the config is loaded.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

COMPARISON_OPERATORS: Final = frozenset(
    {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$regex"}
)
"""Operators allowed inside a path's condition object."""

LOGICAL_OPERATORS: Final = frozenset({"$and", "$or"})
"""Operators allowed as query keys; each takes a list of sub-queries."""

PATH_ROOTS: Final = ("metadata.", "params.")
"""The prefixes a query path must start with."""


class _Missing:
    """Sentinel for a path that does not resolve in the document."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str] | None:
    """The compiled ``pattern``, or ``None`` if it is not a valid Python regex."""
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError):
        return None


def resolve(doc: Any, path: str) -> Any:
    """The value at dotted ``path`` in ``doc``, or :data:`MISSING`.

    Each part looks up a mapping key; on a list (or tuple), a part made of digits is an index.
    """
    current = doc
    for part in path.split("."):
        if isinstance(current, Mapping):
            if part not in current:
                return MISSING
            current = current[part]
        elif isinstance(current, list | tuple) and part.isdigit():
            index = int(part)
            if index >= len(current):
                return MISSING
            current = current[index]
        else:
            return MISSING
    return current


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(a: Any, b: Any) -> bool:
    """JSON equality where booleans never equal numbers (``True != 1``), recursively."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if _is_number(a) or _is_number(b):
        return _is_number(a) and _is_number(b) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    return a is None and b is None


def _ordered(value: Any, operand: Any, compare: Callable[[Any, Any], bool]) -> bool:
    """``compare(value, operand)`` for two numbers or two strings; ``False`` otherwise."""
    if _is_number(value) and _is_number(operand):
        if math.isnan(value) or math.isnan(operand):
            return False
        return compare(value, operand)
    if isinstance(value, str) and isinstance(operand, str):
        return compare(value, operand)
    return False


def _contains(operand: Any, value: Any) -> bool:
    return any(_equal(value, item) for item in operand)


def _operator(op: str, operand: Any, value: Any) -> bool:
    """Whether ``value`` (possibly :data:`MISSING`) satisfies ``{op: operand}``."""
    missing = value is MISSING
    if op == "$eq":
        return not missing and _equal(value, operand)
    if op == "$ne":
        return missing or not _equal(value, operand)
    if op in ("$in", "$nin"):
        if not isinstance(operand, list | tuple):
            return False
        if missing:
            return op == "$nin"
        return _contains(operand, value) == (op == "$in")
    if op == "$regex":
        if missing or not isinstance(value, str) or not isinstance(operand, str):
            return False
        compiled = _compile(operand)
        return compiled is not None and compiled.search(value) is not None
    if missing:
        return False
    if op == "$gt":
        return _ordered(value, operand, lambda a, b: a > b)
    if op == "$gte":
        return _ordered(value, operand, lambda a, b: a >= b)
    if op == "$lt":
        return _ordered(value, operand, lambda a, b: a < b)
    if op == "$lte":
        return _ordered(value, operand, lambda a, b: a <= b)
    return False


def _is_operator_object(condition: Any) -> bool:
    """A condition object of operators: a mapping with at least one ``$`` key."""
    return isinstance(condition, Mapping) and any(
        isinstance(key, str) and key.startswith("$") for key in condition
    )


def _condition(condition: Any, value: Any) -> bool:
    if not _is_operator_object(condition):
        return value is not MISSING and _equal(value, condition)
    return all(
        isinstance(op, str) and _operator(op, operand, value) for op, operand in condition.items()
    )


def matches(query: Mapping[str, Any], doc: Mapping[str, Any]) -> bool:
    """Whether the conditional-routing ``query`` holds for ``doc``.

    ``doc`` is ``{"metadata": {...}, "params": {...}}``. Every key of ``query`` must hold:

    * ``$and`` / ``$or``: a list of sub-queries, all / any of which must match (an empty
      ``$and`` matches, an empty ``$or`` does not; a non-list never matches).
    * a dotted path: resolved with :func:`resolve`; its condition is a literal (``$eq``
      shorthand) or an object of operators ``$eq $ne $gt $gte $lt $lte $in $nin $regex``,
      all of which must hold.

    Equality is JSON equality in which booleans are not numbers (``True`` never equals
    ``1``). Ordering operators compare two numbers or two strings; any other pair does not
    match. ``$regex`` is :func:`re.search` on a string value; an invalid pattern does not
    match. On a missing path only ``$ne`` and ``$nin`` match. An unknown operator does not
    match. An empty query matches everything.
    """
    if not isinstance(query, Mapping):
        return False
    return all(_key_holds(key, condition, doc) for key, condition in query.items())


def _key_holds(key: Any, condition: Any, doc: Mapping[str, Any]) -> bool:
    """Whether one ``key: condition`` entry of a query holds for ``doc``."""
    if key in LOGICAL_OPERATORS:
        if not isinstance(condition, list | tuple):
            return False
        results = (isinstance(sub, Mapping) and matches(sub, doc) for sub in condition)
        return all(results) if key == "$and" else any(results)
    if not isinstance(key, str) or key.startswith("$"):
        return False
    return _condition(condition, resolve(doc, key))


def _validate_condition(condition: Any, path: str) -> list[tuple[str, str]]:
    if not _is_operator_object(condition):
        return []
    errors: list[tuple[str, str]] = []
    for op, operand in condition.items():
        here = f"{path}.{op}"
        if not isinstance(op, str) or not op.startswith("$"):
            errors.append((here, "cannot mix field names with operators in a condition"))
        elif op not in COMPARISON_OPERATORS:
            allowed = ", ".join(sorted(COMPARISON_OPERATORS))
            errors.append((here, f"unknown operator {op!r} (allowed: {allowed})"))
        elif op in ("$in", "$nin") and not isinstance(operand, list | tuple):
            errors.append((here, f"{op} takes a list"))
        elif op == "$regex":
            if not isinstance(operand, str):
                errors.append((here, "$regex takes a string"))
            elif _compile(operand) is None:
                errors.append((here, "$regex is not a valid regular expression"))
    return errors


def validate_query(query: Any, path: str) -> list[tuple[str, str]]:
    """Static errors in a conditional-routing query, as ``(path, message)`` pairs.

    ``path`` locates ``query`` in the config (e.g. ``strategy.conditions[0].query``); error
    paths extend it with ``.<key>``, ``.<key>.<operator>`` and ``.$and[i]``. Reported: a
    query that is not an object, keys that are neither ``$and``/``$or`` nor start with
    ``metadata.``/``params.``, ``$and``/``$or`` not a list (or holding a non-object), unknown
    operators, ``$in``/``$nin`` not a list, ``$regex`` not a string or not compiling, and
    field names mixed with operators in one condition. An empty list means valid.
    """
    if not isinstance(query, Mapping):
        return [(path, "a condition query must be an object")]
    errors: list[tuple[str, str]] = []
    for key, condition in query.items():
        here = f"{path}.{key}"
        if not isinstance(key, str):
            errors.append((path, f"query key {key!r} is not a string"))
        elif key in LOGICAL_OPERATORS:
            if not isinstance(condition, list | tuple):
                errors.append((here, f"{key} takes a list of queries"))
                continue
            for i, sub in enumerate(condition):
                errors.extend(validate_query(sub, f"{here}[{i}]"))
        elif key.startswith("$"):
            errors.append((here, f"unknown logical operator {key!r} (allowed: $and, $or)"))
        elif not key.startswith(PATH_ROOTS) or key in PATH_ROOTS:
            errors.append((here, "a query path must start with 'metadata.' or 'params.'"))
        else:
            errors.extend(_validate_condition(condition, here))
    return errors
