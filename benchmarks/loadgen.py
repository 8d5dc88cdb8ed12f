"""Drive load at a server and measure it: one wrk run, or one sequence of streamed requests.

Each measurement brackets the load with readings of the measured process tree's CPU time
(``/proc``) and of the load generator's own CPU time, and reads the tree's resident memory
right after, so every row carries CPU milliseconds per request for the server and for the
load generator.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import stream_client
from benchmarks.procs import Service

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
    request: Request,
    connections: int,
    duration_s: float,
    measured: Service | None,
    run_dir: Path,
    threads: int = 1,
    cores: str | None = None,
) -> dict[str, Any]:
    """One bounded wrk run; returns throughput, latency percentiles, errors and CPU use."""
    env = _wrk_env(request, run_dir / "wrk-body.json")
    argv = wrk_command(request, connections, duration_s, threads, cores)
    cpu_before = measured.cpu_seconds() if measured else 0.0
    lg_before = _children_cpu_seconds()
    started = time.perf_counter()
    done = subprocess.run(
        argv,
        env=env,
        capture_output=True,
        text=True,
        timeout=wrk_seconds(duration_s) + 60,
        check=False,
    )
    elapsed = time.perf_counter() - started
    cpu_after = measured.cpu_seconds() if measured else 0.0
    lg_cpu = _children_cpu_seconds() - lg_before
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw = parse_wrk(done.stdout)
    requests = int(raw["requests"])
    seconds = raw["duration_us"] / 1e6
    socket_errors = sum(
        int(raw[key]) for key in ("errors_connect", "errors_read", "errors_write", "errors_timeout")
    )
    row: dict[str, Any] = {
        "requests": requests,
        "seconds": round(seconds, 3),
        "rps": requests / seconds if seconds else 0.0,
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "p999_ms": raw["p99.9_us"] / 1000,
        "mean_ms": raw["latency_mean_us"] / 1000,
        "max_ms": raw["latency_max_us"] / 1000,
        "non_2xx": int(raw["non_2xx"]),
        "socket_errors": socket_errors,
        "loadgen_cpu_ms_per_req": lg_cpu * 1000 / requests if requests else None,
        "wall_s": round(elapsed, 2),
    }
    if measured is not None:
        cpu = cpu_after - cpu_before
        row["cpu_s"] = round(cpu, 3)
        row["cpu_ms_per_req"] = cpu * 1000 / requests if requests else None
        row["rss_mib"] = measured.rss_bytes() / 2**20
        row["alive"] = measured.alive()
    return row


def run_stream(request: Request, count: int, measured: Service | None) -> dict[str, Any]:
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
