"""Drive load at a server and measure it: one wrk run, or one sequence of streamed requests.

Each measurement brackets the load with readings of the measured process tree's CPU time
(:func:`benchmarks.procs.tree_cpu_seconds`) and of the load generator's own CPU time,
and reads the tree's resident memory right after, so every row carries CPU milliseconds
per request for the server and for the load generator.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import stream_client
from benchmarks.procs import Measured

HERE = Path(__file__).resolve().parent
WRK_SCRIPT = HERE / "wrk_post.lua"
"""The wrk script: POST body and headers from the environment, exact results on exit."""


@dataclass(frozen=True)
class Request:
    """What a scenario sends: port and path, extra headers, JSON body."""

    port: int
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def url(self) -> str:
        """The loopback URL of the request."""
        return f"http://127.0.0.1:{self.port}{self.path}"


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk_seconds(duration_s: float) -> int:
    """``duration_s`` as wrk takes it: whole seconds, at least one (rounded up)."""
    return max(1, math.ceil(duration_s))


def wrk_command(
    request: Request, connections: int, duration_s: float, threads: int, cores: str | None
) -> list[str]:
    """The wrk command line of one run (pinned with taskset when ``cores`` is set)."""
    argv = [
        "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{wrk_seconds(duration_s)}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(WRK_SCRIPT),
        request.url,
    ]
    return ["taskset", "-c", cores, *argv] if cores else argv


def _wrk_env(request: Request, body_file: Path) -> dict[str, str]:
    body_file.write_bytes(request.body)
    env = dict(os.environ)
    env["RG_BODY_FILE"] = str(body_file)
    env["RG_HEADERS"] = "\n".join(f"{name}: {value}" for name, value in request.headers)
    return env


def parse_wrk(output: str) -> dict[str, Any]:
    """The ``RGRESULT`` JSON line of a wrk run's output, as a dict."""
    for line in output.splitlines():
        if line.startswith("RGRESULT "):
            parsed: dict[str, Any] = json.loads(line[len("RGRESULT ") :])
            return parsed
    raise RuntimeError(f"wrk printed no result line:\n{output[-2000:]}")


def run_wrk(
    request: Request | Sequence[Request],
    connections: int,
    duration_s: float,
    measured: Measured | None,
    run_dir: Path,
    threads: int = 1,
    cores: str | None = None,
) -> dict[str, Any]:
    """One bounded wrk run; returns throughput, latency percentiles, errors and CPU use.

    Given several requests (the same request to each of several replicas), one wrk per
    request runs at the same time, the connections split evenly between them: requests,
    throughput and errors are their sums, each latency percentile the worst of the runs
    (wrk's histograms cannot be merged from its output), the mean weighted by requests.
    """
    sent = [request] if isinstance(request, Request) else list(request)
    share = max(1, connections // len(sent))
    limit_s = wrk_seconds(duration_s)
    cpu_before = measured.cpu_seconds() if measured else 0.0
    lg_before = _children_cpu_seconds()
    started = time.perf_counter()
    running = []
    for index, each in enumerate(sent):
        env = _wrk_env(each, run_dir / f"wrk-body-{index}.json")
        argv = wrk_command(each, share, duration_s, threads, cores)
        running.append(
            subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        )
    outputs = []
    for proc in running:
        try:
            out, err = proc.communicate(timeout=limit_s + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        outputs.append(
            (proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))
        )
    elapsed = time.perf_counter() - started
    cpu_after = measured.cpu_seconds() if measured else 0.0
    lg_cpu = _children_cpu_seconds() - lg_before
    raws = []
    for code, out, err in outputs:
        if code != 0:
            raise RuntimeError(f"wrk failed ({code}):\n{out}\n{err}")
        raws.append(parse_wrk(out))
    requests = sum(int(raw["requests"]) for raw in raws)
    seconds = max(raw["duration_us"] for raw in raws) / 1e6

    def worst(key: str) -> float:
        return float(max(raw[key] for raw in raws)) / 1000

    errors = ("errors_connect", "errors_read", "errors_write", "errors_timeout")
    row: dict[str, Any] = {
        "requests": requests,
        "seconds": round(seconds, 3),
        "rps": sum(
            int(raw["requests"]) / (raw["duration_us"] / 1e6) for raw in raws if raw["duration_us"]
        ),
        "p50_ms": worst("p50_us"),
        "p90_ms": worst("p90_us"),
        "p99_ms": worst("p99_us"),
        "p999_ms": worst("p99.9_us"),
        "mean_ms": sum(raw["latency_mean_us"] * int(raw["requests"]) for raw in raws)
        / max(requests, 1)
        / 1000,
        "max_ms": worst("latency_max_us"),
        "non_2xx": sum(int(raw["non_2xx"]) for raw in raws),
        "socket_errors": sum(int(raw[key]) for raw in raws for key in errors),
        "loadgen_cpu_ms_per_req": lg_cpu * 1000 / requests if requests else None,
        "wall_s": round(elapsed, 2),
    }
    if len(raws) > 1:
        row["wrk_runs"] = len(raws)
    if measured is not None:
        cpu = cpu_after - cpu_before
        row["cpu_s"] = round(cpu, 3)
        row["cpu_ms_per_req"] = cpu * 1000 / requests if requests else None
        row["rss_mib"] = measured.rss_bytes() / 2**20
        row["alive"] = measured.alive()
    return row


def run_stream(request: Request, count: int, measured: Measured | None) -> dict[str, Any]:
    """``count`` sequential streamed requests on one connection: TTFB and total times."""
    cpu_before = measured.cpu_seconds() if measured else 0.0
    timings = stream_client.run(
        "127.0.0.1", request.port, request.path, request.body, dict(request.headers), count
    )
    cpu_after = measured.cpu_seconds() if measured else 0.0
    row = timings.summary()
    row["non_2xx"] = timings.errors
    row["socket_errors"] = 0
    if measured is not None:
        done = len(timings.ttfb)
        row["cpu_ms_per_req"] = (cpu_after - cpu_before) * 1000 / done if done else None
        row["rss_mib"] = measured.rss_bytes() / 2**20
        row["alive"] = measured.alive()
    return row
