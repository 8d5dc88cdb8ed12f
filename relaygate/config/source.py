"""The one way every entry point turns what a caller passed as a server config into one."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from relaygate.config.server import ServerConfig, load_server_config, parse_server_config

ServerConfigSource = ServerConfig | Mapping[str, Any] | str | Path | None
"""A :class:`ServerConfig`, a dict in the server-config format, a path to a YAML/JSON
server-config file, or ``None`` for an empty config."""


def server_config_of(config: ServerConfigSource) -> ServerConfig:
    """The :class:`ServerConfig` ``config`` names (see :data:`ServerConfigSource`)."""
    if config is None:
        return ServerConfig()
    if isinstance(config, ServerConfig):
        return config
    if isinstance(config, str | Path):
        return load_server_config(config)
    return parse_server_config(dict(config))
