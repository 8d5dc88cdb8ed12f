"""Snapshots of relaygate's metric families as plain data, and the merge of several.

A worker process records into its own lock-free families
(:mod:`relaygate.exporters.prometheus`); to answer for a whole instance, one process merges
the snapshots of all of them (:mod:`relaygate.exporters.workers` moves them around). A
snapshot is JSON-ready data, self-describing by metric type::

    {"counter":   {name: [[labels, value, created, exemplar], ...]},
     "histogram": {name: [[labels, buckets, sum, created, exemplars], ...]},
     "gauge":     {name: value},
     "gauges":    {name: [[labels, value], ...]}}      (labelled gauges)

``labels`` are the label values in the family's order; ``buckets`` are per-bucket
(non-cumulative) counts, ``+Inf`` last; an exemplar is ``[labels, value, unix time]`` or
``null``; a non-finite float is written as its string (``"inf"``, ``"nan"``), which JSON
cannot hold as a number.

The merge (:func:`combine`) of snapshots of families with the same definitions is what one
process that had recorded everything would hold: counters, histogram buckets and sums and
gauges are summed; a series' ``_created`` is the earliest; an exemplar (per counter series,
per histogram bucket) is the most recent of those recorded. :func:`families` turns a merged
snapshot back into families of the local definitions, so it is exported exactly as a single
process's families are.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from relaygate.exporters.prometheus import (
    CounterChild,
    CounterFamily,
    Family,
    GaugeChild,
    GaugeFamily,
    HistogramChild,
    HistogramFamily,
    LabelledGaugeFamily,
)

Snapshot = dict[str, Any]
"""One snapshot (or merge of snapshots) in the format of the module docstring."""

_Row = list[Any]


def empty() -> Snapshot:
    """A snapshot of nothing (the neutral element of :func:`combine`)."""
    return {"counter": {}, "histogram": {}, "gauge": {}, "gauges": {}}


def _num(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def _float(value: float | str) -> float:
    return float(value)


def _ex(recorded: Sequence[Any] | None) -> list[Any] | None:
    if recorded is None:
        return None
    return [recorded[0], _num(recorded[1]), recorded[2]]


def take(families: Iterable[Family]) -> Snapshot:
    """The current state of ``families`` (call on the recording thread for a consistent view;
    from another thread each histogram series is still read from one copy of its buckets)."""
    out = empty()
    counters, histograms, gauges = out["counter"], out["histogram"], out["gauge"]
    for family in families:
        if isinstance(family, GaugeFamily):
            gauges[family.name] = _num(family.value)
        elif isinstance(family, LabelledGaugeFamily):
            out["gauges"][family.name] = [
                [list(g.labels), _num(g.value)] for g in family.children()
            ]
        elif isinstance(family, CounterFamily):
            counters[family.name] = [
                [list(c.labels), _num(c.value), c.created, _ex(c.exemplar)]
                for c in family.children()
            ]
        else:
            rows: list[_Row] = []
            for h in family.children():
                exemplars = h.exemplars[:]  # before the counts, as the collector reads them
                buckets = h.buckets[:]
                rows.append(
                    [list(h.labels), buckets, _num(h.sum), h.created, [_ex(e) for e in exemplars]]
                )
            histograms[family.name] = rows
    return out


def without_gauges(snapshot: Snapshot) -> Snapshot:
    """``snapshot`` less its gauges: what outlives a process that ended (a gauge is a
    reading of now, a counter the history that Prometheus expects never to go back)."""
    return {"counter": snapshot.get("counter", {}), "histogram": snapshot.get("histogram", {})}


def _newer(a: list[Any] | None, b: list[Any] | None) -> list[Any] | None:
    if a is None:
        return b
    if b is None:
        return a
    return b if b[2] > a[2] else a


def _by_creation(rows: Iterable[_Row], created: int) -> list[_Row]:
    """``rows`` oldest series first, as one process would hold them (ties keep their order)."""
    return sorted(rows, key=lambda row: row[created])


def combine(snapshots: Iterable[Mapping[str, Any]]) -> Snapshot:
    """The merge of ``snapshots`` (see the module docstring).

    Series are ordered by their merged ``_created``, as one process holds them in creation
    order. A histogram row whose bucket count differs from the first row of the same series
    is skipped."""
    counters: dict[str, dict[tuple[str, ...], _Row]] = {}
    histograms: dict[str, dict[tuple[str, ...], _Row]] = {}
    gauges: dict[str, float] = {}
    series: dict[str, dict[tuple[str, ...], float]] = {}
    for snap in snapshots:
        for name, rows in snap.get("gauges", {}).items():
            summed = series.setdefault(name, {})
            for labels, value in rows:
                key = tuple(labels)
                summed[key] = summed.get(key, 0.0) + _float(value)
        for name, rows in snap.get("counter", {}).items():
            merged = counters.setdefault(name, {})
            for labels, value, created, exemplar in rows:
                key = tuple(labels)
                row = merged.get(key)
                if row is None:
                    merged[key] = [list(labels), _float(value), created, exemplar]
                else:
                    row[1] += _float(value)
                    row[2] = min(row[2], created)
                    row[3] = _newer(row[3], exemplar)
        for name, rows in snap.get("histogram", {}).items():
            merged = histograms.setdefault(name, {})
            for labels, buckets, total, created, exemplars in rows:
                key = tuple(labels)
                row = merged.get(key)
                if row is None:
                    merged[key] = [list(labels), list(buckets), _float(total), created, exemplars]
                elif len(row[1]) == len(buckets) == len(exemplars):
                    row[1] = [x + y for x, y in zip(row[1], buckets, strict=True)]
                    row[2] += _float(total)
                    row[3] = min(row[3], created)
                    row[4] = [_newer(x, y) for x, y in zip(row[4], exemplars, strict=True)]
        for name, value in snap.get("gauge", {}).items():
            gauges[name] = gauges.get(name, 0.0) + _float(value)
    return {
        "counter": {
            name: [[r[0], _num(r[1]), r[2], r[3]] for r in _by_creation(rows.values(), 2)]
            for name, rows in counters.items()
        },
        "histogram": {
            name: [[r[0], r[1], _num(r[2]), r[3], r[4]] for r in _by_creation(rows.values(), 3)]
            for name, rows in histograms.items()
        },
        "gauge": {name: _num(value) for name, value in gauges.items()},
        "gauges": {
            name: [[list(labels), _num(value)] for labels, value in rows.items()]
            for name, rows in series.items()
        },
    }


def _exemplar(recorded: Sequence[Any] | None) -> tuple[dict[str, str], float, float] | None:
    if recorded is None:
        return None
    return (dict(recorded[0]), _float(recorded[1]), float(recorded[2]))


def families(definitions: Iterable[Family], snapshot: Mapping[str, Any]) -> list[Family]:
    """New families with the names, help, labels and buckets of ``definitions`` (in their
    order), holding the series of ``snapshot``. Series of families ``definitions`` does not
    define, and rows that do not fit their family (label or bucket count), are left out."""
    counters = snapshot.get("counter", {})
    histograms = snapshot.get("histogram", {})
    gauges = snapshot.get("gauge", {})
    out: list[Family] = []
    for definition in definitions:
        name = definition.name
        if isinstance(definition, GaugeFamily):
            gauge = GaugeFamily(name, definition.documentation)
            gauge.value = _float(gauges.get(name, 0.0))
            out.append(gauge)
        elif isinstance(definition, LabelledGaugeFamily):
            labelled = LabelledGaugeFamily(name, definition.documentation, definition.labelnames)
            for labels, value in snapshot.get("gauges", {}).get(name, ()):
                if len(labels) == len(definition.labelnames):
                    series = GaugeChild(tuple(labels))
                    series.value = _float(value)
                    labelled.adopt(series)
            out.append(labelled)
        elif isinstance(definition, CounterFamily):
            counter = CounterFamily(name, definition.documentation, definition.labelnames)
            width = len(definition.labelnames)
            for labels, value, created, exemplar in counters.get(name, ()):
                if len(labels) != width:
                    continue
                child = CounterChild(tuple(labels))
                child.value = _float(value)
                child.created = created
                child.exemplar = _exemplar(exemplar)
                counter.adopt(child)
            out.append(counter)
        else:
            histogram = HistogramFamily(
                name, definition.documentation, definition.labelnames, definition.bounds
            )
            width = len(definition.labelnames)
            size = len(definition.bounds) + 1
            for labels, buckets, total, created, exemplars in histograms.get(name, ()):
                if len(labels) != width or len(buckets) != size or len(exemplars) != size:
                    continue
                h = HistogramChild(tuple(labels), definition.bounds)
                h.buckets = [int(n) for n in buckets]
                h.sum = _float(total)
                h.created = created
                h.exemplars = [_exemplar(e) for e in exemplars]
                histogram.adopt(h)
            out.append(histogram)
    return out
