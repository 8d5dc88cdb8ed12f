"""Compilation of a validated Portkey config into the routing tree.

:func:`compile_config` walks a :class:`~relaygate.config.schema.ConfigNode` and applies
inheritance: ``override_params`` (merged key by key), ``retry``, ``request_timeout``,
``first_token_timeout``, ``stream_idle_timeout``, ``custom_host``, ``forward_headers`` and
``cb_config``
flow down to the targets below a node, under the server's provider defaults and streaming
deadlines (:class:`Inherited`). Each compiled target records which of its
settings a caller chose (``Target.caller_fields``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from pydantic import SecretStr

from relaygate.config.errors import ROOT, ConfigError, Loc, format_loc
from relaygate.config.model import (
    EMPTY,
    ROOT_PATH,
    BreakerSettings,
    Condition,
    Node,
    ResponseCache,
    RetrySettings,
    RoutingConfig,
    Secret,
    Strategy,
    Target,
)
from relaygate.config.schema import (
    DEFAULT_MAX_TARGETS,
    PROVIDER_OPTION_FIELDS,
    ConfigNode,
    parse_config,
)
from relaygate.strategies.finality import fall_back_codes

__all__ = ["Inherited", "compile_config", "load_config_json"]


IGNORED_FIELD_NOTES: dict[str, str] = {
    "metadata": "ignored (relaygate does not use config metadata)",
}
"""Fields accepted for compatibility that do nothing, with the warning each gets."""


@dataclass(frozen=True)
class Inherited:
    """Defaults applied above the root (from server config or request headers), lowest precedence.

    ``api_keys`` and ``custom_hosts`` are per provider: a target whose own chain sets no
    ``api_key`` (``custom_host``) takes the one configured for its provider. ``custom_host``,
    when set, is preferred to ``custom_hosts``.
    """

    override_params: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    retry: RetrySettings | None = None
    request_timeout_ms: int | None = None
    first_token_timeout_ms: int | None = None
    """Server default of ``first_token_timeout`` (``timeouts.first_token_timeout_ms``)."""
    stream_idle_timeout_ms: int | None = None
    """Server default of ``stream_idle_timeout`` (``timeouts.stream_idle_timeout_ms``)."""
    custom_host: str | None = None
    forward_headers: tuple[str, ...] = ()
    api_keys: Mapping[str, Secret] = field(default_factory=lambda: EMPTY)
    """Provider name -> default credential, used when a target has no ``api_key``."""
    custom_hosts: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    """Provider name -> default base URL, used when a target's chain sets no ``custom_host``."""
    from_caller: bool = False
    """Whether the defaults above ``api_keys`` came from a caller (``x-portkey-*`` request
    headers) rather than the operator; ``api_keys`` and ``custom_hosts`` are always the
    operator's."""


def _nearest(own: int | None, above: int | None) -> int | None:
    """A node's own value of an inherited setting when it writes one, else the value above."""
    return own if own is not None else above


def _dedupe(items: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True)
class _Scope:
    """The inheritable settings in force at one node."""

    override_params: Mapping[str, Any]
    retry: RetrySettings | None
    request_timeout_ms: int | None
    first_token_timeout_ms: int | None
    stream_idle_timeout_ms: int | None
    custom_host: str | None
    forward_headers: tuple[str, ...]
    breaker: BreakerSettings | None = None
    caller: frozenset[str] = frozenset()
    """Names of the settings above whose value a caller chose."""
    on_error_codes: frozenset[str] = frozenset()
    """The nearest strategy's ``on_error_codes`` (lower case)."""
    recover_streams: bool | None = None
    """The nearest ``strategy.recover_streams`` set above, if any."""
    in_fallback: bool = False
    """Whether the parent node is a ``fallback`` strategy."""
    supports_prefill: bool = False
    """The nearest ``supports_prefill`` set at or above this node."""

    @classmethod
    def top(cls, inherited: Inherited) -> _Scope:
        scope = cls(
            override_params=dict(inherited.override_params),
            retry=inherited.retry,
            request_timeout_ms=inherited.request_timeout_ms,
            first_token_timeout_ms=inherited.first_token_timeout_ms,
            stream_idle_timeout_ms=inherited.stream_idle_timeout_ms,
            custom_host=inherited.custom_host.rstrip("/") if inherited.custom_host else None,
            forward_headers=_dedupe(tuple(h.strip().lower() for h in inherited.forward_headers)),
        )
        if not inherited.from_caller:
            return scope
        caller = frozenset(name for name in _INHERITABLE if getattr(scope, name))
        return replace(scope, caller=caller)

    def enter(self, node: ConfigNode, by_caller: bool) -> _Scope:
        params = self.override_params
        if node.override_params:
            params = {**params, **node.override_params}
        caller = self.caller
        written = {name for name, spec in _INHERITABLE.items() if getattr(node, spec) is not None}
        if written:
            caller = caller | written if by_caller else caller - written
        return _Scope(
            override_params=params,
            retry=node.retry.settings() if node.retry is not None else self.retry,
            request_timeout_ms=(
                node.request_timeout
                if node.request_timeout is not None
                else self.request_timeout_ms
            ),
            first_token_timeout_ms=_nearest(node.first_token_timeout, self.first_token_timeout_ms),
            stream_idle_timeout_ms=_nearest(node.stream_idle_timeout, self.stream_idle_timeout_ms),
            custom_host=node.custom_host if node.custom_host is not None else self.custom_host,
            forward_headers=(
                _dedupe(tuple(node.forward_headers))
                if node.forward_headers is not None
                else self.forward_headers
            ),
            breaker=(
                node.cb_spec.settings(caller=by_caller)
                if node.cb_spec is not None
                else self.breaker
            ),
            caller=caller,
            on_error_codes=(
                fall_back_codes(node.strategy.on_error_codes)
                if node.strategy is not None and node.strategy.on_error_codes is not None
                else self.on_error_codes
            ),
            recover_streams=self.recover_streams,
            in_fallback=self.in_fallback,
            supports_prefill=(
                node.supports_prefill
                if node.supports_prefill is not None
                else self.supports_prefill
            ),
        )


