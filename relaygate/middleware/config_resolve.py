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

from collections import OrderedDict
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from pydantic_core import PydanticCustomError

from relaygate.auth_headers import PORTKEY_PLACEHOLDER_KEY
from relaygate.config import ConfigError, Inherited, compile_config
from relaygate.config.compile import CompileLimits, compile_sources, provider_issue
from relaygate.config.model import RoutingConfig, Target
from relaygate.config.schema import DEFAULT_MAX_TARGETS, check_base_url
from relaygate.errors import GatewayError
from relaygate.exchange import GatewayRequest, GatewayResponse
from relaygate.exporters import semconv as sc
from relaygate.middleware.auth import bearer
from relaygate.pipeline import Handler
from relaygate.providers.registry import ProviderRegistry
from relaygate.security.custody import caller_destination, custody_issue
from relaygate.security.egress import DEFAULT_POLICY, EgressPolicy
from relaygate.security.forwarding import SENSITIVE, forwarding_issue
from relaygate.security.keys import UNSCOPED, KeyScope
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
    gateway_keys: Container[str] = ()
    cache_size: int = 512
    max_targets: int = DEFAULT_MAX_TARGETS
    egress: EgressPolicy = DEFAULT_POLICY
    forward_sensitive: frozenset[str] = frozenset()
    """Credential headers a caller's config may forward (``security.forward_sensitive_headers``)."""


class ConfigResolveLayer:
    """Binds a compiled :class:`RoutingConfig` to the request, or refuses with a clear 4xx."""

    def __init__(
        self, sources: ConfigSources, registry: ProviderRegistry, telemetry: Telemetry
    ) -> None:
        self._sources = sources
        self._registry = registry
        self._tel = telemetry
        self._cache: OrderedDict[tuple[str, str, HeaderKey], RoutingConfig] = OrderedDict()
        compiled = compile_sources(
            sources.named,
            sources.default,
            sources.default_id,
            inherited=sources.inherited,
            providers=registry.names,
            limits=CompileLimits(max_targets=sources.max_targets),
        )
        for config in compiled.all():
            self._check_targets(config)
        self._startup = compiled.all()
        for config_id, config in compiled.configs.items():
            self._store((config_id, config_id, _NO_DEFAULTS), config)
        if compiled.default is not None:
            self._store((sources.default_id, "", _NO_DEFAULTS), compiled.default)

    def __call__(self, inner: Handler) -> Handler:
        tel = self._tel

        async def config_resolve(request: GatewayRequest) -> GatewayResponse:
            with tel.layer_span(sc.SPAN_CONFIG) as span:
                config = self.resolve(
                    request.headers, request.ctx.principal or UNSCOPED, request.model
                )
                request.ctx.config = config
                if span.is_recording():
                    span.set_attribute(sc.CONFIG_ID, config.id)
            return await inner(request.derive(config=config))

        return config_resolve

    def known_configs(self) -> list[RoutingConfig]:
        """The compiled named and default configs (as compiled at start-up)."""
        return list(self._startup)

    def config_ids(self) -> list[str]:
        """The ids ``x-portkey-config`` accepts, sorted: each named config's, and
        ``default`` for an inline ``default_config``. ``/ready``, ``/status`` and the
        unknown-id refusal name exactly these."""
        return sorted({config.id for config in self._startup})

    def resolve(
        self,
        headers: Mapping[str, str],
        scope: KeyScope = UNSCOPED,
        model: str | None = None,
    ) -> RoutingConfig:
        """The config for a request with these (lower-case) headers asking for ``model``,
        sent with a key of ``scope``; a 403 when the scope does not cover it."""
        config = self._resolve(headers)
        if scope is not UNSCOPED:
            check_scope(scope, config, model)
        return config

    def _resolve(self, headers: Mapping[str, str]) -> RoutingConfig:
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
                return self._cached(
                    "inline", text, headers, lambda: _parse_header_json(text), caller_supplied=True
                )
            if text in sources.named:
                return self._cached(text, text, headers, lambda: sources.named[text])
            inline_default = sources.default
            if inline_default is not None and text == sources.default_id:
                # The inline default_config, by the id /ready, /status and metrics show.
                return self._cached(text, "", headers, lambda: inline_default)
            raise GatewayError(
                400,
                f"unknown config id in x-portkey-config; known ids: "
                f"{', '.join(self.config_ids()) or '(none)'}",
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
            return self._cached(
                "provider", f"{name}\0{key or ''}", headers, lambda: raw, caller_supplied=True
            )
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
        self,
        config_id: str,
        key: str,
        headers: Mapping[str, str],
        raw: Callable[[], Any],
        *,
        caller_supplied: bool = False,
    ) -> RoutingConfig:
        """The compiled config for ``(config_id, key)`` under these headers' defaults.

        On a cache hit nothing is parsed or compiled: ``raw`` (the config document) and the
        header defaults are only worked out on a miss. ``caller_supplied`` marks a config
        the caller wrote (see :attr:`RoutingConfig.caller_supplied`). It needs no place in
        the cache key: a caller's key (JSON text, or provider and provider key joined by a
        NUL) never equals a named config's key (its id).
        """
        hkey = tuple(headers.get(name) for name in DEFAULT_HEADERS)
        cache_key = (config_id, key, hkey)
        found = self._cache.get(cache_key)
        if found is not None:
            self._cache.move_to_end(cache_key)
            return found
        base = self._sources.inherited
        inherited = base if hkey == _NO_DEFAULTS else _header_defaults(headers, base)
        config = self._compile(config_id, raw(), inherited, caller_supplied)
        self._store(cache_key, config)
        return config

    def _store(self, cache_key: tuple[str, str, HeaderKey], config: RoutingConfig) -> None:
        self._cache[cache_key] = config
        if len(self._cache) > self._sources.cache_size:
            self._cache.popitem(last=False)

    def _compile(
        self, config_id: str, raw: Any, inherited: Inherited, caller_supplied: bool
    ) -> RoutingConfig:
        try:
            config = compile_config(
                raw,
                config_id=config_id,
                inherited=inherited,
                max_targets=self._sources.max_targets,
                caller_supplied=caller_supplied,
            )
        except ConfigError as exc:
            raise GatewayError(
                400,
                f"invalid config: {'; '.join(f'{p}: {m}' for p, m in exc.errors)}",
                code="invalid_config",
                param="x-portkey-config",
            ) from None
        self._check_targets(config)
        return config

    def _check_targets(self, config: RoutingConfig) -> None:
        """Refuse ``config`` when a target names an unknown provider (400, the check
        :func:`~relaygate.config.compile.compile_server` makes) or breaks a policy (403)."""
        for target in config.targets:
            issue = provider_issue(target, self._registry.names)
            if issue is not None:
                raise GatewayError(
                    400,
                    f"invalid config: {target.path}: {issue}",
                    code="unknown_provider",
                    param="provider",
                )
            refusal = self._policy_refusal(target)
            if refusal is not None:
                raise refusal

    def _policy_refusal(self, target: Target) -> GatewayError | None:
        """The key-custody, egress or forwarding rule ``target`` breaks, as a 403."""
        issue = custody_issue(target)
        if issue is not None:
            return GatewayError(403, issue, type="permission_error", code="key_custody")
        if "custom_host" in target.caller_fields and target.custom_host:
            why = self._sources.egress.check_url(target.custom_host)
            if why is not None:
                return GatewayError(
                    403,
                    f"{target.path}: custom_host refused: {why}",
                    type="permission_error",
                    code="egress_denied",
                    param="custom_host",
                )
        if "forward_headers" in target.caller_fields:
            allowed = self._sources.forward_sensitive
            for name in target.forward_headers:
                if name in SENSITIVE and name not in allowed:
                    return GatewayError(
                        403,
                        f"{target.path}: forwarding '{name}' from a caller's config needs "
                        f"security.forward_sensitive_headers: [{name}] in the server config",
                        type="permission_error",
                        code="forward_header_denied",
                        param="forward_headers",
                    )
        return None


