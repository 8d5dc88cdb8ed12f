"""The server config file: listen address, named routing configs, provider defaults, limits.

The file is YAML or JSON. ``${VAR}`` references (see :mod:`relaygate.config.envref`) are
resolved in every string before validation, and every embedded Portkey config is checked
at load time, so ``relaygate validate`` reports all problems of the file at once, with paths
such as ``configs.prod.targets[1].retry.attempts``.

Example::

    listen: {host: 127.0.0.1, port: 8787}
    default_config: prod
    configs:
      prod:
        strategy: {mode: fallback}
        targets:
          - {provider: openai, override_params: {model: gpt-4o-mini}}
          - {provider: anthropic, override_params: {model: claude-3-5-haiku-latest}}
    providers:
      openai: {api_key: "${OPENAI_API_KEY}"}
      anthropic: {api_key: "${ANTHROPIC_API_KEY}"}
    auth: {api_keys: ["${RELAYGATE_API_KEY}"]}
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    StringConstraints,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from relaygate.config.compile import CompileLimits, compile_one, compile_sources
from relaygate.config.envref import expand_env_collect
from relaygate.config.errors import (
    ROOT,
    ConfigError,
    Loc,
    error_from_issues,
    issues_from_validation_error,
    sorted_errors,
)
from relaygate.config.model import BreakerSettings, RoutingConfig, Secret
from relaygate.config.schema import (
    DEFAULT_MAX_TARGETS,
    BaseUrl,
    ConfigNode,
    Int,
    LowerName,
    Number,
    depth_issues,
    validate_node,
)
from relaygate.config.state import LimitSpec, PriceSettings, RateLimitSettings, StateSettings
from relaygate.config.tree import Inherited
from relaygate.security.egress import EgressPolicy
from relaygate.security.keys import HASH_PREFIX, UNSCOPED, KeyScope, KeyStore

__all__ = [
    "AuthSettings",
    "BreakerDefaults",
    "EgressSettings",
    "GatewayKeySettings",
    "LimitsSettings",
    "ListenSettings",
    "LogSettings",
    "MetricSettings",
    "ProviderDefaults",
    "RetryBackoffSettings",
    "SecuritySettings",
    "ServerConfig",
    "ShutdownSettings",
    "TelemetrySettings",
    "TimeoutSettings",
    "TraceSettings",
    "load_server_config",
    "parse_server_config",
]

DEFAULT_CONFIG_ID = "default"
"""``RoutingConfig.id`` of a default config written inline in the server config."""


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, use_attribute_docstrings=True
    )


class ListenSettings(_Section):
    """Where the gateway accepts connections."""

    host: str = "127.0.0.1"
    """Interface to bind; `0.0.0.0` listens on all interfaces."""
    port: Annotated[Int, Field(ge=0, le=65535)] = 8787
    """TCP port; 0 picks a free one."""


DEFAULT_MAX_RECOVERY_BYTES = 4 * 1024 * 1024
"""The default of ``limits.max_recovery_bytes``: what a recoverable stream keeps of what it
delivered (an answer of tens of thousands of tokens in OpenAI's chunk events)."""


class LimitsSettings(_Section):
    """Bounds that protect the gateway from oversized or endless requests."""

    max_body_bytes: Annotated[Int, Field(gt=0)] = 10 * 1024 * 1024
    """Request bodies larger than this are refused with 413."""
    max_config_header_bytes: Annotated[Int, Field(gt=0)] = 32 * 1024
    """An `x-portkey-config` header larger than this is refused with 431."""
    request_deadline_ms: Annotated[Int, Field(gt=0)] = 300_000
    """Overall time bound of one request across all targets, retries and backoff."""
    max_retry_attempts: Annotated[Int, Field(ge=0, le=10)] = 5
    """Cap applied to any config's `retry.attempts`."""
    max_json_depth: Annotated[Int, Field(ge=1, le=200)] = 100
    """A request body or `x-portkey-metadata` nesting deeper than this many levels of
    objects and lists is refused with 400 `nesting_too_deep`. Deep enough for JSON-schema
    tool definitions; at most 200, so a body with `override_params` merged in stays below
    the 255 levels the JSON encoder supports."""
    max_targets_per_config: Annotated[Int, Field(gt=0)] = DEFAULT_MAX_TARGETS
    """A config (server or `x-portkey-config`) listing more nodes than this in its
    `targets` lists, counted over the whole tree, is invalid."""
    max_attempts_per_request: Annotated[Int, Field(gt=0)] = 20
    """Upstream attempts one request may make across its whole config tree, retries
    included; when spent, fallback and retry stop and the last answer is returned."""
    max_route_header_bytes: Annotated[Int, Field(ge=64)] = 4096
    """The `x-relaygate-route` response header is cut at an attempt boundary to fit in this
    many bytes, ending in `...(+N more)`; the request log line keeps the whole route."""
    header_timeout_ms: Annotated[Int, Field(gt=0)] = 10_000
    """Under `relaygate serve`: a request's headers must arrive in full within this time of
    its first byte (of the connection, for its first request); otherwise the client gets 408
    and the connection is closed."""
    max_header_bytes: Annotated[Int, Field(ge=1024)] = 64 * 1024
    """Under `relaygate serve`: a request line plus headers larger than this is answered 431
    and the connection closed, without reading further."""
    body_idle_timeout_ms: Annotated[Int, Field(gt=0)] = 30_000
    """A request body that makes no progress for this long is answered 408."""
    max_connections: Annotated[Int, Field(gt=0)] = 2048
    """Under `relaygate serve`: open client connections per worker process; a connection
    beyond this is answered 503 and closed."""
    max_recovery_bytes: Annotated[Int, Field(gt=0)] = DEFAULT_MAX_RECOVERY_BYTES
    """A stream under `recover_streams` keeps the bytes it delivered (to compare a
    recovering stream against) up to this many; past it they are released, recovery for
    that stream is given up (`relaygate_stream_recovery_given_up_total`) and a later break
    ends it with the error event as without recovery."""


class ShutdownSettings(_Section):
    """How `relaygate serve` stops on SIGTERM or SIGINT."""

    drain_timeout_ms: Annotated[Int, Field(ge=0)] = 20_000
    """In-flight requests may finish for this long after the gateway stops accepting; then a
    stream still open ends with an in-band `gateway_shutting_down` error event and any other
    unanswered request is answered 503."""
    telemetry_flush_timeout_ms: Annotated[Int, Field(ge=0)] = 3_000
    """Upper bound of the final span export at shutdown (and of each OTLP export, unless the
    `OTEL_EXPORTER_OTLP_*TIMEOUT` variables set one); spans still unsent then are dropped."""


class TimeoutSettings(_Section):
    """Server defaults of the streaming deadlines, beneath every config's own values."""

    first_token_timeout_ms: Annotated[Int, Field(gt=0)] | None = None
    """Default `first_token_timeout` of every target whose config sets none: how long a
    streamed attempt may take to send its first chunk carrying content before it is cut
    as a timeout (retried or fallen back from). Unset: no first-token bound."""
    stream_idle_timeout_ms: Annotated[Int, Field(gt=0)] | None = None
    """Default `stream_idle_timeout` of every target whose config sets none: the longest
    gap between chunks of a stream once it is handed to the client. Unset: a target's
    `request_timeout` bounds the gaps, as without this setting."""


class ReloadSettings(_Section):
    """How `relaygate serve` picks up a changed config file without restarting."""

    watch_interval_ms: Annotated[Int, Field(ge=0)] = 1_000
    """How often the config file is checked for a change (its size, modification time and
    inode, then its content); 0 turns the watch off (SIGHUP still reloads)."""


class RetryBackoffSettings(_Section):
    """Backoff between retries of one target, shared by all targets."""

    initial_backoff_ms: Annotated[Int, Field(ge=0)] = 500
    """Wait before the first retry."""
    max_backoff_ms: Annotated[Int, Field(ge=0)] = 10_000
    """Upper bound of one wait."""
    multiplier: Annotated[Number, Field(ge=1)] = 2.0
    """Factor applied to the wait after each retry."""
    jitter: Annotated[Number, Field(ge=0, le=1)] = 0.2
    """Random spread of each wait, as a fraction of it (0-1)."""
    max_retry_after_ms: Annotated[Int, Field(ge=0)] = 60_000
    """A Retry-After longer than this is not waited for: the target is treated as failed."""

    @model_validator(mode="after")
    def _bounds_ordered(self) -> RetryBackoffSettings:
        if self.max_backoff_ms < self.initial_backoff_ms:
            raise PydanticCustomError(
                "backoff_bounds", "max_backoff_ms must be >= initial_backoff_ms"
            )
        return self


class BreakerDefaults(_Section):
    """The default circuit breaker of every target whose config sets no `cb_config`.

    On by default and conservative: it opens only on a target that failed at least 90% of
    at least 5 attempts within a minute, and when every target of a strategy is open they
    are tried anyway, so it never refuses a request that would otherwise have been tried.
    """

    enabled: bool = True
    """`false`: no breaker unless a config sets `cb_config`."""
    failure_threshold: Annotated[Int, Field(ge=1)] | None = None
    """Failures within the window that open a circuit (none: only the percentage rule)."""
    failure_threshold_percentage: Annotated[Number, Field(gt=0, le=100)] | None = 90.0
    """Failure rate (percent) within the window that opens a circuit."""
    minimum_requests: Annotated[Int, Field(ge=1)] = 5
    """Outcomes the window must hold before the failure rate counts."""
    cooldown_interval: Annotated[Int, Field(ge=1)] = 30_000
    """Milliseconds an open circuit refuses attempts before letting probes through."""
    failure_status_codes: list[Annotated[Int, Field(ge=100, le=599)]] | None = None
    """Statuses counted as failures; none: any 5xx. Timeouts and connection errors count."""
    window: Annotated[Int, Field(ge=1)] = 60_000
    """Length of the sliding window, in milliseconds."""
    half_open_probes: Annotated[Int, Field(ge=1, le=100)] = 1
    """Probe attempts after the cooldown; all must succeed for the circuit to close."""
    on_all_open: Literal["try", "reject"] = "try"
    """When every target of a strategy is open: `try` them anyway, or `reject` with 503."""

    def settings(self) -> BreakerSettings | None:
        """The compiled default breaker, ``None`` when disabled."""
        if not self.enabled or (
            self.failure_threshold is None and self.failure_threshold_percentage is None
        ):
            return None
        return BreakerSettings(
            failure_threshold=self.failure_threshold,
            failure_threshold_percentage=self.failure_threshold_percentage,
            minimum_requests=self.minimum_requests,
            cooldown_interval_ms=self.cooldown_interval,
            failure_status_codes=(
                frozenset(self.failure_status_codes)
                if self.failure_status_codes is not None
                else None
            ),
            window_ms=self.window,
            half_open_probes=self.half_open_probes,
            on_all_open=self.on_all_open,
        )


class TailSamplingSettings(_Section):
    """Tail-based trace sampling: decided at each request's end, from what it did."""

    keep_ok_ratio: Annotated[Number, Field(ge=0, le=1)] = 1.0
    """Fraction of clean, fast successes whose traces are exported (0-1); every other trace
    (an error, retry, fallback, timeout, client abort, stream recovery, a slow request, a
    sampled `traceparent`) is always exported. 1: every trace, nothing is held back."""
    latency_threshold_ms: Annotated[Int, Field(ge=0)] | None = 2000
    """A success slower than this is always kept (a stream: its time to the first chunk);
    null: no latency rule."""
    max_spans_per_trace: Annotated[Int, Field(ge=1)] = 256
    """Spans one undecided request may hold; past it its trace is kept at once."""
    max_buffered_spans: Annotated[Int, Field(ge=1)] = 20_000
    """Spans all undecided requests may hold together; past it the trace adding a span is
    kept at once."""


class TraceSettings(_Section):
    """Tracing: one span per request and per upstream attempt."""

    exporter: Literal["none", "otlp", "console"] = "none"
    """Where spans go: nowhere, an OTLP collector, or standard output."""
    endpoint: BaseUrl | None = None
    """OTLP collector URL; unset uses the OpenTelemetry environment variables."""
    protocol: Literal["http/protobuf"] = "http/protobuf"
    """OTLP transport."""
    sample_ratio: Annotated[Number, Field(ge=0, le=1)] = 1.0
    """Fraction of requests traced (0-1)."""
    detail: Literal["full", "attempts", "off"] = "full"
    """`full`: request, strategy and attempt spans; `attempts`: request and attempt spans
    only; `off`: no spans."""
    tail_sampling: TailSamplingSettings = Field(default_factory=TailSamplingSettings)
    """Which finished requests' traces are exported (default: all)."""


class MetricSettings(_Section):
    """Prometheus metrics."""

    enabled: bool = True
    """Serve `GET /metrics`. When false the route is absent; samples are still kept in
    memory, which costs a few microseconds a request."""
    models: list[str] = Field(default_factory=list)
    """Model names allowed as metric label values; any other model is recorded as `other`."""
    max_caller_label_values: Annotated[Int, Field(ge=0, le=10_000)] = 100
    """Distinct label values a caller may add per label (target names or paths and pinned
    models from inline `x-portkey-config` JSON or `x-portkey-provider` calls), and distinct
    target-model and fallback from-to combinations of them, first come first served; later
    new ones, and values over 64 characters, are recorded as `other` and counted in
    `relaygate_label_overflow_total`. Values from this file are never limited."""


class LogSettings(_Section):
    """Structured logs."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    """Lowest level written."""
    format: Literal["json", "console", "auto"] = "auto"
    """`json` lines, human `console` output, or `auto`: console on a terminal, else json."""

    @field_validator("level", mode="before")
    @classmethod
    def _lower_level(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class TelemetrySettings(_Section):
    """Traces, metrics and logs."""

    service_name: str = "relaygate"
    """`service.name` of the emitted telemetry."""
    traces: TraceSettings = Field(default_factory=TraceSettings)
    """Tracing settings."""
    metrics: MetricSettings = Field(default_factory=MetricSettings)
    """Metrics settings."""
    logs: LogSettings = Field(default_factory=LogSettings)
    """Logging settings."""


class ProviderDefaults(_Section):
    """Defaults for every target of one provider that does not set its own."""

    api_key: SecretStr | None = None
    """Credential used when a target has no `api_key`; empty means none."""
    custom_host: BaseUrl | None = None
    """Base URL used when a target's config sets no `custom_host`."""


class GatewayKeySettings(_Section):
    """One gateway key, stored as its hash, with what it may do (unset: no restriction)."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    """Who holds the key; shown in the request log line, never the key."""
    hash: Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
    """`sha256:<hex>` of the key, as printed by `relaygate keys create`."""
    configs: list[str] | None = None
    """Named config ids the key may select (the default config counts by its id)."""
    inline_configs: bool = True
    """Whether the key may send a JSON config in `x-portkey-config` or make config-less
    `x-portkey-provider` calls."""
    custom_hosts: bool = True
    """Whether the key may choose a base URL (`custom_host` in its own config,
    `x-portkey-custom-host`)."""
    providers: list[LowerName] | None = None
    """Providers every target the key reaches must call."""
    models: list[str] | None = None
    """Models every target the key reaches must use (the pinned or requested model)."""
    limits: LimitSpec | None = None
    """Requests and tokens per minute and a spend budget of this key, over every replica
    sharing `state.redis`; over one, requests are answered 429."""

    def scope(self) -> KeyScope:
        """The compiled scope of this key."""
        return KeyScope(
            name=self.name,
            configs=frozenset(self.configs) if self.configs is not None else None,
            inline_configs=self.inline_configs,
            custom_hosts=self.custom_hosts,
            providers=frozenset(self.providers) if self.providers is not None else None,
            models=frozenset(self.models) if self.models is not None else None,
            limits=self.limits.limits() if self.limits is not None else None,
        )


class AuthSettings(_Section):
    """Client authentication to the gateway."""

    api_keys: list[SecretStr] = Field(default_factory=list)
    """Plain keys clients must present as `Authorization: Bearer <key>` (or
    `x-portkey-api-key`), each with no restriction. Prefer `keys`, which stores hashes."""
    keys: list[GatewayKeySettings] = Field(default_factory=list)
    """Hashed, optionally scoped gateway keys (`relaygate keys create` makes one). With
    neither `api_keys` nor `keys`, the gateway does not authenticate clients."""
    admin_keys: list[SecretStr] = Field(default_factory=list)
    """Keys (plain, or `sha256:<hex>` hashes) required as `Authorization: Bearer` on the
    operations endpoints `/metrics`, `/status` and `/status.json`; empty leaves them open.
    `/health` and `/ready` are always open for probes."""

    @field_validator("api_keys", "admin_keys")
    @classmethod
    def _no_empty_key(cls, keys: list[SecretStr]) -> list[SecretStr]:
        # An empty key (e.g. from an unset `${VAR:-}`) must not silently disable auth.
        if any(not key.get_secret_value() for key in keys):
            raise PydanticCustomError("empty_key", "keys must not be empty")
        return keys

    @field_validator("keys")
    @classmethod
    def _unique_names(cls, keys: list[GatewayKeySettings]) -> list[GatewayKeySettings]:
        names = [k.name for k in keys]
        if len(set(names)) != len(names):
            raise PydanticCustomError("duplicate_key", "key names must be unique")
        return keys

    def store(self) -> KeyStore:
        """The gateway keys, ready for lookup."""
        return KeyStore.build(
            (k.get_secret_value() for k in self.api_keys),
            {k.hash: k.scope() for k in self.keys},
        )

    def admin_store(self) -> KeyStore:
        """The operations keys, ready for lookup."""
        plain = [k.get_secret_value() for k in self.admin_keys]
        hashed = {k: UNSCOPED for k in plain if k.startswith(HASH_PREFIX)}
        return KeyStore.build([k for k in plain if not k.startswith(HASH_PREFIX)], hashed)


_SCHEMES: tuple[Literal["http", "https"], ...] = ("http", "https")


class EgressSettings(_Section):
    """Where caller-supplied base URLs may point (server-side request forgery protection).

    Applies to `custom_host` in header configs, `x-portkey-custom-host` and Azure
    `resource_name` in header configs; URLs in this file are the operator's and are not
    checked."""

    allow_private: bool = False
    """Allow private, loopback, link-local (cloud metadata), CGNAT and other internal
    addresses. Set it for local development against servers on this machine."""
    allow_hosts: list[str] = Field(default_factory=list)
    """When set, the only destinations allowed: host names, `*.suffix` patterns, IP
    addresses or CIDR networks (a listed entry may be internal)."""
    schemes: list[Literal["http", "https"]] = Field(default_factory=lambda: list(_SCHEMES))
    """URL schemes allowed."""
    ports: list[Annotated[Int, Field(gt=0, le=65535)]] = Field(default_factory=list)
    """Ports allowed; empty allows any."""

    @field_validator("allow_hosts")
    @classmethod
    def _patterns(cls, hosts: list[str]) -> list[str]:
        try:
            EgressPolicy.from_entries(hosts)
        except ValueError as exc:
            raise PydanticCustomError("host_pattern", str(exc)) from None
        return hosts

    def policy(self) -> EgressPolicy:
        """The compiled policy."""
        return EgressPolicy.from_entries(
            self.allow_hosts, self.allow_private, self.schemes, self.ports
        )


class SecuritySettings(_Section):
    """What callers may make the gateway do with the operator's keys and network."""

    egress: EgressSettings = Field(default_factory=EgressSettings)
    """Allowed destinations for caller-supplied base URLs."""
    forward_sensitive_headers: list[LowerName] = Field(default_factory=list)
    """Credential headers (`authorization`, `cookie`, `x-api-key`...) a caller's config may
    name in `forward_headers`; configs in this file may forward them regardless."""


def _default_kind(value: Any) -> str:
    return "id" if isinstance(value, str) else "config"


DefaultConfig = Annotated[
    Annotated[ConfigNode, Tag("config")] | Annotated[str, Tag("id")],
    Discriminator(_default_kind),
]


class ServerConfig(_Section):
    """The whole server config file. Every field has a default: an empty file is valid."""

    listen: ListenSettings = Field(default_factory=ListenSettings)
    """Where the gateway accepts connections."""
    default_config: DefaultConfig | None = None
    """Config used when a request carries neither `x-portkey-config` nor
    `x-portkey-provider`: a Portkey config object, or the id of one of `configs`."""
    configs: dict[str, ConfigNode] = Field(default_factory=dict)
    """Named Portkey configs, chosen per request with `x-portkey-config: <id>`."""
    providers: dict[LowerName, ProviderDefaults] = Field(default_factory=dict)
    """Default credential and base URL per provider name."""
    auth: AuthSettings = Field(default_factory=AuthSettings)
    """Client authentication."""
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    """Request size and time bounds."""
    retry: RetryBackoffSettings = Field(default_factory=RetryBackoffSettings)
    """Backoff mechanics of retries."""
    breaker: BreakerDefaults = Field(default_factory=BreakerDefaults)
    """The default circuit breaker of targets whose config sets no `cb_config`."""
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    """Traces, metrics and logs."""
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    """Egress and header-forwarding rules for caller-supplied settings."""
    shutdown: ShutdownSettings = Field(default_factory=ShutdownSettings)
    """Draining and telemetry flushing when the server stops."""
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings)
    """Server defaults of the streaming deadlines (`first_token_timeout`,
    `stream_idle_timeout`)."""
    reload: ReloadSettings = Field(default_factory=ReloadSettings)
    """Reloading the config file on SIGHUP or when it changes."""
    state: StateSettings = Field(default_factory=StateSettings)
    """Where limits, budgets and cached answers live (Redis to share them)."""
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    """Rate limits and budgets of upstream endpoints."""
    prices: dict[str, PriceSettings] = Field(default_factory=dict)
    """Per model (as the target calls it): USD per million input and output tokens, for
    spend budgets."""

    def inherited(self) -> Inherited:
        """The provider defaults, as the lowest-precedence settings of every config."""
        keys: dict[str, Secret] = {}
        hosts: dict[str, str] = {}
        for name, defaults in self.providers.items():
            if defaults.api_key is not None and defaults.api_key.get_secret_value():
                keys[name] = Secret(defaults.api_key.get_secret_value())
            if defaults.custom_host:
                hosts[name] = defaults.custom_host
        return Inherited(
            api_keys=keys,
            custom_hosts=hosts,
            first_token_timeout_ms=self.timeouts.first_token_timeout_ms,
            stream_idle_timeout_ms=self.timeouts.stream_idle_timeout_ms,
        )

    def raw_configs(self) -> dict[str, ConfigNode]:
        """The named configs as validated, before compilation, keyed by id."""
        return dict(self.configs)

    def raw_default(self) -> ConfigNode | None:
        """The default config as validated (a named one resolved), or ``None``."""
        default = self.default_config
        if isinstance(default, str):
            return self.configs.get(default)
        return default

    def default_id(self) -> str:
        """``RoutingConfig.id`` of the default config: its name, or ``"default"`` if inline."""
        default = self.default_config
        return default if isinstance(default, str) else DEFAULT_CONFIG_ID

    def gateway_keys(self) -> list[str]:
        """The clear plain gateway keys (``auth.api_keys``); hashed keys are not included."""
        return [key.get_secret_value() for key in self.auth.api_keys]

    def compiled_configs(self, warnings: list[str] | None = None) -> dict[str, RoutingConfig]:
        """Every named config compiled, keyed by id (which is also its ``RoutingConfig.id``),
        without the provider check (see :func:`relaygate.config.compile.compile_server`).

        Raises :class:`ConfigError` (paths under ``configs.<id>``) if any is invalid.
        """
        result = compile_sources(
            self.raw_configs(),
            None,
            DEFAULT_CONFIG_ID,
            inherited=self.inherited(),
            providers=None,
            limits=self._compile_limits(),
        )
        if warnings is not None:
            warnings += result.warnings
        return dict(result.configs)

    def compiled_default(self, warnings: list[str] | None = None) -> RoutingConfig | None:
        """The default config compiled, or ``None`` when there is none, without the provider
        check (see :func:`relaygate.config.compile.compile_server`).

        An inline default gets the id ``"default"``; a default naming one of ``configs`` is
        compiled under that id.
        """
        default = self.default_config
        if default is None:
            return None
        if isinstance(default, str):
            node = self.configs.get(default)
            if node is None:
                raise ConfigError([("default_config", _unknown_id_message(default, self.configs))])
            prefix, config_id = f"configs.{default}", default
        else:
            node, prefix, config_id = default, "default_config", DEFAULT_CONFIG_ID
        return compile_one(
            node,
            config_id=config_id,
            prefix=prefix,
            inherited=self.inherited(),
            providers=None,
            limits=self._compile_limits(),
            warnings=warnings,
        )

    def _compile_limits(self) -> CompileLimits:
        return CompileLimits(
            max_targets=self.limits.max_targets_per_config,
            max_retry_attempts=self.limits.max_retry_attempts,
        )


