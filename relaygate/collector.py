"""The garbage collector's settings for a process that serves relaygate.

Reference counting frees almost everything a request makes; the cyclic collector runs on
top, once the tracked objects allocated and not yet freed exceed ``threshold0``, and each
young collection walks every young object still alive: under concurrency, every in-flight
request's. At CPython's default of 700 a served gateway spent 3-5 % (telemetry off) to
6-8 % (tail-sampled spans) of its CPU at 16-64 connections on collections it no longer
makes at :data:`YOUNG_THRESHOLD` (measured side by side as ``python -m
benchmarks.served_ab`` does; benchmarks/README.md, third pass). :func:`settle` ends a
served start-up: what start-up made is frozen out of later collections, and the young
threshold is raised unless the process chose its own.
"""

from __future__ import annotations

import gc

DEFAULT_YOUNG_THRESHOLD = 700
"""CPython's own young-generation threshold (3.11-3.13): the value :func:`settle` replaces."""

YOUNG_THRESHOLD = 20_000
"""Container allocations between young collections in a served process: measured against
5,000 and 50,000 (benchmarks/README.md); memory at load unchanged (71-76 MiB)."""


def settle() -> None:
    """Freeze the objects made so far out of later collections and raise the young
    threshold to :data:`YOUNG_THRESHOLD`, unless it is no longer CPython's default (a host
    or an operator set it: theirs stands). The older generations' thresholds are kept."""
    gc.freeze()
    young, *older = gc.get_threshold()
    if young == DEFAULT_YOUNG_THRESHOLD:
        gc.set_threshold(YOUNG_THRESHOLD, *older)
