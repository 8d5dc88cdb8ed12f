"""Portkey conditional-routing queries: evaluation against a request, and load-time checks.

A query is a mapping from dotted paths (``metadata.user_plan``, ``params.model``,
``params.messages.0.role``) or logical operators (``$and``, ``$or``) to conditions. A
condition is a literal (shorthand for ``$eq``) or an object of comparison operators. All keys
of a query, and all operators of a condition, must hold. Evaluation never raises: anything
malformed or incomparable simply does not match, and :func:`validate_query` reports the
malformed parts once, when the config is loaded.

``$regex`` runs on RE2 (the ``google-re2`` package), whose matching time is linear in the
length of the text: a caller's pattern cannot hold the event loop the way a backtracking
engine can (``^(a+)+$``). RE2 has no backreferences or lookaround; patterns using them are
refused when the config is validated.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import re2

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


MAX_REGEX_LENGTH: Final = 1000
"""Longest ``$regex`` pattern accepted, in characters."""

MAX_QUERY_NESTING: Final = 8
"""How many levels of ``$and``/``$or`` a query may nest."""

REGEX_MAX_MEM: Final = 1 << 20
"""Memory budget of one compiled pattern, in bytes (RE2's ``max_mem``; its default is 8 MiB).

A pattern whose program does not fit is refused as too complex; matching a pattern whose
lazily built DFA outgrows it falls back to RE2's slower, still linear, NFA.
"""

_REGEX_CACHE_SIZE: Final = 256
_NOT_UTF8: Final = "not representable in UTF-8"

Loc = tuple[str | int, ...]
"""A location inside a config: keys and list indexes."""


def _options() -> Any:
    options = re2.Options()
    options.max_mem = REGEX_MAX_MEM
    options.log_errors = False  # a refused pattern is reported by validate_query, not stderr
    return options


_OPTIONS: Final = _options()


def _re2_compile(pattern: str) -> tuple[Any, str | None]:
    """``(compiled, None)``, or ``(None, reason)`` when RE2 refuses ``pattern``."""
    try:
        return re2.compile(pattern, _OPTIONS), None
    except re2.error as exc:
        return None, str(exc)
    except UnicodeEncodeError:  # a lone surrogate: not representable in UTF-8
        return None, _NOT_UTF8


@functools.lru_cache(maxsize=_REGEX_CACHE_SIZE)
def _compile(pattern: str) -> Any:
    """The RE2-compiled ``pattern``, or ``None`` if RE2 cannot compile it.

    Bounded twice: at most ``_REGEX_CACHE_SIZE`` patterns are kept, each within
    :data:`REGEX_MAX_MEM`.
    """
    if len(pattern) > MAX_REGEX_LENGTH:
        return None
    return _re2_compile(pattern)[0]


def _python_accepts(pattern: str) -> bool:
    """Whether Python's ``re`` compiles ``pattern`` (compiling never runs a match)."""
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError, ValueError):
        return False
    return True


def regex_problem(pattern: str) -> str | None:
    """Why ``pattern`` cannot be a ``$regex``, or ``None`` when it can.

    Distinguishes syntax RE2 deliberately lacks (valid for Python's backtracking ``re``:
    backreferences, lookaround, ``\\Z``...) from patterns that are simply malformed or too
    large. Messages never quote the pattern.
    """
    if len(pattern) > MAX_REGEX_LENGTH:
        return f"$regex is longer than {MAX_REGEX_LENGTH} characters"
    compiled, reason = _re2_compile(pattern)
    if compiled is not None:
        return None
    if reason == _NOT_UTF8:
        return "$regex is not valid UTF-8 text"
    if reason is not None and ("too large" in reason or "repetition size" in reason):
        return (
            "$regex is too complex for the linear-time regex engine (RE2): too large, "
            "or repeating more than 1000 times in all"
        )
    if _python_accepts(pattern):
        return (
            "$regex uses syntax the linear-time regex engine (RE2) does not support, "
            "such as backreferences or lookaround (write \\z for \\Z)"
        )
    return "$regex is not a valid regular expression"


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
        if compiled is None:
            return False
        try:
            return compiled.search(value) is not None
        except UnicodeEncodeError:  # a lone surrogate in the value
            return False
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
    match. ``$regex`` is an RE2 search (unanchored, like :func:`re.search`) on a string
    value; a pattern RE2 cannot compile, or longer than :data:`MAX_REGEX_LENGTH`, does not
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


