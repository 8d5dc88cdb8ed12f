"""Portkey-format routing configs as written: field types, the config model and its checks.

A config is a node. A *strategy node* has ``strategy`` and ``targets`` (a list of nodes); a
*target* has ``provider`` and calls one provider. The common fields ``override_params``,
``retry``, ``request_timeout``, ``first_token_timeout``, ``stream_idle_timeout``,
``custom_host`` and ``forward_headers`` may appear on any
node and flow down to the targets below it; the nearest value wins, except
``override_params``, whose keys merge (nearest key wins).

:func:`parse_config` checks a config and returns its :class:`ConfigNode` model;
:func:`relaygate.config.tree.compile_config` turns that into a
:class:`~relaygate.config.model.RoutingConfig` with inheritance applied. Both raise
:class:`~relaygate.config.errors.ConfigError` listing every problem with its path
(``targets[1].retry.attempts: must be >= 0``). Fields may be written in snake_case or in
the camelCase spelling the Portkey gateway also accepts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
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
    Loc,
    error_from_issues,
    issues_from_validation_error,
)
from relaygate.config.model import (
    DEFAULT_RETRY_STATUS_CODES,
    BreakerSettings,
    RetrySettings,
)
from relaygate.nesting import too_deep
from relaygate.security.forwarding import forwarding_issue
from relaygate.strategies.conditions import query_issues

__all__ = [
    "DEFAULT_MAX_TARGETS",
    "MAX_CONFIG_DEPTH",
    "MAX_NESTING",
    "CircuitBreakerSpec",
    "ConditionSpec",
    "ConfigNode",
    "RetrySpec",
    "StrategySpec",
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
    "strict_open_ai_compliance",
    "aws_region",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
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
        "strict_open_ai_compliance",
        "strictOpenAiCompliance",
        "aws_region",
        "awsRegion",
        "aws_access_key_id",
        "awsAccessKeyId",
        "aws_secret_access_key",
        "awsSecretAccessKey",
        "aws_session_token",
        "awsSessionToken",
    }
)


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
ErrorCode = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
"""An upstream error ``code``/``type`` value as named in ``on_error_codes``."""
LowerName = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1)]
BaseUrl = Annotated[str, AfterValidator(check_base_url)]
"""An http(s) base URL up to and including the version path (``http://host:9001/v1``)."""
HostLabel = Annotated[
    str,
    AfterValidator(_pattern_check(_DNS_LABEL, "must be a single DNS label (letters, digits, -)")),
]
"""One DNS label (an Azure resource name becomes ``{label}.openai.azure.com``)."""
AwsRegion = Annotated[
    str,
    AfterValidator(
        _pattern_check(
            re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}"),
            "must be an AWS region name such as us-east-1",
        )
    ),
]
"""An AWS region (Bedrock's host is ``bedrock-runtime.{region}.amazonaws.com``)."""
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


