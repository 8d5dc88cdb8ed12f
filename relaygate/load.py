"""Load of upstream targets as the gateway sees it: requests in flight and peak-EWMA latency.

:class:`LoadBoard` is gateway-level state, not part of any compiled config: it is keyed by
what is actually called (:func:`target_key`: provider, base URL, model, Azure resource and
deployment), so every config naming the same endpoint (named, default, inline configs sent
per request) shares its numbers, and a config reload keeps them for every target it did not
change. It is filled by :class:`relaygate.middleware.load.LoadLayer` and read by the
``loadbalance`` choice (:mod:`relaygate.strategies.balance`). Each worker process keeps its
own board.

The latency estimate is a peak-EWMA (as in Finagle's and Linkerd's balancers): a sample
above the stored estimate replaces it at once (the peak), a lower one is blended in with
weight ``1 - exp(-elapsed / decay_s)`` (``elapsed``: time since the previous sample). Read
between samples, the estimate decays towards 0 with the same time constant, so a child that
was slow or failing gets traffic again after a while and is measured anew.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from relaygate.config.model import Node, Target, iter_targets
from relaygate.strategies.balance import IDLE, Load, combined

DECAY_S = 10.0
"""Time constant of the latency estimate, seconds."""

MAX_KEYS = 10_000
"""Most targets a board tracks. Keys come from caller-supplied configs too (their base URLs
and models), so the board is bounded: past this, idle entries are dropped, and if none is
idle a new target is not tracked (it counts as idle with no sample)."""

TargetKey = tuple[str, str, str, str, str]
"""What identifies an upstream endpoint: provider, base URL, model, resource, deployment."""


def target_key(target: Target) -> TargetKey:
    """The :data:`TargetKey` of ``target`` (empty strings for what it does not set),
    computed once per compiled target (:attr:`~relaygate.config.model.Target.endpoint`)."""
    return target.endpoint


class _Entry:
    __slots__ = ("in_flight", "latency_s", "stamp")

    def __init__(self) -> None:
        self.in_flight = 0
        self.latency_s = 0.0
        self.stamp = 0.0


class LoadBoard:
    """Requests in flight and latency estimates per :data:`TargetKey` (see the module
    docstring). Used from one event loop; no locks."""

    def __init__(self, decay_s: float = DECAY_S, max_keys: int = MAX_KEYS) -> None:
        self._decay_s = decay_s
        self._max = max_keys
        self._entries: dict[TargetKey, _Entry] = {}

    def _entry(self, key: TargetKey) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= self._max:
                self._entries = {k: e for k, e in self._entries.items() if e.in_flight > 0}
                if len(self._entries) >= self._max:
                    return None
            entry = self._entries[key] = _Entry()
        return entry

    def started(self, key: TargetKey) -> bool:
        """Count a request in flight to ``key``; ``False`` when the board is full and does
        not track it (then :meth:`finished` must not be called for it)."""
        entry = self._entry(key)
        if entry is None:
            return False
        entry.in_flight += 1
        return True

    def finished(self, key: TargetKey) -> None:
        """A request to ``key`` counted by :meth:`started` has ended."""
        entry = self._entries.get(key)
        if entry is not None and entry.in_flight > 0:
            entry.in_flight -= 1

    def observe(self, key: TargetKey, sample_s: float, now: float) -> None:
        """Fold a latency sample taken at loop time ``now`` into ``key``'s estimate."""
        entry = self._entry(key)
        if entry is None or not math.isfinite(sample_s):
            return
        if sample_s >= entry.latency_s:
            entry.latency_s = sample_s
        else:
            weight = math.exp(-max(now - entry.stamp, 0.0) / self._decay_s)
            entry.latency_s = entry.latency_s * weight + sample_s * (1.0 - weight)
        entry.stamp = now

    def _decayed(self, entry: _Entry, now: float) -> float:
        if entry.latency_s <= 0:
            return 0.0
        return entry.latency_s * math.exp(-max(now - entry.stamp, 0.0) / self._decay_s)

    def load(self, key: TargetKey, now: float) -> Load:
        """``key``'s load at loop time ``now``."""
        entry = self._entries.get(key)
        if entry is None:
            return IDLE
        return Load(in_flight=entry.in_flight, latency_s=self._decayed(entry, now))

    def of_node(self, node: Node, now: float) -> Load:
        """The load of a child: a target's own, or a strategy's
        :func:`~relaygate.strategies.balance.combined` over its targets."""
        if isinstance(node, Target):
            return self.load(target_key(node), now)
        return combined([self.load(target_key(t), now) for t in iter_targets(node)])

    def loads(self, now: float) -> Callable[[Node], Load]:
        """A reader of children's loads at ``now``, for the ``loadbalance`` choice."""
        return lambda node: self.of_node(node, now)
