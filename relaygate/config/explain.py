"""Explanations of config errors for people: one line per problem, with a hint where one
helps (a close field name for a typo, how to set an unset environment variable, what a
refused Portkey field should become).
"""

from __future__ import annotations

import difflib
from typing import Any, get_args

from pydantic import AliasChoices, BaseModel

from relaygate.config.compile import PORTKEY_KEYS
from relaygate.config.errors import NOT_SUPPORTED, UNKNOWN_FIELD, ConfigError
from relaygate.config.schema import ConfigNode
from relaygate.config.server import ServerConfig

_UNSUPPORTED_HINTS: dict[str, str] = {
    "virtual_key": "set the provider credential as `api_key` on the target (for example "
    '"${OPENAI_API_KEY}" in a server config) or under `providers.<name>.api_key`',
    "hooks": "relaygate does not run request/response hooks; remove this field",
    "guardrails": "relaygate does not run guardrails; remove this field",
}


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


def _known_field_names() -> set[str]:
    """Every field name and alias of the server config and Portkey config models."""
    names: set[str] = set()
    pending: list[type[BaseModel]] = [ServerConfig, ConfigNode]
    seen: set[type[BaseModel]] = set()
    while pending:
        model = pending.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, info in model.model_fields.items():
            names.add(name)
            if isinstance(info.validation_alias, AliasChoices):
                for choice in info.validation_alias.convert_to_aliases():
                    names.update(part for part in choice if isinstance(part, str))
            pending += _models_in(info.annotation)
    return names


def _hint(path: str, message: str) -> str | None:
    key = path.rsplit(".", 1)[-1].split("[", 1)[0]
    if message == NOT_SUPPORTED:
        if "guardrails" in key:
            return _UNSUPPORTED_HINTS["guardrails"]
        if "hooks" in key.lower():
            return _UNSUPPORTED_HINTS["hooks"]
        return _UNSUPPORTED_HINTS["virtual_key"]
    if message == UNKNOWN_FIELD:
        at_top = path == key
        if at_top and key in ServerConfig.model_fields:
            return (
                f"'{key}' is a server-config setting, but a document with "
                f"{'/'.join(PORTKEY_KEYS)} at the top is one Portkey config: put that config "
                "under `default_config:` in a server config"
            )
        if at_top and key in PORTKEY_KEYS:
            return (
                f"'{key}' belongs to a Portkey config: in a server config, put the config "
                "under `default_config:` or `configs.<id>:` (or serve it alone with "
                "`relaygate serve --portkey-config FILE`)"
            )
        names = sorted(_known_field_names() - {key})
        close = difflib.get_close_matches(key, names, n=1, cutoff=0.75)
        return f"did you mean '{close[0]}'?" if close else None
    if message.startswith("environment variable "):
        name = message.split()[2]
        return f"export {name}, or give a fallback with ${{{name}:-default}}"
    if message.startswith("no target named "):
        return "`then` and `default` refer to the `name` of a target of the same strategy node"
    if message.startswith("required (a node needs"):
        return 'a target looks like {"provider": "openai", "api_key": "..."}'
    if message.startswith("malformed environment reference"):
        return "references look like ${NAME} or ${NAME:-default}"
    return None


def explain(error: ConfigError) -> str:
    """A human explanation of ``error`` for ``relaygate validate``: one line per problem,
    each followed by an indented hint where one helps."""
    count = len(error.errors)
    lines = [f"{count} problem{'s' if count != 1 else ''} found:"]
    for path, message in error.errors:
        lines.append(f"  {path}: {message}")
        hint = _hint(path, message)
        if hint:
            lines.append(f"      hint: {hint}")
    return "\n".join(lines)