def _condition_issues(condition: Any, loc: Loc) -> list[tuple[Loc, str]]:
    if not _is_operator_object(condition):
        return []
    issues: list[tuple[Loc, str]] = []
    for op, operand in condition.items():
        here = (*loc, op)
        if not isinstance(op, str) or not op.startswith("$"):
            issues.append((here, "cannot mix field names with operators in a condition"))
        elif op not in COMPARISON_OPERATORS:
            allowed = ", ".join(sorted(COMPARISON_OPERATORS))
            issues.append((here, f"unknown operator (allowed: {allowed})"))
        elif op in ("$in", "$nin") and not isinstance(operand, list | tuple):
            issues.append((here, f"{op} takes a list"))
        elif op == "$regex":
            if not isinstance(operand, str):
                issues.append((here, "$regex takes a string"))
            else:
                problem = regex_problem(operand)
                if problem is not None:
                    issues.append((here, problem))
    return issues


def query_issues(query: Any, loc: Loc = ()) -> list[tuple[Loc, str]]:
    """Static errors in a conditional-routing query, as ``(location, message)`` pairs.

    ``loc`` locates ``query`` in the config (e.g. ``("strategy", "conditions", 0,
    "query")``); issue locations extend it with the key, the operator, and list indexes
    under ``$and``/``$or``. Reported: a query that is not an object, keys that are neither
    ``$and``/``$or`` nor start with ``metadata.``/``params.``, ``$and``/``$or`` not a list
    (or holding a non-object) or nesting more than :data:`MAX_QUERY_NESTING` levels, unknown
    operators, ``$in``/``$nin`` not a list, ``$regex`` not a string, longer than
    :data:`MAX_REGEX_LENGTH` or not compiling on RE2, and field names mixed with operators
    in one condition. The walk is iterative. An empty list means valid.
    """
    issues: list[tuple[Loc, str]] = []
    stack: list[tuple[Any, Loc, int]] = [(query, loc, 0)]
    while stack:
        current, at, level = stack.pop()
        if not isinstance(current, Mapping):
            issues.append((at, "a condition query must be an object"))
            continue
        for key, condition in current.items():
            if not isinstance(key, str):
                issues.append((at, "query keys must be strings"))
                continue
            here = (*at, key)
            if key in LOGICAL_OPERATORS:
                if not isinstance(condition, list | tuple):
                    issues.append((here, f"{key} takes a list of queries"))
                elif level >= MAX_QUERY_NESTING:
                    issues.append(
                        (here, f"$and/$or nest more than {MAX_QUERY_NESTING} levels deep")
                    )
                else:
                    stack.extend(
                        (sub, (*here, i), level + 1)
                        for i, sub in reversed(list(enumerate(condition)))
                    )
            elif key.startswith("$"):
                issues.append((here, "unknown logical operator (allowed: $and, $or)"))
            elif not key.startswith(PATH_ROOTS) or key in PATH_ROOTS:
                issues.append((here, "a query path must start with 'metadata.' or 'params.'"))
            else:
                issues.extend(_condition_issues(condition, here))
    return issues


def _render(path: str, loc: Loc) -> str:
    out = path
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def validate_query(query: Any, path: str) -> list[tuple[str, str]]:
    """:func:`query_issues` with paths rendered as text under ``path``.

    ``path`` locates ``query`` in the config (e.g. ``strategy.conditions[0].query``); error
    paths extend it with ``.<key>``, ``.<key>.<operator>`` and ``.$and[i]``. An empty list
    means valid.
    """
    return [(_render(path, loc), message) for loc, message in query_issues(query)]
