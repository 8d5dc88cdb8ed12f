"""Measuring each attempt's load on its target, for health-aware ``loadbalance`` choices.

The layer sits between retry and log: it counts the attempt in flight on the gateway's
:class:`~relaygate.load.LoadBoard` from the moment it starts until its answer is complete (a
stream: until the stream ends, however it ends), and folds the attempt's latency (a stream:
until its first chunk) into the target's estimate, as
:func:`~relaygate.strategies.balance.latency_sample` says.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from relaygate.exchange import GatewayRequest, GatewayResponse, ResponseStream
from relaygate.load import LoadBoard, TargetKey
from relaygate.pipeline import Handler
from relaygate.strategies.balance import latency_sample
from relaygate.strategies.reasons import Reason, classify


def _reason(response: GatewayResponse) -> Reason | None:
    """The attempt's :class:`Reason`; ``None`` for an outcome outside the vocabulary."""
    try:
        failure = Reason(response.failure) if response.failure else None
    except ValueError:
        return None
    return classify(response.status, failure)


class LoadLayer:
    """Feeds ``board`` from every attempt; ``now`` is the loop clock (seconds)."""

    def __init__(self, board: LoadBoard, now: Callable[[], float] | None = None) -> None:
        self._board = board
        self._now = now

    def __call__(self, inner: Handler) -> Handler:
        board = self._board
        clock = self._now

        async def load(request: GatewayRequest) -> GatewayResponse:
            target = request.target
            assert target is not None, "the fallback layer binds a target before the attempt"
            key = target.endpoint  # target_key(target), computed once per target
            if not board.started(key):
                return await inner(request)
            now = clock or asyncio.get_running_loop().time
            start = now()
            try:
                response = await inner(request)
            except BaseException:
                board.finished(key)
                raise
            end = now()
            reason = _reason(response)
            sample = latency_sample(reason, end - start) if reason is not None else None
            if sample is not None:
                board.observe(key, sample, end)
            if response.stream is None:
                board.finished(key)
            else:
                response.stream.on_end(_finisher(board, key))
            return response

        return load


def _finisher(board: LoadBoard, key: TargetKey) -> Callable[[ResponseStream], None]:
    def finished(_: ResponseStream) -> None:
        board.finished(key)

    return finished