class CircuitBreakerSpec(_Spec):
    """``cb_config``: when a target's circuit opens, for how long, and how it recovers.

    Portkey's fields (``failure_threshold``, ``failure_threshold_percentage``,
    ``minimum_requests``, ``cooldown_interval``, ``failure_status_codes``) plus relaygate's
    ``window``, ``half_open_probes``, ``on_all_open`` and ``enabled``. Semantics:
    :class:`~relaygate.config.model.BreakerSettings`.
    """

    failure_threshold: Annotated[Int, Field(ge=1)] | None = _field(
        "failure_threshold",
        "failureThreshold",
        description="Failures within the window that open the circuit.",
    )
    failure_threshold_percentage: Annotated[Number, Field(gt=0, le=100)] | None = _field(
        "failure_threshold_percentage",
        "failureThresholdPercentage",
        description="Failure rate (percent) within the window that opens the circuit.",
    )
    minimum_requests: Annotated[Int, Field(ge=1)] | None = _field(
        "minimum_requests",
        "minimumRequests",
        description="Outcomes the window must hold before the failure rate counts (default 5).",
    )
    cooldown_interval: Annotated[Int, Field(ge=1)] | None = _field(
        "cooldown_interval",
        "cooldownInterval",
        description="Milliseconds an open circuit refuses attempts before probing (default 30000).",
    )
    failure_status_codes: list[StatusCode] | None = _field(
        "failure_status_codes",
        "failureStatusCodes",
        description="Upstream statuses counted as failures; default any 5xx. Timeouts and "
        "connection errors always count.",
    )
    window: Annotated[Int, Field(ge=1)] | None = _field(
        "window",
        description="Length of the sliding window in milliseconds (default 60000).",
    )
    half_open_probes: Annotated[Int, Field(ge=1, le=100)] | None = _field(
        "half_open_probes",
        "halfOpenProbes",
        description="Attempts let through after the cooldown; all must succeed to close "
        "(default 1).",
    )
    on_all_open: Literal["try", "reject"] | None = _field(
        "on_all_open",
        "onAllOpen",
        description="When every child of a strategy is open: `try` them anyway (default) or "
        "`reject` with a fast 503.",
    )
    enabled: bool | None = _field(
        "enabled", description="`false` turns the breaker off below this node."
    )
    id: Any = _field("id", description="Accepted for compatibility and ignored.")

    def settings(self, *, caller: bool = False) -> BreakerSettings:
        """The compiled breaker policy.

        ``caller``: a caller wrote this ``cb_config`` (an ``x-portkey-config`` header config).
        Breaker state is shared with the operator's configs calling the same endpoint, so a
        caller's ``failure_status_codes`` keep only the statuses that say the endpoint is
        failing (408, 429, 5xx), never a 4xx the caller's own request could provoke.
        """
        defaults = BreakerSettings()
        codes: frozenset[int] | None = None
        if self.failure_status_codes is not None:
            codes = frozenset(self.failure_status_codes)
            if caller:
                codes = frozenset(c for c in codes if c >= 500 or c in (408, 429))
        return BreakerSettings(
            failure_threshold=self.failure_threshold,
            failure_threshold_percentage=self.failure_threshold_percentage,
            minimum_requests=_or(self.minimum_requests, defaults.minimum_requests),
            cooldown_interval_ms=_or(self.cooldown_interval, defaults.cooldown_interval_ms),
            failure_status_codes=codes,
            window_ms=_or(self.window, defaults.window_ms),
            half_open_probes=_or(self.half_open_probes, defaults.half_open_probes),
            on_all_open=self.on_all_open or defaults.on_all_open,
            enabled=self.enabled is not False,
        )


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


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
    on_error_codes: list[ErrorCode] | None = _field(
        "on_error_codes",
        "onErrorCodes",
        description="Upstream error codes that fall back although relaygate treats them as "
        "final (content-policy refusals...); `*`: none is final. Inherited.",
    )
    balance: Literal["weighted", "least_in_flight", "p2c_ewma"] | None = _field(
        "balance",
        description="How `loadbalance` picks: `weighted` (random by weight, the default), "
        "`least_in_flight`, or `p2c_ewma` (power of two choices over peak-EWMA latency).",
    )
    conditions: list[ConditionSpec] | None = _field(
        "conditions", description="Rules of a `conditional` strategy, first match wins."
    )
    default: str | None = _field(
        "default", description="Child used by a `conditional` strategy when no rule matches."
    )
    recover_streams: bool | None = _field(
        "recover_streams",
        "recoverStreams",
        description="When a stream breaks after reaching the client, continue it with the "
        "remaining retries and targets (default: on for `fallback`; inherited).",
    )
    cb_config: CircuitBreakerSpec | None = _field(
        "cb_config",
        "cbConfig",
        description="Circuit breaker of the targets below (Portkey's place for it).",
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
    first_token_timeout: Annotated[Int, Field(gt=0)] | None = _field(
        "first_token_timeout",
        "firstTokenTimeout",
        description="Streams: milliseconds from sending an attempt to its first chunk "
        "carrying content; on expiry the attempt is a timeout (retry or fallback).",
    )
    stream_idle_timeout: Annotated[Int, Field(gt=0)] | None = _field(
        "stream_idle_timeout",
        "streamIdleTimeout",
        description="Streams: longest gap in milliseconds between chunks once the stream "
        "is handed to the client; default `request_timeout`.",
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
    strict_open_ai_compliance: bool | None = _field(
        "strict_open_ai_compliance",
        "strictOpenAiCompliance",
        description="Translated providers (anthropic, google, cohere, bedrock): refuse a chat "
        "parameter the provider "
        "cannot honour with 400 `unsupported_parameter` instead of dropping it with a "
        "warning; default: the `x-portkey-strict-open-ai-compliance` request header, else "
        "false.",
    )
    aws_region: AwsRegion | None = _field(
        "aws_region", "awsRegion", description="AWS region of a `bedrock` target."
    )
    aws_access_key_id: SecretStr | None = _field(
        "aws_access_key_id",
        "awsAccessKeyId",
        description="AWS access key id of a `bedrock` target (default: the AWS credential "
        "chain: environment, profile...).",
    )
    aws_secret_access_key: SecretStr | None = _field(
        "aws_secret_access_key",
        "awsSecretAccessKey",
        description="AWS secret access key of a `bedrock` target.",
    )
    aws_session_token: SecretStr | None = _field(
        "aws_session_token",
        "awsSessionToken",
        description="AWS session token of a `bedrock` target (temporary credentials).",
    )
    supports_prefill: bool | None = _field(
        "supports_prefill",
        "supportsPrefill",
        description="The targets below continue a partial assistant message: a broken stream "
        "is recovered there by asking to continue its text (inherited).",
    )
    cb_config: CircuitBreakerSpec | None = _field(
        "cb_config",
        "cbConfig",
        description="Circuit breaker of this target, or of the targets below a strategy.",
    )
    cache: Any = _field(
        "cache",
        description="At the root: `{mode: simple, max_age: seconds}` caches answers "
        "(exact match); anything else is accepted and ignored.",
    )
    metadata: Any = _field("metadata", description="Accepted for compatibility and ignored.")

    @property
    def cb_spec(self) -> CircuitBreakerSpec | None:
        """This node's ``cb_config``: its own field, or ``strategy.cb_config``."""
        if self.cb_config is not None:
            return self.cb_config
        return self.strategy.cb_config if self.strategy is not None else None

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
    if strategy.get("balance") is not None and mode != "loadbalance":
        issues.append(((*at, "balance"), "only valid with mode 'loadbalance'"))
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


_CB_KEYS = ("cb_config", "cbConfig")
_CB_THRESHOLDS = (
    "failure_threshold",
    "failureThreshold",
    "failure_threshold_percentage",
    "failureThresholdPercentage",
    "enabled",
)


def _breaker_issues(raw: dict[str, Any], strategy: Any, loc: Loc) -> list[tuple[Loc, str]]:
    """``cb_config`` set in one place per node, with a threshold (or ``enabled: false``)."""
    found: list[tuple[Loc, Any]] = [((*loc, k), raw[k]) for k in _CB_KEYS if k in raw]
    if isinstance(strategy, dict):
        found += [((*loc, "strategy", k), strategy[k]) for k in _CB_KEYS if k in strategy]
    if len(found) > 1:
        return [(found[1][0], "cb_config is set twice on this node; keep one")]
    issues: list[tuple[Loc, str]] = []
    for where, spec in found:
        if isinstance(spec, dict) and not any(k in spec for k in _CB_THRESHOLDS):
            issues.append(
                (where, "needs failure_threshold or failure_threshold_percentage (or enabled)")
            )
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
    issues += _breaker_issues(raw, strategy, loc)
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
