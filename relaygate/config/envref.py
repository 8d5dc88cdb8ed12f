"""``${VAR}`` references in config values, resolved from the environment at load time.

Syntax, inside any string value (dict keys are left alone):

* ``${NAME}`` — the value of ``NAME``; an error if it is not set.
* ``${NAME:-default}`` — the value of ``NAME``, or ``default`` when it is unset or empty
  (the shell's ``:-`` rule). The default runs up to the first ``}``.
* ``$${`` — a literal ``${``.

Any other ``${`` is an error, so a typo never silently ends up in a credential or URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from relaygate.config.errors import ROOT, ConfigError

_REF = re.compile(
    r"(?P<escape>\$\$\{)"
    r"|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}"
    r"|(?P<bad>\$\{)"
)


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _expand_str(text: str, env: Mapping[str, str], path: str, errors: list[tuple[str, str]]) -> str:
    if "${" not in text:
        return text

    def substitute(match: re.Match[str]) -> str:
        if match["escape"] is not None:
            return "${"
        if match["bad"] is not None:
            errors.append(
                (path or ROOT, "malformed environment reference (write $${ for a literal ${)")
            )
            return match[0]
        name = match["name"]
        value = env.get(name)
        default = match["default"]
        if default is not None:
            return value if value else default
        if value is None:
            errors.append((path or ROOT, f"environment variable {name} is not set"))
            return match[0]
        return value

    return _REF.sub(substitute, text)


def expand_env_collect(
    value: Any, env: Mapping[str, str], path: str, errors: list[tuple[str, str]]
) -> Any:
    """Like :func:`expand_env`, but append problems to ``errors`` instead of raising.

    A string with an unresolved reference is returned with that reference left in place.
    """
    if isinstance(value, str):
        return _expand_str(value, env, path, errors)
    if isinstance(value, Mapping):
        return {
            k: expand_env_collect(v, env, _child(path, str(k)), errors) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [expand_env_collect(v, env, _child(path, i), errors) for i, v in enumerate(value)]
    return value


def expand_env(value: Any, env: Mapping[str, str], path: str = "") -> Any:
    """Resolve every ``${VAR}`` reference in the strings of ``value``, walking dicts and lists.

    Returns a new structure (lists for tuples). ``path`` names ``value`` in error messages.
    Raises :class:`ConfigError` listing every unset variable and malformed reference.
    """
    errors: list[tuple[str, str]] = []
    result = expand_env_collect(value, env, path, errors)
    if errors:
        raise ConfigError(dict.fromkeys(errors))
    return result
