"""Configuration: Portkey routing configs, their compiled form, and the server config file."""

from relaygate.config.envref import expand_env
from relaygate.config.errors import ConfigError
from relaygate.config.explain import explain
from relaygate.config.model import (
    DEFAULT_RETRY_STATUS_CODES,
    Condition,
    Mode,
    Node,
    RetrySettings,
    RoutingConfig,
    Secret,
    Strategy,
    Target,
    iter_targets,
)
from relaygate.config.schema import (
    ConditionSpec,
    ConfigNode,
    RetrySpec,
    StrategySpec,
    parse_config,
)
from relaygate.config.server import (
    AuthSettings,
    LimitsSettings,
    ListenSettings,
    LogSettings,
    MetricSettings,
    ProviderDefaults,
    RetryBackoffSettings,
    ServerConfig,
    TelemetrySettings,
    TraceSettings,
    load_server_config,
    parse_server_config,
)
from relaygate.config.tree import Inherited, compile_config, load_config_json

__all__ = [
    "DEFAULT_RETRY_STATUS_CODES",
    "AuthSettings",
    "Condition",
    "ConditionSpec",
    "ConfigError",
    "ConfigNode",
    "Inherited",
    "LimitsSettings",
    "ListenSettings",
    "LogSettings",
    "MetricSettings",
    "Mode",
    "Node",
    "ProviderDefaults",
    "RetryBackoffSettings",
    "RetrySettings",
    "RetrySpec",
    "RoutingConfig",
    "Secret",
    "ServerConfig",
    "Strategy",
    "StrategySpec",
    "Target",
    "TelemetrySettings",
    "TraceSettings",
    "compile_config",
    "expand_env",
    "explain",
    "iter_targets",
    "load_config_json",
    "load_server_config",
    "parse_config",
    "parse_server_config",
]
