"""The one compile path from a config file to compiled routing configs.

``relaygate validate``, ``relaygate serve``, ``relaygate rehearse`` and the gateway's start-up
all compile the server's named and default configs here, so they accept and refuse the same
files with the same explained errors. Compiling checks each target's provider against the
provider names the caller passes (the registry's names, as a plain collection, so this
package does not depend on :mod:`relaygate.providers`) and collects warnings for settings
that are accepted but have no effect as written.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relaygate.config.errors import ConfigError, join_path
from relaygate.config.model import ROOT_PATH, RoutingConfig, Target
from relaygate.config.schema import DEFAULT_MAX_TARGETS, ConfigNode
from relaygate.config.tree import Inherited, compile_config

if TYPE_CHECKING:
    from relaygate.config.server import ServerConfig

PORTKEY_KEYS = ("strategy", "targets", "provider")
"""Top-level keys that mark a document as one Portkey config rather than a server config."""


def is_portkey_config(document: Any) -> bool:
    """Whether a decoded config file is a single Portkey config (it has ``strategy``,
    ``targets`` or ``provider`` at the top) rather than a server config."""
    return isinstance(document, dict) and any(key in document for key in PORTKEY_KEYS)


def provider_issue(target: Target, providers: Collection[str]) -> str | None:
    """Why ``target`` cannot be routed, or ``None``: its provider is not one of ``providers``.

    The message names the known providers (or, for a Portkey ``@slug``, what to write
    instead); a caller's provider name is cut to 64 characters.
    """
    if target.provider in providers:
        return None
    if target.provider.startswith("@"):
        return (
            f"'{target.provider[:64]}' is a Portkey provider slug (a key kept in Portkey's "
            "vault); relaygate has no vault: name the provider (openai, ...) and give its "
            'api_key, e.g. "${OPENAI_API_KEY}" in a server config'
        )
    return f"unknown provider '{target.provider[:64]}'; known: {', '.join(sorted(providers))}"


def target_file_path(prefix: str, target: Target, field_name: str) -> str:
    """The path of ``field_name`` of ``target`` in the file, under ``prefix``
    (``configs.prod.targets[1].provider``)."""
    relative = target.path.removeprefix(ROOT_PATH).lstrip(".")
    return join_path(prefix, join_path(relative, field_name))


@dataclass(frozen=True)
class CompileLimits:
    """The server limits compiling applies: ``max_targets`` bounds a config's targets
    (an error), ``max_retry_attempts`` caps ``retry.attempts`` (a warning above it)."""

    max_targets: int = DEFAULT_MAX_TARGETS
    max_retry_attempts: int | None = None


@dataclass(frozen=True)
class CompiledServer:
    """A server config's routing configs, compiled and checked.

    ``configs`` holds every named config by id; ``default`` the default config (the named
    one it refers to, or the inline one with id ``"default"``), or ``None``. ``warnings``
    are ``path: note`` lines for settings that are accepted but change nothing as written.
    """

    configs: Mapping[str, RoutingConfig]
    default: RoutingConfig | None = None
    warnings: tuple[str, ...] = field(default=())

    def all(self) -> list[RoutingConfig]:
        """The named configs, then the default when it is not one of them."""
        found = list(self.configs.values())
        if self.default is not None and all(c is not self.default for c in found):
            found.append(self.default)
        return found


def compile_one(
    node: ConfigNode | Any,
    *,
    config_id: str,
    prefix: str,
    inherited: Inherited,
    providers: Collection[str] | None,
    limits: CompileLimits = CompileLimits(),
    warnings: list[str] | None = None,
) -> RoutingConfig:
    """Compile one routing config found at ``prefix`` in a file (``""`` for a Portkey file).

    Every problem, unknown providers included (when ``providers`` is given), is raised as
    one :class:`ConfigError` with paths under ``prefix``; notes go to ``warnings``.
    """
    notes: list[str] = []
    try:
        compiled = compile_config(
            node,
            config_id=config_id,
            inherited=inherited,
            warnings=notes,
            max_targets=limits.max_targets,
        )
    except ConfigError as exc:
        raise exc.prefixed(prefix) from None
    if providers is not None:
        unknown = [
            (target_file_path(prefix, target, "provider"), issue)
            for target in compiled.targets
            if (issue := provider_issue(target, providers)) is not None
        ]
        if unknown:
            raise ConfigError(unknown)
    cap = limits.max_retry_attempts
    if cap is not None:
        notes += [
            f"{target_file_path('', target, 'retry.attempts')}: {target.retry.attempts} is above "
            f"limits.max_retry_attempts ({cap}); at most {cap} retries are made"
            for target in compiled.targets
            if target.retry.attempts > cap
        ]
    if warnings is not None:
        warnings += [join_path(prefix, note) if prefix else note for note in notes]
    return compiled


def compile_sources(
    named: Mapping[str, ConfigNode | Any],
    default: ConfigNode | Any | None,
    default_id: str,
    *,
    inherited: Inherited,
    providers: Collection[str] | None,
    limits: CompileLimits = CompileLimits(),
) -> CompiledServer:
    """Compile the named configs and the default (``default_id`` naming one of ``named``
    when it is that config, else the inline default's id).

    Raises one :class:`ConfigError` with the problems of every named config (paths under
    ``configs.<id>``), or of the inline default (under ``default_config``).
    """
    warnings: list[str] = []
    configs: dict[str, RoutingConfig] = {}
    issues: list[tuple[str, str]] = []
    for config_id, node in named.items():
        try:
            configs[config_id] = compile_one(
                node,
                config_id=config_id,
                prefix=f"configs.{config_id}",
                inherited=inherited,
                providers=providers,
                limits=limits,
                warnings=warnings,
            )
        except ConfigError as exc:
            issues += exc.errors
    if issues:
        raise ConfigError(issues)
    compiled_default: RoutingConfig | None = None
    if default is not None:
        same = named.get(default_id)
        if same is not None and same is default:
            compiled_default = configs[default_id]
        else:
            compiled_default = compile_one(
                default,
                config_id=default_id,
                prefix="default_config",
                inherited=inherited,
                providers=providers,
                limits=limits,
                warnings=warnings,
            )
    return CompiledServer(configs, compiled_default, tuple(warnings))


def compile_server(server: ServerConfig, providers: Collection[str] | None) -> CompiledServer:
    """Compile every named and default config of ``server``, checking each target's
    provider against ``providers`` (the provider registry's names; ``None`` skips the check).

    Warnings name ignored fields (``cache``, ``metadata``) and ``retry.attempts`` above
    ``limits.max_retry_attempts``. Raises :class:`ConfigError` with a path for every problem
    (``configs.prod.targets[1].provider: unknown provider 'opnai'; known: ...``).
    """
    if isinstance(server.default_config, str) and server.default_config not in server.configs:
        names = ", ".join(server.configs) if server.configs else "none defined"
        raise ConfigError(
            [("default_config", f"no config named '{server.default_config}' (configs: {names})")]
        )
    return compile_sources(
        server.raw_configs(),
        server.raw_default(),
        server.default_id(),
        inherited=server.inherited(),
        providers=providers,
        limits=CompileLimits(
            max_targets=server.limits.max_targets_per_config,
            max_retry_attempts=server.limits.max_retry_attempts,
        ),
    )


@dataclass(frozen=True)
class ConfigFile:
    """A config file as read: the server config it stands for and whether it was a single
    Portkey config (then ``server`` holds it as its only, default, config ``config_id``)."""

    server: ServerConfig
    portkey: bool = False
    config_id: str | None = None


def read_config_file(
    path: str | Path, env: Mapping[str, str] | None = None, *, text: str | None = None
) -> ConfigFile:
    """Read a server config or a single Portkey config (JSON or YAML) from ``path``, or
    parse ``text`` already read from it (so a pipe such as ``/dev/stdin`` is read once).

    A Portkey config is named after the file (its stem). Raises :class:`ConfigError`.
    """
    from relaygate.config.schema import parse_config
    from relaygate.config.server import (
        ServerConfig,
        parse_document,
        read_document,
        server_config_from_document,
    )

    file = Path(path)
    document = read_document(file) if text is None else parse_document(text, file)
    if is_portkey_config(document):
        config_id = file.stem or "config"
        node = parse_config(document)
        server = ServerConfig(configs={config_id: node}, default_config=config_id)
        return ConfigFile(server, portkey=True, config_id=config_id)
    return ConfigFile(server_config_from_document(document, env))


def compile_file(file: ConfigFile, providers: Collection[str] | None) -> CompiledServer:
    """Compile a config file read by :func:`read_config_file`. A Portkey file's paths are
    its own (``targets[1].provider``), not under ``configs.<id>``."""
    if not file.portkey:
        return compile_server(file.server, providers)
    assert file.config_id is not None
    server = file.server
    warnings: list[str] = []
    compiled = compile_one(
        server.configs[file.config_id],
        config_id=file.config_id,
        prefix="",
        inherited=server.inherited(),
        providers=providers,
        limits=CompileLimits(
            max_targets=server.limits.max_targets_per_config,
            max_retry_attempts=server.limits.max_retry_attempts,
        ),
        warnings=warnings,
    )
    return CompiledServer({file.config_id: compiled}, compiled, tuple(warnings))
