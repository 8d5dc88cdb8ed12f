"""The status board: live per-target health of every config, fed by finished requests.

:class:`StatusBoard` is a ``Telemetry.request_hooks`` entry: the gateway calls
:meth:`StatusBoard.record` once per finished request with its
:class:`~relaygate.exchange.RequestContext` and final status. From the request's attempts it
keeps, per (config id, target path):

* attempt outcomes in one-second buckets, giving the success ratio over the recent window
  (an attempt succeeds when its reason is ``ok``);
* the latest attempt durations (at most ``max_events`` per target), giving p50/p95 latency
  over the window; every attempt counts, failed ones included;
* the last attempt's status (as the upstream sent it; null when nothing was answered), reason
  and age.

Per config it keeps the outcomes of its requests (a request succeeds when its outcome, as
the observe layer decided it once the answer was delivered, is ``ok``: a stream that broke
after its 2xx status line did not), every fallback pair (two consecutive attempts on
different targets are a fallback *from* the first *to* the second, for the first
attempt's reason) and the last request that fell back, with its route story (see
:mod:`relaygate.route_story`).

Memory is bounded: per series at most ``window_s + 2`` buckets and ``max_events`` samples,
and at most ``max_series`` configs, targets and fallback pairs in all; attempts and pairs
beyond that are counted as ``untracked`` and otherwise ignored. :meth:`StatusBoard.record`
costs O(attempts) and sorts nothing; percentiles are computed in
:meth:`StatusBoard.snapshot`. The board is meant for one event loop and takes no locks.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any, Literal

from relaygate.config.model import RoutingConfig, Target
from relaygate.exchange import AttemptRecord, RequestContext
from relaygate.route_story import route_story

Health = Literal["healthy", "degraded", "failing", "idle"]
"""The health of a target or config over the recent window (see :func:`health`)."""

HEALTHY_RATIO = 0.95
"""A success ratio at or above this is ``healthy``."""

FAILING_RATIO = 0.5
"""A success ratio below this is ``failing``; between the two it is ``degraded``."""

DEFAULT_MAX_EVENTS = 512
"""Default number of recent attempt durations kept per target for latency percentiles."""

DEFAULT_MAX_SERIES = 1000
"""Default bound on the configs, targets and fallback pairs tracked together."""


def health(succeeded: int, failed: int) -> Health:
    """The health of ``succeeded`` and ``failed`` outcomes in the window.

    ``idle`` with no outcome; otherwise by success ratio: ``healthy`` at or above
    :data:`HEALTHY_RATIO`, ``failing`` below :data:`FAILING_RATIO`, else ``degraded``.
    """
    total = succeeded + failed
    if total == 0:
        return "idle"
    ratio = succeeded / total
    if ratio >= HEALTHY_RATIO:
        return "healthy"
    if ratio < FAILING_RATIO:
        return "failing"
    return "degraded"


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q``-quantile (0 < q <= 1) of ascending ``ordered``; ``None`` if empty."""
    if not ordered:
        return None
    rank = max(math.ceil(q * len(ordered)), 1)
    return ordered[rank - 1]


class _Counts:
    """Success and failure counts in one-second buckets ``[second, ok, failed]``, oldest first."""

    __slots__ = ("buckets",)

    def __init__(self) -> None:
        self.buckets: deque[list[int]] = deque()

    def add(self, second: int, ok: bool, oldest: int) -> None:
        buckets = self.buckets
        if buckets and buckets[-1][0] == second:
            bucket = buckets[-1]
        else:
            bucket = [second, 0, 0]
            buckets.append(bucket)
            while buckets[0][0] < oldest:
                buckets.popleft()
        bucket[1 if ok else 2] += 1

    def totals(self, oldest: int) -> tuple[int, int]:
        ok = failed = 0
        for second, good, bad in self.buckets:
            if second >= oldest:
                ok += good
                failed += bad
        return ok, failed


class _TargetSeries:
    __slots__ = ("counts", "last_at", "last_reason", "last_status", "samples", "target")

    def __init__(self, target: Target, max_events: int) -> None:
        self.target = target
        self.counts = _Counts()
        self.samples: deque[tuple[float, float]] = deque(maxlen=max_events)
        self.last_status: int | None = None
        self.last_reason = ""
        self.last_at = 0.0


