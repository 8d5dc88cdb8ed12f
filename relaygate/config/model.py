"""The compiled routing config: the frozen tree the pipeline walks.

A user's Portkey-format JSON is validated by :mod:`relaygate.config.schema` and compiled
into these dataclasses once per distinct config. Inheritance (``override_params``,
``retry``, ``request_timeout``, ``first_token_timeout``, ``stream_idle_timeout``,
``custom_host``, ``forward_headers``, ``cb_config``) is already applied, so a
:class:`Target` carries everything needed to call its provider, and nothing on the
request path re-reads the raw JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

Mode = Literal["single", "fallback", "loadbalance", "conditional"]
"""How a strategy node picks among its children (Portkey's ``strategy.mode``)."""

Balance = Literal["weighted", "least_in_flight", "p2c_ewma"]
"""How a ``loadbalance`` node picks its child (``strategy.balance``; see
:mod:`relaygate.strategies.balance`)."""

DEFAULT_RETRY_STATUS_CODES: frozenset[int] = frozenset({429, 500, 502, 503, 504})
"""Upstream statuses retried when ``retry.on_status_codes`` is absent (Portkey's default)."""

EMPTY: Mapping[str, Any] = MappingProxyType({})

ROOT_PATH = "config"
"""The path of every config's root node; its children's paths extend it
(``config.targets[1].targets[0]``)."""


class Secret:
    """A credential that never shows itself: ``str()``/``repr()`` are masked.

    Call :meth:`reveal` at the one place the value goes on the wire.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The clear value, for the upstream request's auth header only."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """Retry policy of one target.

    ``attempts`` counts retries after the first try (Portkey semantics: ``attempts: 3`` means
    up to four calls). ``use_retry_after_header`` makes a ``retry-after-ms``/``retry-after``
    answer header replace the computed backoff (bounded by the server's cap).
    """

    attempts: int = 0
    on_status_codes: frozenset[int] = DEFAULT_RETRY_STATUS_CODES
    use_retry_after_header: bool = False


OnAllOpen = Literal["try", "reject"]
"""What a strategy does when every child's circuit is open: ``try`` them anyway (Portkey's
behaviour) or ``reject`` the request at once with a 503 naming them."""


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """Circuit-breaker policy of a target or strategy (``cb_config``, compiled).

    Counts run over a sliding window of the last ``window_ms``. The circuit opens when the
    window holds ``failure_threshold`` failures or more (when set), or when it holds at
    least ``minimum_requests`` outcomes of which ``failure_threshold_percentage`` percent or
    more failed (when set). A failure is an attempt answered with a status in
    ``failure_status_codes`` (``None``: any 5xx) or one that got no usable answer (timeout,
    connection error, invalid response, broken stream). Open, it refuses attempts for
    ``cooldown_interval_ms``, then half-opens: up to ``half_open_probes`` attempts go
    through, and the circuit closes once that many have succeeded, or opens again on the
    first that fails. ``on_all_open`` is read on strategies. ``enabled: false`` turns the
    breaker off below a node (the server's default breaker included).
    """

    failure_threshold: int | None = None
    failure_threshold_percentage: float | None = None
    minimum_requests: int = 5
    cooldown_interval_ms: int = 30_000
    failure_status_codes: frozenset[int] | None = None
    window_ms: int = 60_000
    half_open_probes: int = 1
    on_all_open: OnAllOpen = "try"
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Target:
    """A leaf of the config tree: one provider endpoint with its resolved settings.

    ``path`` is Portkey's option index (``config.targets[1].targets[0]``), used in the
    ``x-portkey-last-used-option-index`` header and as a bounded telemetry label.
    ``provider_options`` holds provider-specific fields (Azure's ``resource_name``,
    ``deployment_id``, ``api_version``...), read only by that provider's adapter.
    ``caller_fields`` names the settings whose value a caller chose (in a header config or
    an ``x-portkey-*`` header) rather than the operator: the key-custody and egress rules
    (:mod:`relaygate.security`) read it. ``first_token_timeout_ms`` and
    ``stream_idle_timeout_ms`` bound a streamed attempt (see
    :mod:`relaygate.strategies.attempt_bound`).
    """

    path: str
    provider: str
    name: str | None = None
    api_key: Secret | None = None
    weight: float = 1.0
    override_params: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    retry: RetrySettings = RetrySettings()
    request_timeout_ms: int | None = None
    first_token_timeout_ms: int | None = None
    stream_idle_timeout_ms: int | None = None
    custom_host: str | None = None
    forward_headers: tuple[str, ...] = ()
    provider_options: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    caller_fields: frozenset[str] = frozenset()
    on_error_codes: frozenset[str] = frozenset()
    """Error codes that are not final for this target's retries (the nearest strategy's
    ``on_error_codes``, lower case; see :mod:`relaygate.strategies.finality`)."""
    supports_prefill: bool = False
    """Whether this target continues a partial assistant message (``supports_prefill``):
    a broken stream is then recovered here by continuing its text, not repeating it."""
    recover_streams: bool = False
    """Whether a stream of this target that breaks midway is retried on it (when its
    ``retry`` allows) to recover the answer; from the nearest strategy's
    ``recover_streams``."""
    breaker: BreakerSettings | None = None
    """The circuit breaker in force (``cb_config``, inherited); ``None``: the server's
    default breaker."""
    endpoint: tuple[str, str, str, str, str] = field(init=False, repr=False, compare=False)
    """What is actually called, computed once: provider, base URL, model, Azure resource
    and deployment (empty strings for what the target does not set); the key of its load
    (:func:`relaygate.load.target_key`)."""

    def __post_init__(self) -> None:
        options = self.provider_options
        endpoint = (
            self.provider,
            self.custom_host or "",
            self.model or "",
            str(options.get("resource_name") or ""),
            str(options.get("deployment_id") or ""),
        )
        object.__setattr__(self, "endpoint", endpoint)

    @property
    def label(self) -> str:
        """The name used in telemetry and the route story: ``name`` if set, else ``path``."""
        return self.name or self.path

    @property
    def model(self) -> str | None:
        """The model this target forces through ``override_params``, if any."""
        model = self.override_params.get("model")
        return model if isinstance(model, str) else None


@dataclass(frozen=True, slots=True)
class Condition:
    """One conditional-routing rule: when ``query`` matches, route to the child named ``then``."""

    query: Mapping[str, Any]
    then: str


@dataclass(frozen=True, slots=True)
class Strategy:
    """An inner node of the config tree: a strategy over child nodes.

    ``on_status_codes`` (fallback mode) lists the upstream statuses that move on to the next
    child; ``None`` means any non-2xx answer, network error or timeout does.
    ``on_error_codes`` (lower case, inherited from the nearest strategy that sets it) names
    error codes that fall back although the finality policy
    (:mod:`relaygate.strategies.finality`) would end the request on them; ``balance`` is how
    a ``loadbalance`` node picks its child.
    """

    path: str
    mode: Mode
    children: tuple[Node, ...]
    name: str | None = None
    weight: float = 1.0
    on_status_codes: frozenset[int] | None = None
    conditions: tuple[Condition, ...] = ()
    default: str | None = None
    on_error_codes: frozenset[str] = frozenset()
    balance: Balance = "weighted"
    recover_streams: bool = False
    """Whether a stream that breaks midway after reaching the client is recovered with this
    strategy's remaining children (``strategy.recover_streams``; default: on for
    ``fallback``)."""
    breaker: BreakerSettings | None = None
    """The circuit breaker in force at this node (``cb_config``, inherited); ``None``: the
    server's default. Its ``on_all_open`` decides what happens when every child is open."""

    @property
    def label(self) -> str:
        """The name used in telemetry: ``name`` if set, else ``path``."""
        return self.name or self.path


