"""The state backend a server config asks for."""

from __future__ import annotations

from relaygate.config.state import StateSettings
from relaygate.state.backend import MemoryBackend, StateBackend
from relaygate.state.redis import RedisBackend
from relaygate.state.shared import SharedState
from relaygate.telemetry import Telemetry

__all__ = ["build_state"]


def build_state(settings: StateSettings, telemetry: Telemetry) -> StateBackend:
    """In-process state (counters bounded by ``counters.max_entries``, cached answers apart
    by ``cache.max_entries``), or Redis in front of it when ``redis`` is set
    (:class:`~relaygate.state.shared.SharedState`)."""
    local = MemoryBackend(
        counter_entries=settings.counters.max_entries, cache_entries=settings.cache.max_entries
    )
    redis = settings.redis
    if redis is None:
        return local
    remote = RedisBackend(
        redis.url.get_secret_value(), prefix=redis.prefix, timeout_s=redis.timeout_ms / 1000
    )
    return SharedState(remote, local, telemetry, retry_interval_s=redis.retry_interval_ms / 1000)
