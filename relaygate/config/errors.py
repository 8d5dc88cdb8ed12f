"""Config errors: every problem found in a config, each with the path of the field at fault.

A :class:`ConfigError` carries ``(path, message)`` pairs, so the gateway can answer a bad
``x-portkey-config`` header with all problems at once and ``relaygate validate`` can print
them line by line. Messages never echo input values: a misplaced credential must not end up
in a response body or a log line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

Loc = tuple[str | int, ...]
"""A field location: keys and list indexes from the document root, e.g. ``("targets", 1)``."""

ROOT = "(root)"
"""The path written for a problem with the document as a whole."""

UNSUPPORTED_FIELDS: frozenset[str] = frozenset(
    {
        "virtual_key",
        "virtualKey",
        "before_request_hooks",
        "beforeRequestHooks",
        "after_request_hooks",
        "afterRequestHooks",
        "input_guardrails",
        "inputGuardrails",
        "output_guardrails",
        "outputGuardrails",
        "guardrails",
    }
)
"""Portkey config fields that relaygate rejects explicitly instead of as unknown fields."""

UNKNOWN_FIELD = "unknown field"
NOT_SUPPORTED = "not supported by relaygate"

_MAX_SEGMENT = 64


class ConfigError(ValueError):
    """One or more problems in a config, each as ``(path, message)``.

    ``str(error)`` is one ``"<path>: <message>"`` line per problem. Paths are relative to the
    document being validated (``targets[1].retry.attempts``); :data:`ROOT` stands for the
    document itself.
    """

    def __init__(self, errors: Iterable[tuple[str, str]]) -> None:
        self.errors: list[tuple[str, str]] = list(errors)
        super().__init__("\n".join(f"{path}: {message}" for path, message in self.errors))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.errors,))

    def prefixed(self, prefix: str) -> ConfigError:
        """The same problems with every path moved under ``prefix`` (e.g. ``configs.prod``)."""
        return ConfigError((join_path(prefix, path), message) for path, message in self.errors)


def join_path(prefix: str, path: str) -> str:
    """``prefix`` + ``path``, where either may be :data:`ROOT` or empty."""
    if not prefix or prefix == ROOT:
        return path or ROOT
    if not path or path == ROOT:
        return prefix
    if path.startswith("["):
        return prefix + path
    return f"{prefix}.{path}"


def format_loc(loc: Sequence[str | int]) -> str:
    """Render a location as ``targets[1].retry.attempts``; the empty location is :data:`ROOT`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if len(part) <= _MAX_SEGMENT else part[: _MAX_SEGMENT - 1] + "…"
            out = f"{out}.{text}" if out else text
    return out or ROOT


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _message(error: Any) -> str:
    """A short message for one pydantic error, built without the offending input value."""
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    loc = error["loc"]
    match kind:
        case "missing":
            return "required"
        case "extra_forbidden":
            key = loc[-1] if loc else ""
            return NOT_SUPPORTED if key in UNSUPPORTED_FIELDS else UNKNOWN_FIELD
        case "int_type" | "int_parsing" | "int_from_float" | "int_parsing_size":
            return "must be an integer"
        case "float_type" | "float_parsing":
            return "must be a number"
        case "finite_number":
            return "must be a finite number"
        case "bool_type" | "bool_parsing":
            return "must be true or false"
        case "string_type" | "string_unicode":
            return "must be a string"
        case "list_type" | "tuple_type" | "set_type":
            return "must be a list"
        case "dict_type" | "model_type" | "model_attributes_type" | "mapping_type":
            return "must be an object"
        case "greater_than_equal":
            return f"must be >= {ctx.get('ge')}"
        case "greater_than":
            return f"must be > {ctx.get('gt')}"
        case "less_than_equal":
            return f"must be <= {ctx.get('le')}"
        case "less_than":
            return f"must be < {ctx.get('lt')}"
        case "string_too_short" | "too_short":
            n = int(ctx.get("min_length", 1))
            if n <= 1:
                return "must not be empty"
            unit = "character" if kind == "string_too_short" else "item"
            return f"must have at least {_plural(n, unit)}"
        case "string_too_long" | "too_long":
            n = int(ctx.get("max_length", 0))
            unit = "character" if kind == "string_too_long" else "item"
            return f"must have at most {_plural(n, unit)}"
        case "literal_error" | "enum":
            return f"must be one of {ctx.get('expected')}"
        case "value_error":
            msg = str(error["msg"])
            return msg.removeprefix("Value error, ")
        case _:
            return str(error["msg"])


def issues_from_validation_error(exc: ValidationError, prefix: Loc = ()) -> list[tuple[Loc, str]]:
    """Convert pydantic's errors into ``(location, message)`` pairs, input values dropped.

    A ``[key]`` location segment (pydantic's marker for a bad mapping key) is folded into the
    message instead of the path.
    """
    issues: list[tuple[Loc, str]] = []
    for error in exc.errors(include_url=False, include_input=False):
        loc: Loc = tuple(error["loc"])
        message = _message(error)
        if loc and loc[-1] == "[key]":
            loc = loc[:-2]
            message = f"keys {message}"
        issues.append((prefix + loc, message))
    return issues


_PATH_TOKEN = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def path_sort_key(path: str) -> tuple[tuple[int, int, str], ...]:
    """Order paths as in the document tree, with list indexes compared as numbers."""
    return tuple(
        (0, int(index), "") if index else (1, 0, name) for index, name in _PATH_TOKEN.findall(path)
    )


def sorted_errors(errors: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``errors`` without duplicates, ordered by path (stable for equal paths)."""
    return sorted(dict.fromkeys(errors), key=lambda error: path_sort_key(error[0]))


def error_from_issues(issues: Iterable[tuple[Loc, str]]) -> ConfigError:
    """A :class:`ConfigError` from located issues: duplicates removed, ordered by path."""
    return ConfigError(sorted_errors((format_loc(loc), message) for loc, message in issues))
