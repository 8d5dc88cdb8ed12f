"""State in Redis (or Valkey), through redis-py's asyncio client.

One :meth:`RedisBackend.run` is one pipeline (no MULTI: the operations need no isolation
from each other, only one round trip): ``INCRBY`` + ``EXPIRE`` per :class:`Incr`, ``GET``
per :class:`Get`, ``SET ... EX`` per :class:`Set`. The client is created on first use, in
the event loop of the worker that uses it, with short socket timeouts so that a Redis that
stops answering costs a request at most ``timeout_s`` before the local fallback answers
(:mod:`relaygate.state.shared`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from relaygate.state.backend import Get, Incr, Op, Result

__all__ = ["RedisBackend"]


class RedisBackend:
    """A :class:`~relaygate.state.backend.StateBackend` in Redis at ``url``
    (``redis://host:port/db``, ``rediss://`` for TLS), keys prefixed with ``prefix``."""

    shared = True

    def __init__(self, url: str, *, prefix: str = "relaygate:", timeout_s: float = 0.25) -> None:
        self._url = url
        self._prefix = prefix
        self._timeout_s = timeout_s
        self._client: Any = None

    def _redis(self) -> Any:
        if self._client is None:
            from redis.asyncio import Redis  # imported only when Redis is configured

            self._client = Redis.from_url(
                self._url,
                socket_timeout=self._timeout_s,
                socket_connect_timeout=self._timeout_s,
                retry_on_timeout=False,
                health_check_interval=0,
            )
        return self._client

    async def run(self, ops: Sequence[Op]) -> list[Result]:
        """Run ``ops`` as one pipeline; raises redis-py's errors (connection, timeout)."""
        prefix = self._prefix
        pipe = self._redis().pipeline(transaction=False)
        for op in ops:
            key = prefix + op.key
            if isinstance(op, Incr):
                pipe.incrby(key, op.amount)
                pipe.expire(key, op.ttl_s)
            elif isinstance(op, Get):
                pipe.get(key)
            else:
                pipe.set(key, op.value, ex=op.ttl_s)
        replies = await pipe.execute()
        out: list[Result] = []
        index = 0
        for op in ops:
            reply = replies[index]
            if isinstance(op, Incr):
                out.append(int(reply))
                index += 2
            elif isinstance(op, Get):
                out.append(reply if isinstance(reply, bytes) or reply is None else bytes(reply))
                index += 1
            else:
                out.append(None)
                index += 1
        return out

    async def aclose(self) -> None:
        """Close the connection pool."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
