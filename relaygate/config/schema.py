"""Portkey-format routing configs: validation and compilation into the routing tree.

A config is a node. A *strategy node* has ``strategy`` and ``targets`` (a list of nodes); a
*target* has ``provider`` and calls one provider. The common fields ``override_params``,
``retry``, ``request_timeout``, ``custom_host`` and ``forward_headers`` may appear on any
node and flow down to the targets below it; the nearest value wins, except
``override_params``, whose keys merge (nearest key wins).

:func:`parse_config` checks a config and returns its :class:`ConfigNode` model;
:func:`compile_config` turns it into a :class:`~relaygate.config.model.RoutingConfig` with
inheritance applied. Both raise :class:`~relaygate.config.errors.ConfigError` listing every
problem with its path (``targets[1].retry.attempts: must be >= 0``). Fields may be written
in snake_case or in the camelCase spelling the Portkey gateway also accepts.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from relaygate.config.errors import (
    ROOT,
    ConfigError,
    Loc,
    error_from_issues,
    format_loc,
    issues_from_validation_error,
)
from relaygate.config.model import (
    DEFAULT_RETRY_STATUS_CODES,
    EMPTY,
    ROOT_PATH,
    Condition,
    Node,
    RetrySettings,
    RoutingConfig,
    Secret,
    Strategy,
    Target,
)
from relaygate.nesting import too_deep
from relaygate.security.forwarding import forwarding_issue
from relaygate.strategies.conditions import query_issues

__all__ = [
    "DEFAULT_MAX_TARGETS",
    "MAX_CONFIG_DEPTH",
    "MAX_NESTING",
    "ConditionSpec",
    "ConfigNode",
    "Inherited",
    "RetrySpec",
    "StrategySpec",
    "compile_config",
    "load_config_json",
    "parse_config",
]

MAX_NESTING = 16
"""How many levels of ``targets`` a config may nest."""

MAX_CONFIG_DEPTH = 64
"""How deep a config document may nest as JSON (objects and lists, any field).