def _unknown_id_message(config_id: str, configs: Mapping[str, Any]) -> str:
    names = ", ".join(configs) if configs else "none defined"
    return f"no config named '{config_id}' (configs: {names})"


def _strip_union_tags(loc: Loc) -> Loc:
    """Drop the tag segment the ``default_config`` union adds to its error locations."""
    if len(loc) >= 2 and loc[0] == "default_config" and loc[1] in ("config", "id"):
        return loc[:1] + loc[2:]
    return loc


def parse_server_config(data: Any, env_issues: list[tuple[str, str]] | None = None) -> ServerConfig:
    """Validate an already decoded (and env-expanded) server config document.

    ``env_issues`` are problems found while resolving environment references; a validation
    problem at or under one of their paths is not reported again. Raises
    :class:`ConfigError` with every problem of the document.
    """
    env_issues = env_issues or []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([*env_issues, (ROOT, "must be a mapping of settings")])
    configs = data.get("configs")
    default = data.get("default_config")
    # Embedded configs are measured before pydantic (recursive) sees them.
    too_deep: list[tuple[Loc, str]] = []
    if isinstance(configs, dict):
        for config_id, raw in configs.items():
            too_deep += depth_issues(raw, ("configs", str(config_id)))
    too_deep += depth_issues(default, ("default_config",))
    if too_deep:
        raise ConfigError(sorted_errors([*env_issues, *error_from_issues(too_deep).errors]))
    issues: list[tuple[Loc, str]] = []
    config: ServerConfig | None = None
    try:
        config = ServerConfig.model_validate(data)
    except ValidationError as exc:
        issues += [
            (_strip_union_tags(loc), message) for loc, message in issues_from_validation_error(exc)
        ]
    # The embedded Portkey configs also get the checks spanning their fields.
    max_targets = config.limits.max_targets_per_config if config else DEFAULT_MAX_TARGETS
    if isinstance(configs, dict):
        for config_id, raw in configs.items():
            if isinstance(raw, dict):
                issues += _cross_field_issues(raw, ("configs", str(config_id)), max_targets)
    if config is not None:
        issues += _key_scope_issues(config)
    default = data.get("default_config")
    if isinstance(default, dict):
        issues += _cross_field_issues(default, ("default_config",), max_targets)
    elif isinstance(default, str):
        known = configs if isinstance(configs, dict) else {} if configs is None else None
        if known is not None and default not in known:
            issues.append((("default_config",), _unknown_id_message(default, known)))
    error = error_from_issues(issues)
    env_paths = [path for path, _ in env_issues]
    kept = [
        (path, message)
        for path, message in error.errors
        if not any(_is_within(path, env_path) for env_path in env_paths)
    ]
    if env_issues or kept:
        raise ConfigError(sorted_errors([*env_issues, *kept]))
    assert config is not None
    return config