Node = Strategy | Target
"""A node of the compiled config tree."""


@dataclass(frozen=True, slots=True)
class ResponseCache:
    """A config's response cache (Portkey's ``cache: {mode: simple, max_age}``): answers
    are kept ``max_age_s`` seconds and served again for the exact same request."""

    max_age_s: int


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    """A compiled config ready to route requests.

    ``id`` is the bounded label for telemetry: the named config's id, ``"default"`` for the
    server's default config, ``"inline"`` for a JSON config sent in a header, or
    ``"provider"`` for a config-less call (``x-portkey-provider``). ``caller_supplied`` is
    true when a caller wrote the config document (a header config or a config-less call).
    """

    id: str
    root: Node
    targets: tuple[Target, ...] = field(default=())
    caller_supplied: bool = False
    """Whether a caller wrote this config (inline JSON in ``x-portkey-config``, or the
    config-less ``x-portkey-provider`` call) rather than the server config. The names, models
    and hosts inside a caller-supplied config are untrusted input: telemetry admits them as
    label values only within a budget (:mod:`relaygate.exporters.labels`)."""
    cache: ResponseCache | None = None
    """The root's ``cache`` in ``simple`` mode, ``None`` when answers are not cached."""

    def __post_init__(self) -> None:
        if not self.targets:
            object.__setattr__(self, "targets", tuple(iter_targets(self.root)))


def iter_targets(node: Node) -> list[Target]:
    """Every leaf under ``node``, depth-first in config order."""
    if isinstance(node, Target):
        return [node]
    out: list[Target] = []
    for child in node.children:
        out.extend(iter_targets(child))
    return out
