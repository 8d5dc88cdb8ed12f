"""Profile relaygate under load with py-spy, and summarise where its CPU time goes.

py-spy samples the gateway process while wrk drives single-target requests at 16
connections. Only samples of the thread holding the GIL are kept (``--gil``): in a Python
process that is where the CPU goes, and it leaves out threads merely waiting (the span
exporter's thread between batches, the event loop waiting in epoll). The speedscope file is
kept for interactive viewing (https://www.speedscope.app, or ``npx speedscope``); the summary
ranks functions by *self* samples (the frame on top of the stack: where the CPU is spent),
groups self samples by package, and ranks relaygate's own functions by *inclusive* samples
(anywhere on the stack: what the time is spent for).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import loadgen
from benchmarks.procs import Service

TOP = 20
"""Functions listed in each ranking."""

LIBRARY_INCLUSIVE_CEILING = 0.8
"""Library functions on more than this share of stacks (server and framework wrappers) are
left out of the inclusive library ranking."""

_PACKAGES = (
    "relaygate",
    "opentelemetry",
    "uvicorn",
    "starlette",
    "httpx_aiohttp",
    "httpx",
    "httpcore",
    "aiohttp",
    "yarl",
    "multidict",
    "structlog",
    "prometheus_client",
    "orjson",
    "pydantic",
    "requests",
    "urllib3",
    "google",
    "asyncio",
    "concurrent",
    "threading",
    "logging",
    "json",
)


def py_spy() -> str:
    """Path of the py-spy executable (beside the running Python, else on PATH)."""
    local = Path(sys.executable).with_name("py-spy")
    if local.exists():
        return str(local)
    found = shutil.which("py-spy")
    if not found:
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
    return found


def package_of(path: str) -> str:
    """The package a source file belongs to, from its path ("other" if unknown)."""
    parts = path.replace("\\", "/").split("/")
    for name in _PACKAGES:
        if name in parts or f"{name}.py" in parts:
            return name
    if "site-packages" in parts:
        index = parts.index("site-packages")
        if index + 1 < len(parts):
            return parts[index + 1].removesuffix(".py")
    if parts and parts[-1].startswith("<"):
        return "native/other"
    return "stdlib/other"


def summarise(speedscope: dict[str, Any]) -> dict[str, Any]:
    """Shares of GIL-holding samples: self time per function and per package, and
    inclusive time per relaygate function.

    py-spy's speedscope profiles weigh each sample by its interval in seconds; the shares
    are of the summed weights, ``sampled_s`` their total.
    """
    frames = speedscope["shared"]["frames"]

    def key(index: int) -> tuple[str, str]:
        frame = frames[index]
        return frame["name"], frame.get("file", "?")

    self_fn: Counter[tuple[str, str]] = Counter()
    incl_fn: Counter[tuple[str, str]] = Counter()
    packages: Counter[str] = Counter()
    threads: dict[str, float] = {}
    total = 0.0
    count = 0
    for prof in speedscope["profiles"]:
        samples = prof["samples"]
        weights = prof.get("weights") or [1.0] * len(samples)
        thread_total = 0.0
        for stack, weight in zip(samples, weights, strict=False):
            if not stack:
                continue
            count += 1
            total += weight
            thread_total += weight
            leaf = key(stack[-1])
            self_fn[leaf] += weight
            packages[package_of(leaf[1])] += weight
            for item in {key(index) for index in stack}:  # recursion counted once
                incl_fn[item] += weight
        threads[str(prof.get("name", "?"))] = thread_total

    def share(value: float) -> float:
        return value / total if total else 0.0

    def ranked(counts: Counter[tuple[str, str]]) -> list[dict[str, Any]]:
        return [
            {"function": name, "file": short_path(path), "share": share(value)}
            for (name, path), value in counts.most_common(TOP)
        ]

    own = Counter({k: v for k, v in incl_fn.items() if package_of(k[1]) == "relaygate"})
    # Library frames below the ASGI server's wrappers (which are on nearly every stack).
    libs = Counter(
        {
            k: v
            for k, v in incl_fn.items()
            if package_of(k[1]) != "relaygate" and share(v) < LIBRARY_INCLUSIVE_CEILING
        }
    )
    return {
        "samples": count,
        "sampled_s": total,
        "threads": {name: share(value) for name, value in threads.items()},
        "self": ranked(self_fn),
        "inclusive_relaygate": ranked(own),
        "inclusive_libraries": ranked(libs),
        "packages": [
            {"package": name, "share": share(value)} for name, value in packages.most_common()
        ],
    }


def short_path(path: str) -> str:
    """A source path shortened to start at its package directory."""
    marker = "site-packages/"
    if marker in path:
        return path.split(marker, 1)[1]
    for root in ("/relaygate/", "/benchmarks/"):
        if root in path:
            return root.strip("/") + "/" + path.split(root, 1)[1]
    match = re.search(r"/lib/python3\.\d+/(.*)$", path)
    return match.group(1) if match else path


def profile(
    svc: Service,
    request: loadgen.Request,
    seconds: float,
    run_dir: Path,
    results_dir: Path,
    cores: str | None,
    connections: int = 16,
    rate: int = 200,
) -> dict[str, Any]:
    """Profile ``svc`` for ``seconds`` under wrk load; keep the speedscope file, summarise it."""
    results_dir.mkdir(parents=True, exist_ok=True)
    out = results_dir / "profile.speedscope.json"
    body_file = run_dir / "profile-body.json"
    body_file.write_bytes(request.body)
    env = dict(os.environ)
    env["RG_BODY_FILE"] = str(body_file)
    env["RG_HEADERS"] = "\n".join(f"{n}: {v}" for n, v in request.headers)
    wrk_argv = loadgen.wrk_command(request, connections, seconds + 6, 1, cores)
    spy_argv = [py_spy(), "record", "-p", str(svc.pid), "-r", str(rate), "-d", f"{seconds:g}"]
    spy_argv += ["--gil", "-f", "speedscope", "-o", str(out)]
    if cores:
        spy_argv = ["taskset", "-c", cores, *spy_argv]
    cpu_before = svc.cpu_seconds()
    with open(run_dir / "profile-wrk.out", "w") as wrk_out:
        wrk = subprocess.Popen(wrk_argv, env=env, stdout=wrk_out, stderr=subprocess.STDOUT)
        try:
            time.sleep(2)
            spy = subprocess.run(
                spy_argv, capture_output=True, text=True, timeout=seconds + 60, check=False
            )
            wrk.wait(timeout=seconds + 60)
        finally:
            if wrk.poll() is None:
                wrk.kill()
                wrk.wait()
    cpu = svc.cpu_seconds() - cpu_before
    if spy.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy failed ({spy.returncode}): {spy.stderr[-2000:]}")
    raw = loadgen.parse_wrk((run_dir / "profile-wrk.out").read_text())
    summary = summarise(json.loads(out.read_text()))
    summary.update(
        seconds=seconds,
        rate_hz=rate,
        connections=connections,
        requests=raw["requests"],
        rps_under_profiler=raw["requests"] / (raw["duration_us"] / 1e6),
        cpu_ms_per_req_under_profiler=cpu * 1000 / raw["requests"] if raw["requests"] else None,
        speedscope=str(out.relative_to(results_dir.parent))
        if out.is_relative_to(results_dir.parent)
        else str(out),
    )
    (results_dir / "profile.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