def check_scope(scope: KeyScope, config: RoutingConfig, model: str | None = None) -> None:
    """Raise a 403 naming what ``config`` (for a request asking for ``model``) needs that a
    key of ``scope`` may not do. Every target the config could reach is checked."""

    def refuse(what: str, code: str) -> GatewayError:
        return GatewayError(
            403,
            f"gateway key '{scope.name}' may not {what}",
            type="permission_error",
            code=code,
        )

    if config.caller_supplied:
        if not scope.inline_configs:
            raise refuse(
                "send its own config (x-portkey-config JSON or x-portkey-provider)",
                "scope_inline_config",
            )
    elif scope.configs is not None and config.id not in scope.configs:
        raise refuse(f"use config '{config.id}'", "scope_config")
    for target in config.targets:
        if not scope.custom_hosts and caller_destination(target):
            raise refuse(f"choose a custom host ({target.path})", "scope_custom_host")
        if scope.providers is not None and target.provider not in scope.providers:
            raise refuse(f"call provider '{target.provider}' ({target.path})", "scope_provider")
        if scope.models is not None:
            used = target.model or model
            if used not in scope.models:
                raise refuse(f"use model '{str(used)[:64]}' ({target.path})", "scope_model")


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
        try:
            changes["custom_host"] = check_base_url(host)
        except PydanticCustomError as exc:
            raise GatewayError(
                400,
                f"x-portkey-custom-host {exc.message()} (an http(s) URL up to the version path)",
                code="invalid_header",
                param="x-portkey-custom-host",
            ) from None
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
        for name in names:
            issue = forwarding_issue(name)
            if issue is not None:
                raise GatewayError(
                    400,
                    f"x-portkey-forward-headers: {issue[:200]}",
                    code="invalid_header",
                    param="x-portkey-forward-headers",
                )
        changes["forward_headers"] = names
    return replace(base, from_caller=True, **changes) if changes else base