_INHERITABLE: Mapping[str, str] = MappingProxyType(
    {
        "override_params": "override_params",
        "retry": "retry",
        "request_timeout_ms": "request_timeout",
        "first_token_timeout_ms": "first_token_timeout",
        "stream_idle_timeout_ms": "stream_idle_timeout",
        "custom_host": "custom_host",
        "forward_headers": "forward_headers",
        "breaker": "cb_spec",
    }
)
"""Inherited settings: the name in the compiled scope -> the config field that sets it."""

_CALLER_TARGET_FIELDS: tuple[str, ...] = ("api_key", *PROVIDER_OPTION_FIELDS)
"""Target-only fields whose provenance follows the document that sets them."""


def _option_value(value: Any) -> Any:
    """A provider option as adapters read it: a secret field becomes a :class:`Secret`."""
    if isinstance(value, SecretStr):
        return Secret(value.get_secret_value())
    return value


def _frozen_params(params: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(copy.deepcopy(dict(params))) if params else EMPTY


def _compile_node(
    node: ConfigNode,
    path: str,
    loc: Loc,
    scope: _Scope,
    inherited: Inherited,
    warnings: list[str] | None,
    by_caller: bool,
) -> Node:
    if warnings is not None:
        for key, note in IGNORED_FIELD_NOTES.items():
            if getattr(node, key) is not None:
                warnings.append(f"{format_loc((*loc, key))}: {note}")
        if loc and node.cache is not None:
            warnings.append(f"{format_loc((*loc, 'cache'))}: {CACHE_NOT_ROOT}")
    scope = scope.enter(node, by_caller)
    weight = node.weight if node.weight is not None else 1.0
    if node.strategy is not None:
        spec = node.strategy
        recover = spec.recover_streams
        if recover is None:
            recover = scope.recover_streams
        scope = replace(scope, recover_streams=recover, in_fallback=spec.mode == "fallback")
        children = tuple(
            _compile_node(
                child,
                f"{path}.targets[{i}]",
                (*loc, "targets", i),
                scope,
                inherited,
                warnings,
                by_caller,
            )
            for i, child in enumerate(node.targets or ())
        )
        return Strategy(
            path=path,
            mode=spec.mode,
            children=children,
            name=node.name,
            weight=weight,
            on_status_codes=(
                frozenset(spec.on_status_codes) if spec.on_status_codes is not None else None
            ),
            conditions=tuple(
                Condition(query=MappingProxyType(copy.deepcopy(c.query)), then=c.then)
                for c in spec.conditions or ()
            ),
            default=spec.default,
            on_error_codes=scope.on_error_codes,
            balance=spec.balance or "weighted",
            recover_streams=recover if recover is not None else spec.mode == "fallback",
            breaker=scope.breaker,
        )
    provider = node.provider
    if provider is None:  # excluded by parse_config; kept for type narrowing
        raise ConfigError([(format_loc((*loc, "provider")), "required")])
    key = node.api_key.get_secret_value() if node.api_key is not None else ""
    options = {
        name: _option_value(getattr(node, name))
        for name in PROVIDER_OPTION_FIELDS
        if getattr(node, name) is not None
    }
    caller = scope.caller
    if by_caller:
        caller = caller | {name for name in _CALLER_TARGET_FIELDS if getattr(node, name)}
    custom_host = scope.custom_host
    if custom_host is None:
        custom_host = inherited.custom_hosts.get(provider)
        caller = caller - {"custom_host"}
    return Target(
        path=path,
        provider=provider,
        name=node.name,
        api_key=Secret(key) if key else inherited.api_keys.get(provider),
        weight=weight,
        override_params=_frozen_params(scope.override_params),
        retry=scope.retry or RetrySettings(),
        request_timeout_ms=scope.request_timeout_ms,
        first_token_timeout_ms=scope.first_token_timeout_ms,
        stream_idle_timeout_ms=scope.stream_idle_timeout_ms,
        custom_host=custom_host,
        forward_headers=scope.forward_headers,
        provider_options=MappingProxyType(options) if options else EMPTY,
        caller_fields=frozenset(caller),
        on_error_codes=scope.on_error_codes,
        recover_streams=(
            scope.recover_streams if scope.recover_streams is not None else scope.in_fallback
        ),
        supports_prefill=scope.supports_prefill,
        breaker=scope.breaker,
    )


def compile_config(
    raw: Any,
    *,
    config_id: str,
    inherited: Inherited = Inherited(),
    warnings: list[str] | None = None,
    caller_supplied: bool = False,
    max_targets: int = DEFAULT_MAX_TARGETS,
) -> RoutingConfig:
    """Validate a config and compile it into a routing tree.

    ``raw`` is the decoded config (or an already parsed :class:`ConfigNode`). Node paths
    follow Portkey's option index: ``config``, ``config.targets[0]``, ... Notes about
    accepted-but-ignored fields are appended to ``warnings`` when given. ``max_targets``
    (the server's ``limits.max_targets_per_config``) bounds the nodes listed in ``targets``
    lists over the whole tree. ``caller_supplied`` says a caller wrote ``raw`` (every setting
    in it is the caller's, see ``Target.caller_fields``).
    Raises :class:`ConfigError` listing every problem found.
    """
    node = parse_config(raw, max_targets=max_targets)
    scope = _Scope.top(inherited)
    root = _compile_node(node, ROOT_PATH, (), scope, inherited, warnings, caller_supplied)
    cache = response_cache(node.cache, warnings)
    return RoutingConfig(id=config_id, root=root, caller_supplied=caller_supplied, cache=cache)


CACHE_NOT_ROOT = "ignored (a config's cache is read at its root only)"
"""The warning of a ``cache`` below the root of a config."""

DEFAULT_CACHE_MAX_AGE_S = 7 * 24 * 3600
"""``max_age`` of a ``simple`` cache that sets none (Portkey's default, seven days)."""


def response_cache(raw: Any, warnings: list[str] | None) -> ResponseCache | None:
    """The response cache a root's ``cache`` asks for: ``{mode: simple}`` with an optional
    positive integer ``max_age`` (seconds, camelCase ``maxAge`` too). Anything else (``semantic``
    mode, a malformed value) caches nothing and is reported in ``warnings``."""
    if raw is None:
        return None
    if isinstance(raw, dict) and raw.get("mode") == "simple":
        age = raw.get("max_age", raw.get("maxAge", DEFAULT_CACHE_MAX_AGE_S))
        if isinstance(age, int) and not isinstance(age, bool) and age > 0:
            return ResponseCache(max_age_s=age)
        note = "ignored (max_age must be a positive number of seconds)"
    else:
        note = "ignored (relaygate caches in simple mode only: {mode: simple, max_age})"
    if warnings is not None:
        warnings.append(f"cache: {note}")
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def load_config_json(
    text: str | bytes,
    *,
    config_id: str = "inline",
    inherited: Inherited = Inherited(),
    warnings: list[str] | None = None,
    max_targets: int = DEFAULT_MAX_TARGETS,
) -> RoutingConfig:
    """Decode a JSON config (e.g. an ``x-portkey-config`` header) and compile it.

    Invalid JSON raises ``ConfigError([("(root)", "invalid JSON: <reason>")])``; the reason
    gives a position, never the text.
    """
    try:
        raw = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        reason = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        raise ConfigError([(ROOT, f"invalid JSON: {reason}")]) from None
    except UnicodeDecodeError:
        raise ConfigError([(ROOT, "invalid JSON: not valid UTF-8")]) from None
    except RecursionError:
        raise ConfigError([(ROOT, "invalid JSON: nested too deeply")]) from None
    except ValueError as exc:
        raise ConfigError([(ROOT, f"invalid JSON: {exc}")]) from None
    return compile_config(
        raw, config_id=config_id, inherited=inherited, warnings=warnings, max_targets=max_targets
    )
