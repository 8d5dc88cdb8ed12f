"""Turn a benchmark run's raw results into medians, ratios, target verdicts and tables.

Ratios are computed per repetition against the baseline measured in the same repetition
(direct call for throughput and latency, the bare floor proxy for CPU), then the median of
the repetitions is reported, so drift in a noisy machine cancels out as far as it can.
A row with any non-2xx answer, socket error, failed run or dead process is flagged, and a
target measured on a flagged row is reported as ``INVALID`` rather than met.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
import statistics
import subprocess
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RESULTS_START = "<!-- results:start -->"
RESULTS_END = "<!-- results:end -->"
PEERS_START = "<!-- peers:start -->"
PEERS_END = "<!-- peers:end -->"
PROFILE_START = "<!-- profile:start -->"
PROFILE_END = "<!-- profile:end -->"

METRICS = (
    "rps",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p999_ms",
    "cpu_ms_per_req",
    "loadgen_cpu_ms_per_req",
    "rss_mib",
    "ttfb_p50_ms",
    "ttfb_p90_ms",
    "ttfb_p99_ms",
    "total_p50_ms",
    "total_p90_ms",
    "total_p99_ms",
    "events_per_stream",
    "redis_cpu_ms_per_req",
)
"""Per-run figures whose median over repetitions is reported."""

SHARED_STATE_ROWS = (
    ("relaygate.single.c64", "1 worker, no limits, no Redis (the single-process figure)"),
    ("relaygate-mem.single.c64", "1 worker, key limits + breaker, in-process state"),
    ("relaygate-redis.single.c64", "1 worker, key limits + shared breaker in Redis"),
    ("relaygate-2w.single.c64", "2 workers, no limits, no Redis"),
    ("relaygate-redis-2w.single.c64", "2 workers, key limits + breaker in Redis"),
    ("relaygate-2r.single.c64", "2 replicas (1 worker each) sharing Redis"),
)
"""The rows of the many-replicas table (``benchmarks/replicas.py``), in order."""

RATIOS = (
    "rps_x_direct",
    "p50_x_direct",
    "added_p50_ms",
    "added_p90_ms",
    "added_p99_ms",
    "added_ttfb_p50_ms",
    "added_ttfb_p99_ms",
    "added_total_p50_ms",
    "added_total_p99_ms",
    "cpu_x_floor",
)
"""Per-repetition comparisons with the same repetition's baselines."""

TARGETS = {
    "cpu_single_ms": 0.5,
    "cpu_fallback_ms": 1.0,
    "added_p50_ms": 0.5,
    "added_p99_ms": 2.0,
    "added_ttfb_ms": 1.0,
    "idle_rss_mib": 80.0,
    "telemetry_cpu_ratio": 1.25,
    "tail_sampling_cpu_ratio": 1.3,
    "worker_scaling": 1.8,
    "efficiency_vs_portkey": 2.5,
    "efficiency_vs_litellm": 25.0,
}
"""The issue's targets (limits; scaling and efficiency against a peer are minimums)."""


# --- machine -----------------------------------------------------------------------------


