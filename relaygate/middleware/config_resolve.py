"""Config resolution: decide which compiled routing config serves a request.

Precedence: ``x-portkey-config`` (inline JSON, or the id of a named config), else
``x-portkey-provider`` with the provider key in ``Authorization: Bearer`` (a config-less
call), else the server's default config. ``x-portkey-custom-host``,
``x-portkey-request-timeout`` and ``x-portkey-forward-headers`` act as defaults beneath
whatever config is chosen (the config's own values win).

Each distinct (config, header defaults) pair is validated and compiled once and kept in a
small LRU cache, so the request path does not re-parse JSON a client sends every time.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from relaygate.auth_headers import PORTKEY_PLACEHOLDER_KEY
from relaygate.config import ConfigError, Inherited, compile_config
from relaygate.config.model import RoutingConfig
from relaygate.config.schema import DEFAULT_MAX_TARGETS
from relaygate.errors import GatewayError
from relaygate.exchange import GatewayRequest, GatewayResponse
from relaygate.exporters import semconv as sc
from relaygate.middleware.auth import bearer
from relaygate.pipeline import Handler
from relaygate.providers.registry import ProviderRegistry
from relaygate.telemetry import Telemetry

DEFAULT_HEADERS = (
    "x-portkey-custom-host",
    "x-portkey-request-timeout",
    "x-portkey-forward-headers",
)
"""Request headers that set defaults beneath the chosen config."""

HeaderKey = tuple[str | None, ...]
_NO_DEFAULTS: HeaderKey = (None,) * len(DEFAULT_HEADERS)


@dataclass(frozen=True)
class ConfigSources:
    """Where configs come from: the server config's named and default configs, and limits.

    ``named`` and ``default`` hold the raw Portkey-format dicts (already validated at load);
    ``gateway_keys`` are never taken for a provider key; ``max_targets`` bounds the targets
    of every config compiled, header configs included.
    """

    named: Mapping[str, Any]
    default: Any | None = None
    default_id: str = "default"
    inherited: Inherited = field(default_factory=Inherited)
    max_header_bytes: int = 32768
    gateway_keys: Collection[str] = ()
    cache_size: int = 512
    max_targets: int = DEFAULT_MAX_TARGETS


class ConfigResolveLayer:
    """Binds a compiled :class:`RoutingConfig` to the request, or refuses with a clear 4xx."""

    def __init__(
        self, sources: ConfigSources, registry: ProviderRegistry, telemetry: Telemetry
    ) -> None:
        self._sources = sources
        self._registry = registry
        self._tel = telemetry
        self._cache: OrderedDict[tuple[str, str, HeaderKey], RoutingConfig] = OrderedDict()
        self._startup = [
            self._cached(config_id, config_id, {}, functools.partial(_same, raw))
            for config_id, raw in sources.named.items()
        ]
        default = sources.default
        if default is not None:
            self._startup.append(self._cached(sources.default_id, "", {}, lambda: default))

    def __call__(self, inner: Handler) -> Handler:
        tel = self._tel

        async def config_resolve(request: GatewayRequest) -> GatewayResponse:
            with tel.layer_span(sc.SPAN_CONFIG) as span:
                config = self.resolve(request.headers)
                request.ctx.config = config
                if span.is_recording():
                    span.set_attribute(sc.CONFIG_ID, config.id)
            return await inner(request.derive(config=config))

        return config_resolve

    def known_configs(self) -> list[RoutingConfig]:
        """The compiled named and default configs (as compiled at start-up)."""
        return list(self._startup)

    def resolve(self, headers: Mapping[str, str]) -> RoutingConfig:
        """The config for a request with these (lower-case) headers."""
        sources = self._sources
        if "x-portkey-virtual-key" in headers:
            raise GatewayError(
                400,
                "x-portkey-virtual-key is not supported by relaygate: put the provider key "
                "in the config, or reference an environment variable in the server config",
                code="unsupported_header",
                param="x-portkey-virtual-key",
            )
        header = headers.get("x-portkey-config")
        if header is not None:
            if len(header) > sources.max_header_bytes:
                raise GatewayError(
                    431,
                    f"x-portkey-config is {len(header)} bytes; the limit is "
                    f"{sources.max_header_bytes}",
                    code="config_too_large",
                    param="x-portkey-config",
                )
            text = header.strip()
            if text.startswith("{"):
                return self._cached("inline", text, headers, lambda: _parse_header_json(text))
            if text in sources.named:
                return self._cached(text, text, headers, lambda: sources.named[text])
            raise GatewayError(
                400,
                f"unknown config id in x-portkey-config; known ids: "
                f"{', '.join(sorted(sources.named)) or '(none)'}",
                code="unknown_config",
                param="x-portkey-config",
            )
        provider = headers.get("x-portkey-provider")
        if provider is not None:
            key = bearer(headers.get("authorization"))
            if key == PORTKEY_PLACEHOLDER_KEY or key in sources.gateway_keys:
                key = None
            name = provider.strip().lower()
            raw: dict[str, Any] = {"provider": name, "api_key": key} if key else {"provider": name}
            return self._cached("provider", f"{name}\0{key or ''}", headers, lambda: raw)
        default = sources.default
        if default is not None:
            return self._cached(sources.default_id, "", headers, lambda: default)
        raise GatewayError(
            400,
            "no config for this request: send x-portkey-config (a JSON config or a config id) "
            "or x-portkey-provider, or set default_config in the server config",
            code="missing_config",
            param="x-portkey-config",
        )

    def _cached(
        self, config_id: str, key: str, headers: Mapping[str, str], raw: Callable[[], Any]
    ) -> RoutingConfig:
        """The compiled config for ``(config_id, key)`` under these headers' defaults.

        On a cache hit nothing is parsed or compiled: ``raw`` (the config document) and the
        header defaults are only worked out on a miss.
        """
        hkey = tuple(headers.get(name) for name in DEFAULT_HEADERS)
        cache_key = (config_id, key, hkey)
        found = self._cache.get(cache_key)
        if found is not None:
            self._cache.move_to_end(cache_key)
            return found
        base = self._sources.inherited
        inherited = base if hkey == _NO_DEFAULTS else _header_defaults(headers, base)
        config = self._compile(config_id, raw(), inherited)
        self._cache[cache_key] = config
        if len(self._cache) > self._sources.cache_size:
            self._cache.popitem(last=False)
        return config

    def _compile(self, config_id: str, raw: Any, inherited: Inherited) -> RoutingConfig:
        try:
            config = compile_config(
                raw,
                config_id=config_id,
                inherited=inherited,
                max_targets=self._sources.max_targets,
            )
        except ConfigError as exc:
            raise GatewayError(
                400,
                f"invalid config: {'; '.join(f'{p}: {m}' for p, m in exc.errors)}",
                code="invalid_config",
                param="x-portkey-config",
            ) from None
        for target in config.targets:
            if target.provider not in self._registry:
                raise GatewayError(
                    400,
                    f"invalid config: {target.path}: unknown provider "
                    f"'{target.provider[:64]}'; known: {', '.join(sorted(self._registry.names))}",
                    code="unknown_provider",
                    param="provider",
                )
        return config


def _same(value: Any) -> Any:
    return value


def _parse_header_json(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise GatewayError(
            400,
            "x-portkey-config is not valid JSON (send a JSON object or a config id)",
            code="invalid_config",
            param="x-portkey-config",
        ) from None


def _header_defaults(headers: Mapping[str, str], base: Inherited) -> Inherited:
    """``base`` with the x-portkey-* default headers applied."""
    changes: dict[str, Any] = {}
    host = headers.get("x-portkey-custom-host")
    if host is not None:
        host = host.strip().rstrip("/")
        if not host.startswith(("http://", "https://")):
            raise GatewayError(
                400,
                "x-portkey-custom-host must be an http(s) URL up to the version path",
                code="invalid_header",
                param="x-portkey-custom-host",
            )
        changes["custom_host"] = host
    timeout = headers.get("x-portkey-request-timeout")
    if timeout is not None:
        try:
            ms = int(timeout.strip())
        except ValueError:
            ms = 0
        if ms <= 0:
            raise GatewayError(
                400,
                "x-portkey-request-timeout must be a positive whole number of milliseconds",
                code="invalid_header",
                param="x-portkey-request-timeout",
            )
        changes["request_timeout_ms"] = ms
    forward = headers.get("x-portkey-forward-headers")
    if forward is not None:
        names = tuple(n.strip().lower() for n in forward.split(",") if n.strip())
        changes["forward_headers"] = names
    return replace(base, **changes) if changes else base