Checked iteratively before any recursive code (pydantic, ``copy.deepcopy``, the condition
evaluator) sees the document. It also bounds ``override_params``: merged into a request body
of at most ``limits.max_json_depth`` levels, the result stays far below the 255 levels
``orjson`` can encode.
"""

_DEPTH_PATH_PARTS = 4

DEFAULT_MAX_TARGETS = 50
"""Default of ``limits.max_targets_per_config``: nodes listed in ``targets`` lists, counted
over the whole tree."""

PROVIDER_OPTION_FIELDS: tuple[str, ...] = (
    "resource_name",
    "deployment_id",
    "api_version",
    "azure_model_name",
)
"""Target fields passed through to the provider adapter as ``Target.provider_options``."""

_TARGET_ONLY_KEYS: frozenset[str] = frozenset(
    {
        "provider",
        "api_key",
        "apiKey",
        "resource_name",
        "resourceName",
        "deployment_id",
        "deploymentId",
        "api_version",
        "apiVersion",
        "azure_model_name",
        "azureModelName",
    }
)

_IGNORED_FIELD_NOTES: dict[str, str] = {
    "cache": "ignored (relaygate does not cache responses)",
    "metadata": "ignored (relaygate does not use config metadata)",
}


# --- field types -------------------------------------------------------------------------


def _reject_bool(kind: str, message: str) -> Callable[[Any], Any]:
    """A before-validator refusing JSON booleans where a number is expected."""

    def check(value: Any) -> Any:
        if isinstance(value, bool):
            raise PydanticCustomError(kind, message)
        return value

    return check


def check_base_url(value: str) -> str:
    """Accept an absolute http(s) URL; return it without a trailing ``/``.

    Refused: other schemes, a missing host, a bad port, a query string or fragment (the
    operation path is appended to the URL), credentials (``user:key@host``: a key belongs in
    ``api_key``, where it is kept secret) and white space or control characters. Raises
    ``PydanticCustomError``; its message never repeats the URL.
    """
    value = value.strip()
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in value):
        raise PydanticCustomError("url", "must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        raise PydanticCustomError("url", "must be an http(s) URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise PydanticCustomError("url", "must be an http(s) URL")
    if "@" in parts.netloc:
        raise PydanticCustomError(
            "url", "must not embed credentials (user:key@host); put the key in api_key"
        )
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise PydanticCustomError("url", "must not have a query string or fragment")
    return value.rstrip("/")


_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.IGNORECASE)
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9._~-]{1,256}")


def _pattern_check(pattern: re.Pattern[str], message: str) -> Callable[[str], str]:
    """An after-validator accepting only strings that fully match ``pattern``."""

    def check(value: str) -> str:
        if not pattern.fullmatch(value) or value in (".", ".."):
            raise PydanticCustomError("pattern", message)
        return value

    return check


Int = Annotated[int, BeforeValidator(_reject_bool("int_type", "must be an integer"))]
Number = Annotated[
    float,
    BeforeValidator(_reject_bool("float_type", "must be a number")),
    Field(allow_inf_nan=False),
]
StatusCode = Annotated[Int, Field(ge=100, le=599)]
NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]
LowerName = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1)]
BaseUrl = Annotated[str, AfterValidator(check_base_url)]
"""An http(s) base URL up to and including the version path (``http://host:9001/v1``)."""
HostLabel = Annotated[
    str,
    AfterValidator(_pattern_check(_DNS_LABEL, "must be a single DNS label (letters, digits, -)")),
]
"""One DNS label (an Azure resource name becomes ``{label}.openai.azure.com``)."""
PathSegment = Annotated[
    str,
    AfterValidator(
        _pattern_check(_PATH_SEGMENT, "must be one URL path segment (letters, digits, . _ ~ -)")
    ),
]
"""A value placed in a URL path or query as is (deployment ids, API versions)."""


def _forwardable(names: list[str]) -> list[str]:
    for name in names:
        issue = forwarding_issue(name)
        if issue is not None:
            raise PydanticCustomError("forward_header", issue)
    return names


ForwardHeaders = Annotated[list[LowerName], AfterValidator(_forwardable)]


def _field(name: str, camel: str | None = None, *, description: str, **kw: Any) -> Any:
    """An optional field accepting ``name`` and, if given, its camelCase spelling ``camel``."""
    alias = AliasChoices(name, camel) if camel else None
    return Field(default=None, validation_alias=alias, description=description, **kw)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


# --- the user-written config -------------------------------------------------------------


class RetrySpec(_Spec):
    """``retry``: how often a target is retried, and on which upstream statuses."""

    attempts: Annotated[Int, Field(ge=0, le=10)] = Field(
        description="Retries after the first try (0-10); `3` means up to four calls."
    )
    on_status_codes: list[StatusCode] | None = _field(
        "on_status_codes",
        "onStatusCodes",
        description="Upstream statuses that are retried; default 429, 500, 502, 503, 504.",
    )
    use_retry_after_header: bool | None = _field(
        "use_retry_after_header",
        "useRetryAfterHeader",
        description="Wait as long as the upstream's Retry-After header asks, within the cap.",
    )

    def settings(self) -> RetrySettings:
        """The compiled retry policy."""
        codes = (
            DEFAULT_RETRY_STATUS_CODES
            if self.on_status_codes is None
            else frozenset(self.on_status_codes)
        )
        return RetrySettings(
            attempts=self.attempts,
            on_status_codes=codes,
            use_retry_after_header=bool(self.use_retry_after_header),
        )


class ConditionSpec(_Spec):
    """One rule of a conditional strategy: route to the child named ``then`` on a match."""

    query: dict[str, Any] = Field(description="Match expression over the request metadata.")
    then: str = Field(description="`name` of the child node to route to.")


class StrategySpec(_Spec):
    """``strategy``: how a strategy node picks among its ``targets``."""

    mode: Literal["single", "fallback", "loadbalance", "conditional"] = Field(
        description="`single` uses the first child, `fallback` tries children in order, "
        "`loadbalance` picks by weight, `conditional` routes by `conditions`."
    )
    on_status_codes: list[StatusCode] | None = _field(
        "on_status_codes",
        "onStatusCodes",
        description="Fallback only on these upstream statuses; default: any failure.",
    )
    conditions: list[ConditionSpec] | None = _field(
        "conditions", description="Rules of a `conditional` strategy, first match wins."
    )
    default: str | None = _field(
        "default", description="Child used by a `conditional` strategy when no rule matches."
    )


class ConfigNode(_Spec):
    """One node of a Portkey config: a strategy node or a target.

    Field shapes are checked here; rules spanning fields (``strategy`` with ``targets``,
    ``provider`` on leaves, ``then`` names) are checked by :func:`parse_config`.
    """

    strategy: StrategySpec | None = _field(
        "strategy", description="Makes this a strategy node over `targets`."
    )
    targets: Annotated[list[ConfigNode], Field(min_length=1)] | None = _field(
        "targets", description="Children of a strategy node: targets or nested strategy nodes."
    )
    name: NonEmptyStr | None = _field(
        "name", description="Label used by conditional routing and in telemetry."
    )
    weight: Annotated[Number, Field(ge=0)] | None = _field(
        "weight", description="Share of traffic under a `loadbalance` parent (default 1)."
    )
    provider: LowerName | None = _field(
        "provider", description="Provider this target calls, e.g. `openai`."
    )
    api_key: SecretStr | None = _field(
        "api_key", "apiKey", description="Credential sent to the provider."
    )
    override_params: dict[str, Any] | None = _field(
        "override_params",
        "overrideParams",
        description="Request-body fields forced on the targets below (e.g. `model`).",
    )
    retry: RetrySpec | None = _field("retry", description="Retry policy of the targets below.")
    request_timeout: Annotated[Int, Field(gt=0)] | None = _field(
        "request_timeout",
        "requestTimeout",
        description="Per-attempt timeout in milliseconds.",
    )
    custom_host: BaseUrl | None = _field(
        "custom_host",
        "customHost",
        description="Base URL of the provider API, including the version path.",
    )
    forward_headers: ForwardHeaders | None = _field(
        "forward_headers",
        "forwardHeaders",
        description="Client request headers passed on to the provider.",
    )
    resource_name: HostLabel | None = _field(
        "resource_name", "resourceName", description="Azure OpenAI resource name."
    )
    deployment_id: PathSegment | None = _field(
        "deployment_id", "deploymentId", description="Azure OpenAI deployment id."
    )
    api_version: PathSegment | None = _field(
        "api_version", "apiVersion", description="Provider API version (Azure)."
    )
    azure_model_name: str | None = _field(
        "azure_model_name", "azureModelName", description="Model name behind an Azure deployment."
    )
    cache: Any = _field("cache", description="Accepted for compatibility and ignored.")
    metadata: Any = _field("metadata", description="Accepted for compatibility and ignored.")

    @property
    def is_strategy(self) -> bool:
        """Whether this node routes over children rather than calling a provider."""
        return self.strategy is not None


# --- checks spanning fields --------------------------------------------------------------


def depth_issues(raw: Any, prefix: Loc = ()) -> list[tuple[Loc, str]]:
    """Where ``raw`` nests deeper than :data:`MAX_CONFIG_DEPTH`, if it does: the first few
    levels of the path down to the first container past the bound.

    Iterative, so safe on any input; run on every raw config before anything recursive.
    """
    where = too_deep(raw, MAX_CONFIG_DEPTH)
    if where is None:
        return []
    # The field the deep value sits under, not all the levels down to it.
    return [
        ((*prefix, *where[:_DEPTH_PATH_PARTS]), f"nests more than {MAX_CONFIG_DEPTH} levels deep")
    ]


def _nesting_issues(raw: Any, prefix: Loc, max_targets: int) -> list[tuple[Loc, str]]:
    """Refuse configs nesting ``targets`` deeper than :data:`MAX_NESTING`, or listing more
    than ``max_targets`` nodes in all, before any recursive walk."""
    stack: list[tuple[Any, int, Loc]] = [(raw, 1, prefix)]
    count = 0
    while stack:
        node, depth, loc = stack.pop()
        if not isinstance(node, dict):
            continue
        targets = node.get("targets")
        if not isinstance(targets, list):
            continue
        if depth > MAX_NESTING:
            return [((*loc, "targets"), f"targets nest more than {MAX_NESTING} levels deep")]
        count += len(targets)
        if count > max_targets:
            return [
                (
                    (*prefix, "targets"),
                    f"the config has more than {max_targets} targets in all "
                    "(limits.max_targets_per_config)",
                )
            ]
        stack.extend((child, depth + 1, (*loc, "targets", i)) for i, child in enumerate(targets))
    return []


def _names_note(names: list[str]) -> str:
    return f"(names: {', '.join(names)})" if names else "(no target has a name)"


def _strategy_issues(strategy: dict[str, Any], targets: Any, loc: Loc) -> list[tuple[Loc, str]]:
    issues: list[tuple[Loc, str]] = []
    mode = strategy.get("mode")
    conditions = strategy.get("conditions")
    default = strategy.get("default")
    at = (*loc, "strategy")
    if mode in ("single", "fallback", "loadbalance"):
        if conditions is not None:
            issues.append(((*at, "conditions"), "only valid with mode 'conditional'"))
        if default is not None:
            issues.append(((*at, "default"), "only valid with mode 'conditional'"))
    if mode == "conditional":
        if conditions is None:
            issues.append(((*at, "conditions"), "required when mode is 'conditional'"))
        elif isinstance(conditions, list) and not conditions:
            issues.append(((*at, "conditions"), "must not be empty"))
        if isinstance(targets, list):
            names = [
                t["name"] for t in targets if isinstance(t, dict) and isinstance(t.get("name"), str)
            ]
            refs: list[tuple[Loc, Any]] = [((*at, "default"), default)]
            if isinstance(conditions, list):
                refs += [
                    ((*at, "conditions", i, "then"), c.get("then"))
                    for i, c in enumerate(conditions)
                    if isinstance(c, dict)
                ]
            for ref_loc, ref in refs:
                if isinstance(ref, str) and ref not in names:
                    issues.append((ref_loc, f"no target named '{ref}' {_names_note(names)}"))
        if isinstance(conditions, list):
            for i, condition in enumerate(conditions):
                if isinstance(condition, dict) and "query" in condition:
                    issues += query_issues(condition["query"], (*at, "conditions", i, "query"))
    if mode == "loadbalance" and isinstance(targets, list) and targets:
        weights = [t.get("weight", 1) if isinstance(t, dict) else None for t in targets]
        numeric = all(isinstance(w, int | float) and not isinstance(w, bool) for w in weights)
        if numeric and all(w == 0 for w in weights):
            issues.append(((*loc, "targets"), "loadbalance needs a target with weight > 0"))
    return issues


def _structure_issues(raw: Any, loc: Loc) -> list[tuple[Loc, str]]:
    """Rules spanning fields, checked on the raw input so they are reported even when some
    field elsewhere has the wrong type. Values of the wrong type are skipped here: the
    field-shape validation reports them."""
    if not isinstance(raw, dict):
        return []
    issues: list[tuple[Loc, str]] = []
    strategy = raw.get("strategy")
    targets = raw.get("targets")
    if targets is not None and strategy is None:
        issues.append(((*loc, "strategy"), "required when 'targets' is set"))
    if strategy is not None and targets is None:
        issues.append(((*loc, "targets"), "required when 'strategy' is set"))
    if strategy is None and targets is None:
        if raw.get("provider") is None:
            issues.append(
                ((*loc, "provider"), "required (a node needs 'provider' or 'strategy' + 'targets')")
            )
    else:
        for key in raw:
            if key in _TARGET_ONLY_KEYS:
                issues.append(((*loc, key), "only valid on a target, not on a strategy node"))
    if isinstance(strategy, dict):
        issues += _strategy_issues(strategy, targets, loc)
    if isinstance(targets, list):
        seen: dict[str, int] = {}
        for i, child in enumerate(targets):
            name = child.get("name") if isinstance(child, dict) else None
            if isinstance(name, str):
                if name in seen:
                    issues.append(
                        (
                            (*loc, "targets", i, "name"),
                            f"duplicate name '{name}' (also targets[{seen[name]}])",
                        )
                    )
                else:
                    seen[name] = i
            issues += _structure_issues(child, (*loc, "targets", i))
    return issues


def validate_node(
    raw: Any, prefix: Loc = (), max_targets: int = DEFAULT_MAX_TARGETS
) -> tuple[ConfigNode | None, list[tuple[Loc, str]]]:
    """Check a config; return its model (``None`` if invalid) and every issue found.

    Issue locations start with ``prefix``, so a config embedded in a larger document reports
    paths within that document. A document nesting deeper than :data:`MAX_CONFIG_DEPTH`,
    nesting ``targets`` deeper than :data:`MAX_NESTING` or listing more than ``max_targets``
    nodes in its ``targets`` lists is refused with that one issue, before anything else looks
    at it.
    """
    if isinstance(raw, ConfigNode):
        raw = raw.model_dump(exclude_unset=True)
    if not isinstance(raw, dict):
        return None, [(prefix, "must be an object")]
    bounded = depth_issues(raw, prefix) or _nesting_issues(raw, prefix, max_targets)
    if bounded:
        return None, bounded
    node: ConfigNode | None
    issues: list[tuple[Loc, str]] = []
    try:
        node = ConfigNode.model_validate(raw)
    except ValidationError as exc:
        node = None
        issues += issues_from_validation_error(exc, prefix)
    issues += _structure_issues(raw, prefix)
    return (None if issues else node), issues


def parse_config(raw: Any, *, max_targets: int = DEFAULT_MAX_TARGETS) -> ConfigNode:
    """Validate a config (a dict, usually decoded JSON) and return its model.

    ``max_targets`` bounds the nodes listed in ``targets`` lists over the whole tree.
    Raises :class:`ConfigError` listing every problem found.
    """
    node, issues = validate_node(raw, max_targets=max_targets)
    if issues or node is None:
        raise error_from_issues(issues or [((), "must be an object")])
    return node


# --- compilation -------------------------------------------------------------------------


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


def _dedupe(items: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True)
class _Scope:
    """The inheritable settings in force at one node."""

    override_params: Mapping[str, Any]
    retry: RetrySettings | None
    request_timeout_ms: int | None
    custom_host: str | None
    forward_headers: tuple[str, ...]
    caller: frozenset[str] = frozenset()
    """Names of the settings above whose value a caller chose."""

    @classmethod
    def top(cls, inherited: Inherited) -> _Scope:
        scope = cls(
            override_params=dict(inherited.override_params),
            retry=inherited.retry,
            request_timeout_ms=inherited.request_timeout_ms,
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
            custom_host=node.custom_host if node.custom_host is not None else self.custom_host,
            forward_headers=(
                _dedupe(tuple(node.forward_headers))
                if node.forward_headers is not None
                else self.forward_headers
            ),
            caller=caller,
        )


_INHERITABLE: Mapping[str, str] = MappingProxyType(
    {
        "override_params": "override_params",
        "retry": "retry",
        "request_timeout_ms": "request_timeout",
        "custom_host": "custom_host",
        "forward_headers": "forward_headers",
    }
)
"""Inherited settings: the name in the compiled scope -> the config field that sets it."""

_CALLER_TARGET_FIELDS: tuple[str, ...] = ("api_key", *PROVIDER_OPTION_FIELDS)
"""Target-only fields whose provenance follows the document that sets them."""


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
        for key, note in _IGNORED_FIELD_NOTES.items():
            if getattr(node, key) is not None:
                warnings.append(f"{format_loc((*loc, key))}: {note}")
    scope = scope.enter(node, by_caller)
    weight = node.weight if node.weight is not None else 1.0
    if node.strategy is not None:
        spec = node.strategy
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
        )
    provider = node.provider
    if provider is None:  # excluded by parse_config; kept for type narrowing
        raise ConfigError([(format_loc((*loc, "provider")), "required")])
    key = node.api_key.get_secret_value() if node.api_key is not None else ""
    options = {
        name: getattr(node, name)
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
        custom_host=custom_host,
        forward_headers=scope.forward_headers,
        provider_options=MappingProxyType(options) if options else EMPTY,
        caller_fields=frozenset(caller),
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
    return RoutingConfig(id=config_id, root=root, caller_supplied=caller_supplied)


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
