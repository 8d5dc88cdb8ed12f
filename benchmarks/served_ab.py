"""Interleaved comparison of served gateways: telemetry settings side by side, or code trees.

``run.sh`` measures each system once per repetition, minutes apart; when two figures differ
by a few percent, the machine's drift in between is as large as the difference. This runs
every variant at the same time (each its own ``relaygate serve`` on core 0, its upstream
and OTLP sink on core 1) and alternates short wrk runs between them, round after round, so
each round compares them within seconds; the figure is each variant's median CPU per
request and its ratio to the first variant's in the same round.

Variants are ``telemetry`` settings of the served config (:data:`TELEMETRY`): ``off``,
``logs`` (metrics and the JSON log line on, no spans), ``tail`` (the production setting,
:data:`~benchmarks.systems.PRODUCTION_TRACES`: tail sampling, the request and attempt
spans), ``tail0`` and ``tail1`` (the same keeping no clean trace, what making the spans
costs, and 1 % of them), ``tail-full`` (tail sampling at ``detail: full``, a span per layer
and strategy node too) and ``on`` (every trace exported, ``detail: full``); with
``--tree NAME=PATH`` the same setting is served from several checkouts (``git worktree
add ../old <rev>``) instead. The upstream answers at once
(:mod:`benchmarks.delay_upstream` with no delay) unless ``--kind slow``.

Run: ``python -m benchmarks.served_ab [--variants off,logs,tail,on] [--conns 16]
[--rounds 5] [--seconds 6]`` or ``python -m benchmarks.served_ab --variants on
--tree old=../old --tree new=.``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.loadgen import run_wrk
from benchmarks.procs import Processes, Service, free_port, http_ok, port_open, python_env
from benchmarks.systems import (
    PRODUCTION_TRACES,
    TAIL_SAMPLING,
    Upstreams,
    relaygate_server_config,
    relaygate_system,
    write_json,
)

REPO = Path(__file__).resolve().parent.parent

_KEEP_NONE = {**PRODUCTION_TRACES, "tail_sampling": {**TAIL_SAMPLING, "keep_ok_ratio": 0.0}}
_KEEP_ONE_PERCENT = {**PRODUCTION_TRACES, "tail_sampling": {**TAIL_SAMPLING, "keep_ok_ratio": 0.01}}

VARIANTS: dict[str, dict[str, Any] | None] = {
    "off": None,
    "logs": {"exporter": "none", "detail": "off"},
    "tail0": _KEEP_NONE,
    "tail1": _KEEP_ONE_PERCENT,
    "tail": PRODUCTION_TRACES,
    "tail-full": {"tail_sampling": TAIL_SAMPLING},
    "on": None,
}
"""Each telemetry setting a variant may name, as its tracing settings over the benchmark's
telemetry-on config (see the module docstring; ``off`` is telemetry off)."""

TELEMETRY = tuple(VARIANTS)
"""The telemetry settings a variant may name."""


def served_config(up: Upstreams, port: int, telemetry: str, sink_port: int) -> dict[str, Any]:
    """The benchmark's server config with ``telemetry`` (one of :data:`TELEMETRY`)."""
    on = telemetry != "off"
    return relaygate_server_config(up, port, on, sink_port if on else None, VARIANTS[telemetry])


def _python(procs: Processes, name: str, args: list[str], port: int, tree: Path) -> Service:
    env = python_env(tree)
    core = "0" if args[1] == "relaygate.cli" else "1"
    return procs.start(name, [sys.executable, *args], port, core, env, cwd=tree)


def main(argv: list[str] | None = None) -> int:
    """Serve the variants, alternate wrk runs between them, print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default="off,logs,tail,on")
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--kind", default="single", choices=("single", "slow"))
    parser.add_argument("--conns", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=6.0)
    ns = parser.parse_args(argv)
    settings = ns.variants.split(",")
    if unknown := set(settings) - set(TELEMETRY):
        parser.error(f"unknown variants {sorted(unknown)}; known: {', '.join(TELEMETRY)}")
    trees = dict(t.split("=", 1) for t in ns.tree) or {"": str(REPO)}
    if len(trees) > 1 and len(settings) > 1:
        parser.error("compare either telemetry settings or trees, not both")
    variants = [
        (f"{tree_name}{':' if tree_name else ''}{setting}", Path(path).resolve(), setting)
        for tree_name, path in trees.items()
        for setting in settings
    ]
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (benchmarks/run.sh installs it)")
    run_dir = Path(tempfile.mkdtemp(prefix="relaygate-ab-"))
    procs = Processes(run_dir)
    try:
        ports = [free_port(), free_port()]
        for port, delay in zip(ports, ("0", "50"), strict=True):
            args = ["-m", "benchmarks.delay_upstream", "--port", str(port), "--delay-ms", delay]
            _python(procs, f"upstream-{delay}", args, port, REPO).wait_ready(
                partial(port_open, port)
            )
        up = Upstreams(*ports)
        served: list[tuple[str, Service, Any]] = []
        for name, tree, setting in variants:
            sink_port, port = free_port(), free_port()
            sink_args = ["-m", "benchmarks.otlp_sink", "--port", str(sink_port)]
            _python(procs, f"{name}-sink", sink_args, sink_port, REPO).wait_ready(
                partial(port_open, sink_port)
            )
            path = write_json(
                run_dir / f"{name.replace(':', '-')}.json",
                served_config(up, port, setting, sink_port),
            )
            args = ["-m", "relaygate.cli", "serve", "--config", str(path)]
            svc = _python(procs, name, args, port, tree)
            svc.wait_ready(partial(http_ok, f"http://127.0.0.1:{port}/health"))
            served.append((name, svc, relaygate_system(name, port).request(ns.kind)))
        for _, svc, request in served:  # warm-up
            run_wrk(request, ns.conns, 2, svc, run_dir, cores="1")
        figures: dict[str, list[float]] = {name: [] for name, _, _ in served}
        ratios: dict[str, list[float]] = {name: [] for name, _, _ in served}
        for round_no in range(ns.rounds):
            first = None
            for name, svc, request in served:
                row = run_wrk(request, ns.conns, ns.seconds, svc, run_dir, cores="1")
                if row["non_2xx"] or row["socket_errors"]:
                    raise SystemExit(f"{name}: errors in round {round_no}: {row}")
                cpu = float(row["cpu_ms_per_req"])
                first = cpu if first is None else first
                figures[name].append(cpu)
                ratios[name].append(cpu / first)
                print(f"round {round_no + 1} {name:>16} {cpu:.3f} ms/req", flush=True)
        print(f"\n{'variant':>16} {'CPU ms/req':>11} {'÷ first':>8}  (medians of {ns.rounds})")
        for name in figures:
            print(f"{name:>16} {_median(figures[name]):11.3f} {_median(ratios[name]):7.2f}x")
    finally:
        procs.stop_all()
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


if __name__ == "__main__":
    raise SystemExit(main())
