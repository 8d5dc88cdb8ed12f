"""The routing config under rehearsal: read from a Portkey or server config file through
the one compile path, its targets matched with a scenario's faults.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from relaygate.config import ConfigError
from relaygate.config.compile import ConfigFile, compile_file, is_portkey_config, read_config_file
from relaygate.config.model import Target
from relaygate.config.schema import ConfigNode
from relaygate.config.server import ServerConfig, load_server_config, read_document
from relaygate.providers.registry import default_registry
from relaygate.rehearse.scenario import Scenario, ScenarioError, TargetFaults

_PLACEHOLDER_PREFIX = "rehearsal-placeholder-"
_UNSET_VARIABLE = re.compile(r"environment variable (?P<name>[A-Za-z_][A-Za-z0-9_]*) is not set")


@dataclass(frozen=True)
class RehearsalConfig:
    """The routing config a rehearsal runs, with the server settings around it.

    ``node`` is the routing config as written (``custom_host`` not yet replaced), ``prefix``
    its location in the file for error paths (``""`` for a Portkey config file,
    ``configs.<id>`` or ``default_config`` in a server config). ``placeholders`` names the
    unset environment variables the rehearsal replaced with placeholder values.
    """

    source: str
    config_id: str
    node: ConfigNode
    server: ServerConfig
    targets: tuple[Target, ...]
    prefix: str = ""
    placeholders: tuple[str, ...] = ()


def _load_server(path: Path) -> tuple[ServerConfig, tuple[str, ...]]:
    """Load a server config; unset ``${VAR}`` references get placeholder values."""
    try:
        return load_server_config(path), ()
    except ConfigError as exc:
        missing = tuple(
            dict.fromkeys(
                m["name"] for _, message in exc.errors if (m := _UNSET_VARIABLE.fullmatch(message))
            )
        )
        if not missing:
            raise
        env = {**os.environ, **{name: _PLACEHOLDER_PREFIX + name.lower() for name in missing}}
        try:
            return load_server_config(path, env=env), missing
        except ConfigError:
            raise exc from None


def _choose(server: ServerConfig, config_id: str | None) -> tuple[str, ConfigNode, str]:
    """``(id, node, error-path prefix)`` of the routing config to rehearse."""
    names = ", ".join(server.configs) or "none defined"
    if config_id is not None:
        node = server.configs.get(config_id)
        if node is None:
            raise ConfigError(
                [("--config-id", f"no config named '{config_id}' (configs: {names})")]
            )
        return config_id, node, f"configs.{config_id}"
    default = server.raw_default()
    if default is not None:
        chosen = server.default_id()
        inline = not isinstance(server.default_config, str)
        return chosen, default, "default_config" if inline else f"configs.{chosen}"
    if len(server.configs) == 1:
        only, node = next(iter(server.configs.items()))
        return only, node, f"configs.{only}"
    raise ConfigError(
        [("default_config", f"not set: choose one of the named configs ({names}) with --config-id")]
    )


def load_rehearsal_config(path: str | Path, config_id: str | None = None) -> RehearsalConfig:
    """Read the config to rehearse from ``path``.

    A document whose top level has ``strategy``, ``targets`` or ``provider`` is a Portkey
    config (JSON or YAML; its id is the file name without extension); any other is a server
    config, of which the config named ``config_id`` is rehearsed, else ``default_config``,
    else its only named config. Raises :class:`ConfigError` with the path of every bad
    field, including targets whose provider relaygate does not know.
    """
    file = Path(path)
    placeholders: tuple[str, ...] = ()
    if is_portkey_config(read_document(file)):
        if config_id is not None:
            raise ConfigError(
                [("--config-id", "only applies to a server config; this file is a Portkey config")]
            )
        loaded = read_config_file(file)
    else:
        server, placeholders = _load_server(file)
        loaded = ConfigFile(server)
    compiled = compile_file(loaded, frozenset(default_registry().names))
    server = loaded.server
    if loaded.portkey:
        assert loaded.config_id is not None
        chosen, prefix = loaded.config_id, ""
        node = server.configs[chosen]
        routing = compiled.configs[chosen]
    else:
        chosen, node, prefix = _choose(server, config_id)
        found = compiled.default if prefix == "default_config" else compiled.configs[chosen]
        assert found is not None
        routing = found
    return RehearsalConfig(
        source=str(path),
        config_id=chosen,
        node=node,
        server=server,
        targets=routing.targets,
        prefix=prefix,
        placeholders=placeholders,
    )


def _with_hosts(node: ConfigNode, path: str, hosts: Mapping[str, str]) -> ConfigNode:
    """``node`` with each target's ``custom_host`` set to ``hosts[target path]``."""
    if node.is_strategy:
        children = [
            _with_hosts(child, f"{path}.targets[{i}]", hosts)
            for i, child in enumerate(node.targets or ())
        ]
        return node.model_copy(update={"targets": children})
    return node.model_copy(update={"custom_host": hosts[path]})


def _resolve_faults(scenario: Scenario, targets: Sequence[Target]) -> tuple[TargetFaults, ...]:
    """Faults per target (in config order) from the scenario's target keys."""
    listing = ", ".join(f"{i} {t.label}" for i, t in enumerate(targets))
    chosen: dict[int, int | str] = {}
    for key in scenario.targets:
        if isinstance(key, int):
            index = key if 0 <= key < len(targets) else None
        else:
            index = next((i for i, t in enumerate(targets) if key in (t.name, t.path)), None)
        if index is None:
            raise ScenarioError(
                f"targets.{key}: no target with this index, name or path "
                f"(the config's targets: {listing})"
            )
        if index in chosen:
            raise ScenarioError(f"targets.{key}: names the same target as targets.{chosen[index]}")
        chosen[index] = key
    return tuple(
        scenario.targets[chosen[i]] if i in chosen else TargetFaults() for i in range(len(targets))
    )