def _cmd_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "?"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _dep_versions() -> dict[str, str]:
    names = ["relaygate"]
    try:
        for req in importlib.metadata.requires("relaygate") or []:
            if "extra ==" in req:
                continue
            names.append(re.split(r"[\s<>=!~\[;]", req, maxsplit=1)[0])
    except importlib.metadata.PackageNotFoundError:
        pass
    names += ["uvloop", "httptools", "httpcore", "opentelemetry-exporter-otlp-proto-common"]
    versions: dict[str, str] = {}
    for name in dict.fromkeys(names):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def source_fingerprint(root: Path | None = None) -> dict[str, str]:
    """Which relaygate code ran: the checked-out commit (marked ``-dirty`` when the tree has
    changes) and a SHA-256 over the package's Python sources, which tells apart runs on
    different uncommitted code."""
    root = root or Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted((root / "relaygate").rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    commit = _cmd_version(["git", "-C", str(root), "describe", "--always", "--dirty"])
    return {"commit": commit, "sources_sha256": digest.hexdigest()[:16]}


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, kernel, Python, tool and dependency versions, current load, and the
    relaygate code measured."""
    return {
        "code": source_fingerprint(),
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nginx": _cmd_version(["nginx", "-v"]),
        "wrk": _cmd_version(["wrk", "-v"]).split(" Copyright")[0],
        "load_average_at_start": os.getloadavg(),
        "versions": _dep_versions(),
    }


# --- aggregation -------------------------------------------------------------------------


def progress_line(row: dict[str, Any]) -> str:
    """One line about a finished run, for the console."""
    if "failed" in row:
        return f"{row['key']}: FAILED {row['failed']}"
    parts = [row["key"]]
    if "rps" in row:
        parts.append(f"{row['rps']:.0f} req/s p50 {row['p50_ms']:.2f} ms p99 {row['p99_ms']:.2f}")
    if row.get("ttfb_p50_ms") is not None:
        parts.append(f"ttfb p50 {row['ttfb_p50_ms']:.2f} ms total p50 {row['total_p50_ms']:.2f}")
    if row.get("cpu_ms_per_req") is not None:
        parts.append(f"cpu {row['cpu_ms_per_req']:.3f} ms/req")
    errors = row.get("non_2xx", 0) + row.get("socket_errors", 0)
    if errors:
        parts.append(f"ERRORS {errors}")
    return " | ".join(parts)


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _delta(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def per_rep_ratios(runs: list[dict[str, Any]]) -> None:
    """Add each run's comparisons with its repetition's direct and floor runs (in place)."""
    index = {(r["key"], r["rep"]): r for r in runs}
    for run in runs:
        base = index.get((run.get("baseline"), run["rep"]))
        if base is None or "failed" in run or "failed" in base:
            continue
        run["rps_x_direct"] = _ratio(run.get("rps"), base.get("rps"))
        run["p50_x_direct"] = _ratio(run.get("p50_ms"), base.get("p50_ms"))
        for pct in ("p50", "p90", "p99"):
            run[f"added_{pct}_ms"] = _delta(run.get(f"{pct}_ms"), base.get(f"{pct}_ms"))
        for what in ("ttfb", "total"):
            for pct in ("p50", "p99"):
                key = f"{what}_{pct}_ms"
                run[f"added_{key}"] = _delta(run.get(key), base.get(key))
        kind = "single" if run["kind"] == "fallback" else run["kind"]
        floor = index.get((f"floor.{kind}.c{run['connections']}", run["rep"]))
        if floor is not None and run["system"] != "floor":
            run["cpu_x_floor"] = _ratio(run.get("cpu_ms_per_req"), floor.get("cpu_ms_per_req"))


def aggregate(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Median of every figure per scenario, with error totals and a flag."""
    per_rep_ratios(runs)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        groups[run["key"]].append(run)
    out: dict[str, dict[str, Any]] = {}
    for key, rows in groups.items():
        first = rows[0]
        agg: dict[str, Any] = {
            name: first[name]
            for name in ("system", "kind", "connections", "label", "baseline")
            if name in first
        }
        agg["reps"] = len(rows)
        for name in (*METRICS, *RATIOS):
            agg[name] = _median(r.get(name) for r in rows)
        agg["non_2xx"] = sum(int(r.get("non_2xx", 0)) for r in rows)
        agg["socket_errors"] = sum(int(r.get("socket_errors", 0)) for r in rows)
        agg["requests"] = sum(int(r.get("requests", 0)) for r in rows)
        agg["state_backend_errors"] = sum(int(r.get("state_backend_errors", 0)) for r in rows)
        failures = [r["failed"] for r in rows if "failed" in r]
        dead = any(r.get("alive") is False for r in rows)
        problems = []
        if agg["non_2xx"]:
            problems.append(f"{agg['non_2xx']} non-2xx")
        if agg["socket_errors"]:
            problems.append(f"{agg['socket_errors']} socket errors")
        if failures:
            problems.append(f"{len(failures)} failed runs")
        if agg["state_backend_errors"]:
            problems.append(f"{agg['state_backend_errors']} failed Redis round trips")
        if dead:
            problems.append("process died")
        agg["flag"] = "; ".join(problems)
        if failures:
            agg["failures"] = failures
        out[key] = agg
    return out


# --- targets -----------------------------------------------------------------------------


def _verdict(value: float | None, limit: float, flagged: bool, minimum: bool = False) -> str:
    if flagged:
        return "INVALID (errors)"
    if value is None:
        return "not measured"
    ok = value >= limit if minimum else value <= limit
    return "met" if ok else "MISSED"


def _fmt(value: float | None, digits: int = 2, unit: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def soak_growth(soak: dict[str, Any]) -> dict[str, float] | None:
    """Resident memory at the end of the soak against a quarter of the way in (MiB)."""
    samples = soak.get("rss_samples") or []
    if len(samples) < 4:
        return None
    quarter = samples[len(samples) // 4][1]
    end = samples[-1][1]
    peak = max(m for _, m in samples)
    return {
        "start": samples[0][1],
        "quarter": quarter,
        "end": end,
        "peak": peak,
        "growth": end - quarter,
    }


def evaluate_targets(
    results: dict[str, Any], agg: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each target of the issue with its measured value and verdict."""
    rows: list[dict[str, Any]] = []

    def row(name: str, measured: str, limit: str, verdict: str) -> None:
        rows.append({"target": name, "measured": measured, "limit": limit, "verdict": verdict})

    def get(key: str) -> dict[str, Any]:
        return agg.get(key, {})

    singles = [get(f"relaygate.single.c{c}") for c in (1, 16, 64)]
    cpus = [s.get("cpu_ms_per_req") for s in singles]
    worst = max((c for c in cpus if c is not None), default=None)
    row(
        "gateway CPU per request, single target (1 / 16 / 64 conns)",
        " / ".join(_fmt(c, 3) for c in cpus) + " ms",
        f"≤ {TARGETS['cpu_single_ms']} ms",
        _verdict(worst, TARGETS["cpu_single_ms"], any(s.get("flag") for s in singles)),
    )
    fb = get("relaygate.fallback.c16")
    row(
        "gateway CPU per request, fallback 503 → 200 (16 conns)",
        _fmt(fb.get("cpu_ms_per_req"), 3, " ms"),
        f"≤ {TARGETS['cpu_fallback_ms']} ms",
        _verdict(fb.get("cpu_ms_per_req"), TARGETS["cpu_fallback_ms"], bool(fb.get("flag"))),
    )
    slow = get("relaygate.slow.c1")
    floor_slow = get("floor.slow.c1")
    flagged = bool(slow.get("flag") or get("direct.slow.c1").get("flag"))
    row(
        "added latency p50, 1 conn, upstream 50 ms (the floor proxy's in brackets)",
        f"{_fmt(slow.get('added_p50_ms'), 3)} ms ({_fmt(floor_slow.get('added_p50_ms'), 3)} ms)",
        f"≤ +{TARGETS['added_p50_ms']} ms",
        _verdict(slow.get("added_p50_ms"), TARGETS["added_p50_ms"], flagged),
    )
    row(
        "added latency p99, 1 conn, upstream 50 ms (the floor proxy's in brackets)",
        f"{_fmt(slow.get('added_p99_ms'), 3)} ms ({_fmt(floor_slow.get('added_p99_ms'), 3)} ms)",
        f"≤ +{TARGETS['added_p99_ms']} ms",
        _verdict(slow.get("added_p99_ms"), TARGETS["added_p99_ms"], flagged),
    )
    stream = get("relaygate.stream.c1")
    floor_stream = get("floor.stream.c1")
    row(
        "added time to first streamed byte, p50 (p99; the floor proxy's p50)",
        f"{_fmt(stream.get('added_ttfb_p50_ms'), 3)} ms "
        f"({_fmt(stream.get('added_ttfb_p99_ms'), 3)} ms; "
        f"{_fmt(floor_stream.get('added_ttfb_p50_ms'), 3)} ms)",
        f"≤ +{TARGETS['added_ttfb_ms']} ms",
        _verdict(
            stream.get("added_ttfb_p50_ms"),
            TARGETS["added_ttfb_ms"],
            bool(stream.get("flag") or get("direct.stream.c1").get("flag")),
        ),
    )
    memory = results.get("memory", {}).get("relaygate", {})
    idle = memory.get("idle_warm")
    row(
        "resident memory idle (after warm-up; at start in brackets)",
        f"{_fmt(idle, 1)} MiB ({_fmt(memory.get('started'), 1)} MiB)",
        f"≤ {TARGETS['idle_rss_mib']:.0f} MiB",
        _verdict(idle, TARGETS["idle_rss_mib"], False),
    )
    soak = results.get("soak") or {}
    growth = soak_growth(soak) if soak else None
    if growth is not None:
        limit = max(4.0, growth["quarter"] * 0.05)
        errors = int(soak.get("non_2xx", 0)) + int(soak.get("socket_errors", 0))
        row(
            f"memory flat under load ({soak['seconds']:.0f} s soak, 16 conns): end minus 1/4-way",
            f"{growth['growth']:+.1f} MiB ({growth['quarter']:.1f} → {growth['end']:.1f}, "
            f"peak {growth['peak']:.1f})",
            f"≤ +{limit:.1f} MiB",
            _verdict(growth["growth"], limit, errors > 0),
        )
    one, two = get("relaygate.single.c64"), get("relaygate-2w.single.c64")
    scaling = _ratio(two.get("rps"), one.get("rps"))
    row(
        "throughput with 2 workers vs 1 (64 conns; wrk + nginx share core 1)",
        _fmt(scaling, 2, "x"),
        f"≥ {TARGETS['worker_scaling']}x",
        _verdict(
            scaling, TARGETS["worker_scaling"], bool(one.get("flag") or two.get("flag")), True
        ),
    )
    on, off = get("relaygate.single.c16"), get("relaygate-off.single.c16")
    ratio = _ratio(on.get("cpu_ms_per_req"), off.get("cpu_ms_per_req"))
    row(
        "CPU per request, telemetry on ÷ off (16 conns)",
        f"{_fmt(ratio, 2, 'x')} ({_fmt(on.get('cpu_ms_per_req'), 3)} / "
        f"{_fmt(off.get('cpu_ms_per_req'), 3)} ms)",
        f"≤ {TARGETS['telemetry_cpu_ratio']}x",
        _verdict(ratio, TARGETS["telemetry_cpu_ratio"], bool(on.get("flag") or off.get("flag"))),
    )
    tail = get("relaygate-tail.single.c16")
    if tail:
        ratio = _ratio(tail.get("cpu_ms_per_req"), off.get("cpu_ms_per_req"))
        row(
            "CPU per request, tail sampling at the production setting ÷ off (16 conns)",
            f"{_fmt(ratio, 2, 'x')} ({_fmt(tail.get('cpu_ms_per_req'), 3)} / "
            f"{_fmt(off.get('cpu_ms_per_req'), 3)} ms)",
            f"≤ {TARGETS['tail_sampling_cpu_ratio']}x",
            _verdict(
                ratio,
                TARGETS["tail_sampling_cpu_ratio"],
                bool(tail.get("flag") or off.get("flag")),
            ),
        )
    for peer, key in (("portkey", "efficiency_vs_portkey"), ("litellm", "efficiency_vs_litellm")):
        if f"{peer}.single.c16" in agg:
            rows.append(_efficiency_row(agg, peer, TARGETS[key]))
    return rows


EFFICIENCY_SCENARIOS: tuple[tuple[str, str], ...] = (
    ("single.c1", "single 1"),
    ("single.c16", "16"),
    ("single.c64", "64 conns"),
    ("fallback.c16", "fallback"),
    ("slow.c1", "50 ms upstream 1"),
    ("slow.c64", "64 conns"),
    ("stream.c1", "stream"),
)
"""The scenarios (and their labels) a peer's efficiency is compared at: every scenario of
the short-request run both systems take part in, streams included."""


def _efficiency_row(agg: dict[str, dict[str, Any]], peer: str, limit: float) -> dict[str, Any]:
    """The peer's CPU per request over relaygate's, measured in the same run, at every
    scenario of :data:`EFFICIENCY_SCENARIOS` (the performance issue's "at least 2.5x less
    CPU per request than Portkey and 25x less than LiteLLM at every scenario"; the worst
    case decides)."""
    ratios: list[float | None] = []
    flagged = False
    for key, _ in EFFICIENCY_SCENARIOS:
        mine, theirs = agg.get(f"relaygate.{key}", {}), agg.get(f"{peer}.{key}", {})
        flagged = flagged or bool(mine.get("flag") or theirs.get("flag"))
        ratios.append(_ratio(theirs.get("cpu_ms_per_req"), mine.get("cpu_ms_per_req")))
    measured = [r for r in ratios if r is not None]
    worst = min(measured) if len(measured) == len(ratios) else None
    labels = " / ".join(label for _, label in EFFICIENCY_SCENARIOS)
    return {
        "target": f"{peer}'s CPU per request ÷ relaygate's, same run ({labels})",
        "measured": " / ".join(_fmt(r, 1, "x") for r in ratios),
        "limit": f"≥ {limit:g}x",
        "verdict": _verdict(worst, limit, flagged, True),
    }


# --- rendering ---------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]], align: str) -> list[str]:
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---:" if a == "r" else "---" for a in align) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def render(results: dict[str, Any]) -> str:
    """The results as Markdown (no top-level title)."""
    agg: dict[str, dict[str, Any]] = results["aggregate"]
    machine = results.get("machine", {})
    opts = results.get("options", {})
    lines: list[str] = []
    versions = machine.get("versions", {})
    lines.append(
        f"Run {results.get('started', '?')} on {machine.get('nproc', '?')} cores "
        f"({machine.get('cpu_model', '?')}), Linux {machine.get('kernel', '?')}, "
        f"Python {machine.get('python', '?')}, {machine.get('nginx', '?')}, "
        f"{machine.get('wrk', '?')}. Load average at start "
        f"{_fmt_load(machine.get('load_average_at_start'))}, at end "
        f"{_fmt_load(results.get('load_after'))} (other work shared the machine)."
    )
    lines.append("")
    lines.append(
        f"Each wrk run lasts {opts.get('duration_s', '?'):g} s; "
        + (
            f"every figure is the median of {opts['reps']} interleaved repetitions; ratios "
            "are taken per repetition against the same repetition's baseline. "
            if opts.get("reps", 1) > 1
            else "a single repetition, so figures carry more noise than a full run's. "
        )
        + "Processes "
        + (
            "pinned: relaygate (1 worker), the floor proxy and peers on core 0; wrk, nginx, the "
            "50 ms upstream, the OTLP sinks, redis-server and the harness on core 1; relaygate "
            "with 2 workers and the 2 replicas on cores 0-1."
            if opts.get("pin")
            else "not pinned."
        )
    )
    lines.append("")
    code = machine.get("code")
    measured = (
        f"relaygate code: {code['commit']}, sources sha256 {code['sources_sha256']}. "
        if code
        else ""
    )
    lines.append(measured + "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".")
    lines.append("")
    lines.append(
        "Commands: `bash benchmarks/run.sh "
        + " ".join(_flags(opts))
        + "`; each load run is `taskset -c 1 wrk -t1 -c<conns> -d<seconds>s --latency "
        "--timeout 10s -s benchmarks/wrk_post.lua <url>`, each streaming run "
        "`benchmarks/stream_client.py` (sequential requests on one connection)."
    )
    lines.append("")
    lines.append("#### Targets (relaygate, telemetry fully on unless stated)")
    lines.append("")
    lines += _table(
        ["target", "measured", "limit", "verdict"],
        [[t["target"], t["measured"], t["limit"], t["verdict"]] for t in results["targets"]],
        "llll",
    )
    lines.append("")
    lines.append("#### Throughput, latency and CPU")
    lines.append("")
    lines.append(
        "CPU is the measured process tree's user+system time per request, "
        "xfloor its ratio to the bare aiohttp pass-through proxy at the same connection "
        "count; +p50/+p99 is the latency added to the direct call of the same upstream."
    )
    lines.append("")
    wrk_rows = [a for a in agg.values() if a.get("kind") != "stream"]
    table = []
    for a in wrk_rows:
        table.append(
            [
                a.get("label", "?"),
                str(a.get("connections", "")),
                _fmt(a.get("rps"), 0),
                _fmt(a.get("rps_x_direct"), 2, "x"),
                _fmt(a.get("p50_ms"), 2),
                _fmt(a.get("p90_ms"), 2),
                _fmt(a.get("p99_ms"), 2),
                _fmt(a.get("added_p50_ms"), 2),
                _fmt(a.get("added_p99_ms"), 2),
                _fmt(a.get("cpu_ms_per_req"), 3),
                _fmt(a.get("cpu_x_floor"), 2, "x"),
                a.get("flag") or "ok",
            ]
        )
    lines += _table(
        [
            "scenario",
            "conns",
            "req/s",
            "xdirect",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "+p50 ms",
            "+p99 ms",
            "CPU ms/req",
            "xfloor",
            "errors",
        ],
        table,
        "lrrrrrrrrrrl",
    )
    stream_rows = [a for a in agg.values() if a.get("kind") == "stream"]
    if stream_rows:
        lines.append("")
        lines.append("#### Streaming (SSE, 7 events, one connection, sequential requests)")
        lines.append("")
        table = [
            [
                a.get("label", "?"),
                _fmt(a.get("ttfb_p50_ms"), 3),
                _fmt(a.get("ttfb_p99_ms"), 3),
                _fmt(a.get("total_p50_ms"), 3),
                _fmt(a.get("total_p99_ms"), 3),
                _fmt(a.get("added_ttfb_p50_ms"), 3),
                _fmt(a.get("added_total_p50_ms"), 3),
                _fmt(a.get("cpu_ms_per_req"), 3),
                _fmt(a.get("events_per_stream"), 1),
                a.get("flag") or "ok",
            ]
            for a in stream_rows
        ]
        lines += _table(
            [
                "scenario",
                "TTFB p50 ms",
                "TTFB p99 ms",
                "total p50 ms",
                "total p99 ms",
                "+TTFB p50",
                "+total p50",
                "CPU ms/req",
                "events",
                "errors",
            ],
            table,
            "lrrrrrrrrl",
        )
    lines += _stack_section(agg)
    lines += _shared_state_section(agg)
    lines += _memory_section(results)
    lines += _integrity_section(results)
    notes = results.get("notes") or []
    failed_checks = [c for c in results.get("verification", []) if not c["ok"]]
    if notes or failed_checks:
        lines.append("")
        lines.append("#### Notes")
        lines.append("")
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _flags(opts: dict[str, Any]) -> list[str]:
    """The run.sh flags that reproduce a run with options ``opts``."""
    flags = [f"--duration {opts.get('duration_s', 8):g}", f"--reps {opts.get('reps', 3)}"]
    flags.append(f"--soak-seconds {opts.get('soak_s', 60):g}")
    if opts.get("peers"):
        flags.append("--peers")
    if opts.get("profile_s"):
        flags.append(f"--profile {opts['profile_s']:g}")
    return flags


def _fmt_load(load: Any) -> str:
    if not load:
        return "?"
    return " ".join(f"{x:.2f}" for x in load)


STACK_STEPS = (
    ("floor-aiohttp", "aiohttp's web server + the same aiohttp client (no ASGI)"),
    ("floor", "bare ASGI proxy on relaygate's server stack (uvicorn, httptools, uvloop)"),
    ("floor-starlette", "the same through Starlette routing, Request and Response"),
    ("relaygate-off", "relaygate, telemetry off (the pipeline)"),
    ("relaygate-tail", "relaygate, tail sampling at the production setting"),
    ("relaygate", "relaygate, all telemetry on, every trace exported"),
)
"""The steps from the cheapest proxy to relaygate fully instrumented, in order."""


def _stack_section(agg: dict[str, dict[str, Any]], conns: int = 16) -> list[str]:
    """Where the ratio to the floor goes: each step's CPU per request at ``conns``
    connections, over the cheapest floor, over the floor every ratio is to, and over the
    step before (medians of the same run)."""
    steps = [(name, what, agg.get(f"{name}.single.c{conns}")) for name, what in STACK_STEPS]
    if sum(1 for _, _, a in steps if a) < 2:
        return []
    base = (agg.get(f"floor-aiohttp.single.c{conns}") or {}).get("cpu_ms_per_req")
    floor = (agg.get(f"floor.single.c{conns}") or {}).get("cpu_ms_per_req")
    lines = ["", f"#### Where the CPU goes (single target, {conns} connections)", ""]
    lines.append(
        "Each step adds one layer to the one before: the server stack (aiohttp's server → "
        "uvicorn → Starlette), relaygate's pipeline, then its telemetry. CPU per request "
        "over the aiohttp-server floor, over the floor every other ratio is to, and over "
        "the step before."
    )
    lines.append("")
    table = []
    before: float | None = None
    for _name, what, a in steps:
        cpu = (a or {}).get("cpu_ms_per_req")
        table.append(
            [
                what,
                _fmt(cpu, 3),
                _fmt(_ratio(cpu, base), 2, "x"),
                _fmt(_ratio(cpu, floor), 2, "x"),
                _fmt(_ratio(cpu, before), 2, "x"),
                (a or {}).get("flag") or ("ok" if a else "not run"),
            ]
        )
        before = cpu if cpu is not None else before
    lines += _table(
        ["step", "CPU ms/req", "x aiohttp floor", "x floor", "x step before", "errors"],
        table,
        "lrrrrl",
    )
    return lines


def _shared_state_section(agg: dict[str, dict[str, Any]]) -> list[str]:
    """The many-replicas table: each setup's throughput and CPU per request at 64
    connections, relaygate's and ``redis-server``'s apart, beside the single process."""
    present = [(key, label) for key, label in SHARED_STATE_ROWS if key in agg]
    if len(present) < 2:
        return []
    single = agg.get("relaygate.single.c64", {})
    base_rps, base_cpu = single.get("rps"), single.get("cpu_ms_per_req")
    lines = ["", "#### Many workers and replicas (single target, 64 connections)", ""]
    lines.append(
        "Shared state: a gateway key with requests- and tokens-per-minute limits (never "
        "reached) and the default circuit breaker, its state in the process or in one "
        "`redis-server` the harness starts on core 1. 2 replicas are two `relaygate serve` "
        "processes, each loaded by its own wrk with 32 connections at the same time: req/s "
        "is the sum, p50/p99 the worse of the two. CPU ms/req is relaygate's process trees; "
        "Redis that of `redis-server` in the same run; total ÷ 1 process compares their sum "
        "with the single-process figure of the first row."
    )
    lines.append("")
    table = []
    for key, label in present:
        row = agg[key]
        cpu, redis = row.get("cpu_ms_per_req"), row.get("redis_cpu_ms_per_req")
        total = cpu + (redis or 0.0) if cpu is not None else None
        table.append(
            [
                label,
                _fmt(row.get("rps"), 0),
                _fmt(_ratio(row.get("rps"), base_rps), 2, "x"),
                _fmt(row.get("p50_ms"), 2),
                _fmt(row.get("p99_ms"), 2),
                _fmt(cpu, 3),
                _fmt(redis, 3),
                _fmt(total, 3),
                _fmt(_ratio(total, base_cpu), 2, "x"),
                row.get("flag") or "ok",
            ]
        )
    lines += _table(
        [
            "setup",
            "req/s",
            "x1 process",
            "p50 ms",
            "p99 ms",
            "CPU ms/req",
            "Redis CPU ms/req",
            "total ms/req",
            "total ÷ 1 process",
            "errors",
        ],
        table,
        "lrrrrrrrrl",
    )
    return lines


def _memory_section(results: dict[str, Any]) -> list[str]:
    memory = results.get("memory") or {}
    if not memory:
        return []
    phases = ["started", "idle_warm", "after_load", "after_soak"]
    idle_cpu = results.get("idle_cpu_ms_per_s") or {}
    lines = ["", "#### Resident memory (MiB, whole process tree) and idle CPU", ""]
    rows = [
        [name, *(_fmt(values.get(p), 1) for p in phases), _fmt(idle_cpu.get(name), 0)]
        for name, values in memory.items()
    ]
    lines += _table(
        ["system", "at start", "idle, warm", "after load", "after soak", "idle CPU ms/s"],
        rows,
        "lrrrrr",
    )
    soak = results.get("soak")
    if soak:
        growth = soak_growth(soak)
        lines.append("")
        lines.append(
            f"Soak: {soak['seconds']:.0f} s at 16 connections, {soak['rps']:.0f} req/s, "
            f"{_fmt(soak.get('cpu_ms_per_req'), 3)} CPU ms/req, "
            f"{soak['non_2xx']} non-2xx, {soak['socket_errors']} socket errors"
            + (
                f"; RSS {growth['start']:.1f} → {growth['end']:.1f} MiB "
                f"(peak {growth['peak']:.1f})."
                if growth
                else "."
            )
        )
    return lines


def _integrity_section(results: dict[str, Any]) -> list[str]:
    integ = results.get("telemetry_integrity")
    if not integ:
        return []
    calibrated = results.get("spans_per_request_calibrated", {})
    ratio = integ.get("span_export_ratio")
    lines = ["", "#### Telemetry actually produced (relaygate, telemetry on)", ""]
    lines.append(
        "Spans per request at low rate: "
        + ", ".join(f"{k} {v:.1f}" for k, v in calibrated.items())
        + f". Over the whole run relaygate answered {integ['requests_total']} requests, "
        f"exported {integ['spans_exported']} spans of {integ['spans_expected']:.0f} expected "
        f"({_fmt(ratio * 100 if ratio is not None else None, 1)}%) in "
        f"{integ['sink'].get('exports', '?')} OTLP requests, and wrote "
        f"{integ['log_lines']} JSON request log lines."
    )
    return lines


def render_profile(profile: dict[str, Any]) -> str:
    """The py-spy summary as Markdown."""
    lines = [
        f"py-spy {profile['rate_hz']} Hz for {profile['seconds']:g} s on relaygate (telemetry "
        f"on) under single-target load at {profile['connections']} connections: "
        f"{profile['samples']} samples of the thread holding the GIL, "
        f"{profile['rps_under_profiler']:.0f} req/s and "
        f"{_fmt(profile.get('cpu_ms_per_req_under_profiler'), 3)} CPU ms/req while sampled. "
        f"Speedscope file: `{profile['speedscope']}` (not committed; regenerate with "
        "`bash benchmarks/profile.sh`).",
        "",
        "Self time by package:",
        "",
    ]
    lines += _table(
        ["package", "share of samples"],
        [[p["package"], f"{p['share'] * 100:.1f}%"] for p in profile["packages"][:12]],
        "lr",
    )
    for kind, title in (
        ("self", "Top functions by self time"),
        ("inclusive_relaygate", "relaygate functions by inclusive time"),
        ("inclusive_libraries", "Library functions by inclusive time (below the ASGI wrappers)"),
    ):
        lines += ["", f"{title}:", ""]
        lines += _table(
            ["function", "file", "share"],
            [
                [f"`{f['function']}`", f"`{f['file']}`", f"{f['share'] * 100:.1f}%"]
                for f in profile[kind][:15]
            ],
            "llr",
        )
    return "\n".join(lines) + "\n"


def _replace_section(text: str, start: str, end: str, body: str) -> str:
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        return f"{head}{start}\n{body}{end}{tail}"
    return f"{text.rstrip()}\n\n{start}\n{body}{end}\n"


def update_profile_section(profile: dict[str, Any], readme: Path) -> None:
    """Replace the profile summary in ``readme``."""
    text = readme.read_text() if readme.exists() else ""
    readme.write_text(_replace_section(text, PROFILE_START, PROFILE_END, render_profile(profile)))


def write(results: dict[str, Any], results_dir: Path, readme: Path, update_readme: bool) -> None:
    """Aggregate, evaluate and write the results files and the README section.

    A run with peers goes to ``latest-peers.{json,md}`` and the README's peers section; any
    other run to ``latest.{json,md}`` and the README's results section.
    """
    results["aggregate"] = aggregate(results.get("runs", []))
    results["targets"] = evaluate_targets(results, results["aggregate"])
    body = render(results)
    with_peers = bool(results.get("options", {}).get("peers"))
    name = "latest-peers" if with_peers else "latest"
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{name}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    title = f"# relaygate benchmark: {name.replace('-', ' with ')} results\n\n"
    profile_md = ""
    if results.get("profile"):
        profile_md = "\n### Profile\n\n" + render_profile(results["profile"])
    (results_dir / f"{name}.md").write_text(title + body + profile_md)
    if update_readme:
        start, end = (PEERS_START, PEERS_END) if with_peers else (RESULTS_START, RESULTS_END)
        text = readme.read_text() if readme.exists() else ""
        readme.write_text(_replace_section(text, start, end, body))
        if results.get("profile"):
            update_profile_section(results["profile"], readme)
    print(body)