def _key_scope_issues(config: ServerConfig) -> list[tuple[Loc, str]]:
    """Gateway keys scoped to config ids that do not exist."""
    known = set(config.configs)
    if isinstance(config.default_config, ConfigNode):
        known.add(DEFAULT_CONFIG_ID)
    issues: list[tuple[Loc, str]] = []
    for i, key in enumerate(config.auth.keys):
        for name in key.configs or ():
            if name not in known:
                issues.append(
                    (("auth", "keys", i, "configs"), _unknown_id_message(name, config.configs))
                )
    return issues


def _cross_field_issues(
    raw: dict[str, Any], prefix: Loc, max_targets: int
) -> list[tuple[Loc, str]]:
    # Field-shape problems found here repeat those of the ServerConfig validation with the
    # same location and message; they are merged when the error is built.
    return validate_node(raw, prefix, max_targets)[1]


def _is_within(path: str, parent: str) -> bool:
    return path == parent or path.startswith((parent + ".", parent + "["))


def read_document(path: Path) -> Any:
    """Read a JSON or YAML document (by suffix; otherwise JSON, then YAML).

    Raises :class:`ConfigError` with the reason at ``(root)`` when it cannot be read or
    parsed.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([(ROOT, f"cannot read {path}: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError:
        raise ConfigError([(ROOT, f"cannot read {path}: not valid UTF-8")]) from None
    return parse_document(text, path)


def parse_document(text: str, path: Path) -> Any:
    """Parse ``text``, read from ``path``, as JSON or YAML (by ``path``'s suffix; otherwise
    JSON, then YAML). Raises :class:`ConfigError` with the reason at ``(root)``."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _parse_json(text)
    if suffix in (".yaml", ".yml"):
        return _parse_yaml(text)
    try:
        return _parse_json(text)
    except ConfigError:
        return _parse_yaml(text)


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        reason = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        raise ConfigError([(ROOT, f"invalid JSON: {reason}")]) from None
    except RecursionError:
        raise ConfigError([(ROOT, "invalid JSON: nested too deeply")]) from None


def _parse_yaml(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        reason = exc.problem or "syntax error"
        if exc.problem_mark is not None:
            mark = exc.problem_mark
            reason += f" at line {mark.line + 1} column {mark.column + 1}"
        raise ConfigError([(ROOT, f"invalid YAML: {reason}")]) from None
    except yaml.YAMLError:
        raise ConfigError([(ROOT, "invalid YAML")]) from None


def load_server_config(path: str | Path, env: Mapping[str, str] | None = None) -> ServerConfig:
    """Read, env-expand and validate a server config file (``.yaml``/``.yml``/``.json``;
    any other name is tried as JSON, then YAML).

    ``env`` defaults to ``os.environ``. Raises :class:`ConfigError` listing every problem,
    including those inside the embedded Portkey configs.
    """
    return server_config_from_document(read_document(Path(path)), env)


def server_config_from_document(data: Any, env: Mapping[str, str] | None = None) -> ServerConfig:
    """Env-expand and validate a decoded server config document (see
    :func:`load_server_config`)."""
    env_issues: list[tuple[str, str]] = []
    expanded = expand_env_collect(data, os.environ if env is None else env, "", env_issues)
    return parse_server_config(expanded, list(dict.fromkeys(env_issues)))