class _FallbackPair:
    __slots__ = ("counts", "last_at", "last_reason", "source", "target", "total")

    def __init__(self, source: Target, target: Target) -> None:
        self.source = source
        self.target = target
        self.counts = _Counts()
        self.total = 0
        self.last_reason = ""
        self.last_at = 0.0


class _LastFallback:
    __slots__ = ("at", "attempts", "config_id", "request_id", "status", "wall")

    def __init__(
        self,
        config_id: str,
        request_id: str,
        attempts: tuple[AttemptRecord, ...],
        status: int,
        at: float,
        wall: float,
    ) -> None:
        self.config_id = config_id
        self.request_id = request_id
        self.attempts = attempts
        self.status = status
        self.at = at
        self.wall = wall


class _ConfigSeries:
    __slots__ = ("fallbacks", "last_fallback", "pairs", "requests", "targets")

    def __init__(self) -> None:
        self.targets: dict[str, _TargetSeries] = {}
        self.pairs: dict[tuple[str, str], _FallbackPair] = {}
        self.requests = _Counts()
        self.fallbacks = _Counts()
        self.last_fallback: _LastFallback | None = None


class StatusBoard:
    """Rolling per-config, per-target request statistics for the status page.

    ``window_s`` is the recent window that ratios, latencies, counts and health cover, at
    one-second resolution: an outcome stays counted for between ``window_s`` and
    ``window_s + 1`` seconds. ``clock`` gives those seconds (monotonic); ``wall`` gives the
    epoch time shown for the last fallback and the snapshot. ``max_events`` bounds the
    attempt durations kept per target; ``max_series`` bounds configs, targets and fallback
    pairs tracked together (see the module docstring). ``circuit`` reads a target's circuit
    breaker state (``closed``, ``half_open``, ``open``, ``None`` when unknown or off) for
    the snapshot.
    """

    def __init__(
        self,
        window_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_events: int = DEFAULT_MAX_EVENTS,
        *,
        max_series: int = DEFAULT_MAX_SERIES,
        wall: Callable[[], float] = time.time,
        circuit: Callable[[Target], str | None] | None = None,
    ) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s!r}")
        if max_events < 1:
            raise ValueError(f"max_events must be >= 1, got {max_events!r}")
        if max_series < 1:
            raise ValueError(f"max_series must be >= 1, got {max_series!r}")
        self.window_s = float(window_s)
        self._clock = clock
        self._wall = wall
        self._max_events = max_events
        self._max_series = max_series
        self._configs: dict[str, _ConfigSeries] = {}
        self._series = 0
        self._untracked = 0
        self._unrouted = 0
        self._last_fallback: _LastFallback | None = None
        self._circuit = circuit

    # -- the request path --------------------------------------------------------------

    def record(self, ctx: RequestContext, status: int) -> None:
        """Account one finished request: its attempts, fallbacks and final ``status``.

        A request without a resolved config (refused before routing) is only counted as
        ``unrouted``.
        """
        config = ctx.config
        if config is None:
            self._unrouted += 1
            return
        now = self._clock()
        second = math.floor(now)
        oldest = math.floor(now - self.window_s)
        series = self._configs.get(config.id)
        if series is None:
            series = self._new_config(config.id)
            if series is None:
                self._untracked += 1 + len(ctx.attempts)
                return
        # A request succeeds when its outcome is ok (a stream that broke after its 2xx status
        # line did not); a caller without an outcome falls back on the status line.
        ok = ctx.outcome == "ok" if ctx.outcome is not None else 200 <= status < 300
        series.requests.add(second, ok, oldest)
        fell_back = False
        previous: AttemptRecord | None = None
        for attempt in ctx.attempts:
            target = attempt.target
            stats = series.targets.get(target.path)
            if stats is None:
                stats = self._new_target(series, target)
            if stats is None:
                self._untracked += 1
            elif attempt.reason == "circuit_open":
                pass  # skipped by its circuit breaker: no attempt, no outcome
            else:
                stats.target = target
                stats.counts.add(second, attempt.reason == "ok", oldest)
                stats.samples.append((now, attempt.duration_s))
                stats.last_status = attempt.status
                stats.last_reason = attempt.reason
                stats.last_at = now
            if previous is not None and previous.target.path != target.path:
                self._fallback(series, previous, target, second, oldest, now)
                fell_back = True
            previous = attempt
        if fell_back:
            series.fallbacks.add(second, True, oldest)
            attempts = tuple(ctx.attempts)
            last = _LastFallback(config.id, ctx.request_id, attempts, status, now, self._wall())
            series.last_fallback = last
            self._last_fallback = last

    def _fallback(
        self,
        series: _ConfigSeries,
        previous: AttemptRecord,
        target: Target,
        second: int,
        oldest: int,
        now: float,
    ) -> None:
        key = (previous.target.path, target.path)
        pair = series.pairs.get(key)
        if pair is None:
            if self._series >= self._max_series:
                self._untracked += 1
                return
            self._series += 1
            pair = series.pairs[key] = _FallbackPair(previous.target, target)
        pair.source = previous.target
        pair.target = target
        pair.counts.add(second, True, oldest)
        pair.total += 1
        pair.last_reason = previous.reason
        pair.last_at = now

    def _new_config(self, config_id: str) -> _ConfigSeries | None:
        if self._series >= self._max_series:
            return None
        self._series += 1
        series = self._configs[config_id] = _ConfigSeries()
        return series

    def _new_target(self, series: _ConfigSeries, target: Target) -> _TargetSeries | None:
        if self._series >= self._max_series:
            return None
        self._series += 1
        stats = series.targets[target.path] = _TargetSeries(target, self._max_events)
        return stats

    # -- reading -----------------------------------------------------------------------

    def footprint(self) -> dict[str, int]:
        """What the board holds now: ``series`` tracked (configs, targets and pairs),
        ``buckets`` and ``samples`` stored, and ``untracked`` attempts and pairs ignored."""
        buckets = samples = 0
        for series in self._configs.values():
            buckets += len(series.requests.buckets) + len(series.fallbacks.buckets)
            for stats in series.targets.values():
                buckets += len(stats.counts.buckets)
                samples += len(stats.samples)
            for pair in series.pairs.values():
                buckets += len(pair.counts.buckets)
        return {
            "series": self._series,
            "buckets": buckets,
            "samples": samples,
            "untracked": self._untracked,
        }

    def snapshot(self, configs: Iterable[RoutingConfig] = ()) -> dict[str, Any]:
        """The board as JSON-able data for the status page.

        ``configs`` (the compiled known configs) come first, in order, each with all its
        targets (``idle`` when unused); configs and targets seen only in traffic follow.
        Shape::

            {"window_s", "generated_at" (ISO 8601 UTC), "unrouted", "untracked",
             "last_fallback": <fallback> | null,
             "configs": [{"id", "known", "health", "requests", "succeeded",
                          "success_ratio" | null, "fallback_requests",
                          "targets": [{"path", "label", "provider", "model", "health",
                                       "attempts", "succeeded", "success_ratio" | null,
                                       "p50_ms" | null, "p95_ms" | null,
                                       "last": {"status", "reason", "age_s"} | null,
                                       "circuit": "closed" | "half_open" | "open" | null}],
                          "fallbacks": [{"from", "from_label", "to", "to_label", "count",
                                         "total", "last_reason", "last_age_s"}],
                          "last_fallback": <fallback> | null}]}

        where ``<fallback>`` is ``{"config", "request_id", "route", "status", "age_s",
        "at", "hops": [{"from", "from_label", "to", "to_label", "reason"}]}``. Counts,
        ratios and latencies cover the window; ``total`` counts since start. A config's
        health is that of its requests' final statuses, except that a ``healthy`` config
        that fell back within the window is ``degraded``. Fallback pairs are listed most
        recent first.
        """
        now = self._clock()
        views: list[dict[str, Any]] = []
        shown: set[str] = set()
        for config in configs:
            if config.id in shown:
                continue
            shown.add(config.id)
            views.append(
                self._config_view(config.id, config.targets, self._configs.get(config.id), now)
            )
        for config_id, series in self._configs.items():
            if config_id not in shown:
                views.append(self._config_view(config_id, (), series, now, known=False))
        last = self._last_fallback
        return {
            "window_s": self.window_s,
            "generated_at": _iso(self._wall()),
            "unrouted": self._unrouted,
            "untracked": self._untracked,
            "last_fallback": _fallback_view(last, now) if last is not None else None,
            "configs": views,
        }

    def _config_view(
        self,
        config_id: str,
        targets: Iterable[Target],
        series: _ConfigSeries | None,
        now: float,
        known: bool = True,
    ) -> dict[str, Any]:
        oldest = math.floor(now - self.window_s)
        tracked = series.targets if series is not None else {}
        target_views: list[dict[str, Any]] = []
        listed: set[str] = set()
        for target in targets:
            listed.add(target.path)
            target_views.append(self._target_view(target, tracked.get(target.path), now))
        for path, stats in tracked.items():
            if path not in listed:
                target_views.append(self._target_view(stats.target, stats, now))
        succeeded = failed = fell_back = 0
        pair_views: list[dict[str, Any]] = []
        last: dict[str, Any] | None = None
        if series is not None:
            succeeded, failed = series.requests.totals(oldest)
            fell_back = series.fallbacks.totals(oldest)[0]
            pairs = sorted(series.pairs.values(), key=lambda p: p.last_at, reverse=True)
            pair_views = [_pair_view(pair, oldest, now) for pair in pairs]
            if series.last_fallback is not None:
                last = _fallback_view(series.last_fallback, now)
        state = health(succeeded, failed)
        if state == "healthy" and fell_back:
            state = "degraded"
        requests = succeeded + failed
        return {
            "id": config_id,
            "known": known,
            "health": state,
            "requests": requests,
            "succeeded": succeeded,
            "success_ratio": _ratio(succeeded, requests),
            "fallback_requests": fell_back,
            "targets": target_views,
            "fallbacks": pair_views,
            "last_fallback": last,
        }

    def _target_view(
        self, target: Target, stats: _TargetSeries | None, now: float
    ) -> dict[str, Any]:
        view: dict[str, Any] = {
            "path": target.path,
            "label": target.label,
            "provider": target.provider,
            "model": target.model,
            "health": "idle",
            "attempts": 0,
            "succeeded": 0,
            "success_ratio": None,
            "p50_ms": None,
            "p95_ms": None,
            "last": None,
            "circuit": self._circuit(target) if self._circuit is not None else None,
        }
        if stats is None:
            return view
        start = now - self.window_s
        succeeded, failed = stats.counts.totals(math.floor(start))
        durations = sorted(d for at, d in stats.samples if at >= start)
        attempts = succeeded + failed
        view["health"] = health(succeeded, failed)
        view["attempts"] = attempts
        view["succeeded"] = succeeded
        view["success_ratio"] = _ratio(succeeded, attempts)
        view["p50_ms"] = _ms(percentile(durations, 0.5))
        view["p95_ms"] = _ms(percentile(durations, 0.95))
        view["last"] = {
            "status": stats.last_status,
            "reason": stats.last_reason,
            "age_s": _age(stats.last_at, now),
        }
        return view


def _pair_view(pair: _FallbackPair, oldest: int, now: float) -> dict[str, Any]:
    return {
        "from": pair.source.path,
        "from_label": pair.source.label,
        "to": pair.target.path,
        "to_label": pair.target.label,
        "count": pair.counts.totals(oldest)[0],
        "total": pair.total,
        "last_reason": pair.last_reason,
        "last_age_s": _age(pair.last_at, now),
    }


def _fallback_view(last: _LastFallback, now: float) -> dict[str, Any]:
    attempts = last.attempts
    hops = [
        {
            "from": earlier.target.path,
            "from_label": earlier.target.label,
            "to": later.target.path,
            "to_label": later.target.label,
            "reason": earlier.reason,
        }
        for earlier, later in pairwise(attempts)
        if earlier.target.path != later.target.path
    ]
    return {
        "config": last.config_id,
        "request_id": last.request_id,
        "route": route_story(attempts),
        "status": last.status,
        "age_s": _age(last.at, now),
        "at": _iso(last.wall),
        "hops": hops,
    }


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _age(at: float, now: float) -> float:
    return round(max(now - at, 0.0), 1)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
