"""State a gateway may share with its other replicas: counters and cached answers.

:class:`~relaygate.state.backend.StateBackend` is the one interface (a batch of counter and
value operations run in one round trip); :class:`~relaygate.state.backend.MemoryBackend`
keeps the state in the process (the default), :class:`~relaygate.state.redis.RedisBackend`
in Redis or Valkey (``state: {redis: {url: ...}}``), and
:class:`~relaygate.state.shared.SharedState` puts Redis in front of a local fallback so
that Redis being down never fails a request.
"""

from relaygate.state.backend import Get, Incr, MemoryBackend, Op, Set, StateBackend

__all__ = ["Get", "Incr", "MemoryBackend", "Op", "Set", "StateBackend"]
