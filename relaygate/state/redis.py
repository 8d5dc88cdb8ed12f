"""State in Redis (or Valkey), through redis-py's asyncio client.

Batches are sent as pipelines (no MULTI: the operations need no isolation from each other,
only one round trip): ``INCRBY`` + ``EXPIRE`` per :class:`Incr`, ``GET`` per :class:`Get`,
``SET ... EX`` per :class:`Set`. Concurrent requests share round trips: the batches handed
to :meth:`RedisBackend.run` while the process's previous pipeline is still out are queued
and go together in the next one, so a process has one pipeline (one connection) out at a
time whatever its concurrency, and pays the client's per-round-trip cost once per pipeline
rather than once per request. Each batch still gets its own results, in order.

The client is created on first use, in the event loop of the worker that uses it, with
short socket timeouts so that a Redis that stops answering costs a request at most
``timeout_s`` before the local fallback answers (:mod:`relaygate.state.shared`): when a
pipeline fails, the batches queued behind it fail with it at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from relaygate.state.backend import Get, Incr, Op, Result

__all__ = ["RedisBackend"]

_Waiting = tuple[Sequence[Op], "asyncio.Future[list[Result]]"]
"""A batch and the future its caller awaits."""


class RedisBackend:
    """A :class:`~relaygate.state.backend.StateBackend` in Redis at ``url``
    (``redis://host:port/db``, ``rediss://`` for TLS), keys prefixed with ``prefix``."""

    shared = True

    def __init__(self, url: str, *, prefix: str = "relaygate:", timeout_s: float = 0.25) -> None:
        self._url = url
        self._prefix = prefix
        self._timeout_s = timeout_s
        self._client: Any = None
        self._queue: list[_Waiting] = []
        self._sending: asyncio.Task[None] | None = None
        self.round_trips = 0
        """Pipelines sent so far (each carries one or more batches)."""

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
        """Run ``ops`` in the next pipeline (see the module docstring); raises redis-py's
        errors (connection, timeout)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[Result]] = loop.create_future()
        self._queue.append((ops, done))
        if self._sending is None:
            self._sending = loop.create_task(self._send_all())
        return await done

    async def _send_all(self) -> None:
        """Send the queued batches, one pipeline at a time, until none is left."""
        try:
            while self._queue:
                batches, self._queue = self._queue, []
                try:
                    replies = await self._execute([op for ops, _ in batches for op in ops])
                except asyncio.CancelledError:
                    for _, done in batches + self._queue:
                        done.cancel()
                    self._queue = []
                    raise
                except Exception as exc:
                    # The batches queued meanwhile would meet the same Redis: fail them too.
                    for _, done in batches + self._queue:
                        if not done.done():
                            done.set_exception(exc)
                    self._queue = []
                    continue
                start = 0
                for ops, done in batches:
                    end = start + _reply_count(ops)
                    if not done.done():
                        done.set_result(_results(ops, replies[start:end]))
                    start = end
        finally:
            self._sending = None

    async def _execute(self, ops: Sequence[Op]) -> list[Any]:
        """One pipeline of ``ops``; its raw replies."""
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
        self.round_trips += 1
        replies: list[Any] = await pipe.execute()
        return replies

    async def aclose(self) -> None:
        """Close the connection pool."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _reply_count(ops: Sequence[Op]) -> int:
    """Replies a pipeline gives for ``ops`` (two per :class:`Incr`)."""
    return sum(2 if isinstance(op, Incr) else 1 for op in ops)


def _results(ops: Sequence[Op], replies: Sequence[Any]) -> list[Result]:
    """``ops``' results from their raw replies."""
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
