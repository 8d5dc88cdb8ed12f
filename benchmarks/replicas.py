"""The benchmark's shared-state rows: relaygate with a Redis-backed feature, on 1 and 2
workers and as 2 replicas sharing one ``redis-server``.

Every system here serves the single-target config to a gateway key that has a
requests-per-minute and a tokens-per-minute limit (far above what the run reaches, so
nothing is refused), with the default circuit breaker on:

- ``relaygate-mem``: 1 worker, that state in the process (the same features without Redis);
- ``relaygate-redis``: 1 worker, ``state: {redis: ...}`` with its defaults: each request
  needs one round trip (count the request, read the key's counters), then a background
  write of its tokens, each shared with the other requests in flight
  (:mod:`relaygate.state.redis`); the breaker's decisions are read every
  ``circuit_sync_ms`` (500 ms);
- ``relaygate-redis-2w``: the same with 2 workers;
- ``relaygate-2r``: 2 replicas (two ``relaygate serve`` processes on two ports), one worker
  each, sharing the one ``redis-server``.

The two replicas are loaded by two wrk processes at once, one per replica, each with half
the connections (:func:`benchmarks.loadgen.run_wrk`): a round-robin proxy in front would put
its own hop in the measured latency and its CPU on the load generator's core. Throughput is
the sum of the two runs, each latency percentile the worse of the two, CPU per request the
two process trees' together.

``redis-server`` (``scripts/ensure-redis.sh`` installs it) runs without persistence on a
free loopback port beside the load generator (core 1); the CPU it spends during each row is
reported apart, per request. Every row also reads ``relaygate_state_backend_errors_total``
before and after: a row during which any round trip to Redis failed is flagged, since its
requests were served from local state.
"""

from __future__ import annotations

import shutil
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.loadgen import Request
from benchmarks.procs import Processes, Service, free_port, port_open
from benchmarks.systems import CHAT_PATH, System, chat_body

__all__ = [
    "KEY",
    "SHARED_STATE",
    "SYSTEMS",
    "Setup",
    "redis_argv",
    "shared_state_config",
    "shared_state_system",
    "start_redis",
    "state_errors",
]

KEY = "rg-bench-key"
"""The gateway key every request of these rows presents (loopback only)."""


@dataclass(frozen=True)
class Setup:
    """How one shared-state system runs."""

    workers: int
    """Worker processes per ``relaygate serve``."""
    redis: bool
    """Whether its state is in Redis (else in each process)."""
    replicas: int
    """``relaygate serve`` processes, each on its own port."""
    label: str
    """Its row's name in the report."""


SYSTEMS: dict[str, Setup] = {
    "relaygate-mem": Setup(1, False, 1, "relaygate, key limits + breaker, in-process state"),
    "relaygate-redis": Setup(1, True, 1, "relaygate, key limits + shared breaker in Redis"),
    "relaygate-redis-2w": Setup(2, True, 1, "relaygate, 2 workers, state in Redis"),
    "relaygate-2r": Setup(1, True, 2, "relaygate, 2 replicas sharing Redis"),
}
"""The shared-state systems (see the module docstring), in report order."""

SHARED_STATE = frozenset(name for name, setup in SYSTEMS.items() if setup.redis)
"""The systems whose state is in Redis."""


def redis_argv(program: str, port: int, run_dir: Path) -> list[str]:
    """``redis-server`` on 127.0.0.1:``port`` without persistence, working in ``run_dir``."""
    return [
        program,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(run_dir),
    ]


def start_redis(procs: Processes, run_dir: Path, cores: str | None) -> Service:
    """A started ``redis-server`` (stopped with the run's other processes)."""
    program = shutil.which("redis-server")
    if program is None:
        raise RuntimeError("redis-server is not installed: run `bash scripts/ensure-redis.sh`")
    port = free_port()
    service = procs.start("redis-server", redis_argv(program, port, run_dir), port, cores)
    service.wait_ready(lambda: port_open(port))
    return service


def shared_state_config(base: dict[str, Any], redis_port: int | None) -> dict[str, Any]:
    """``base`` (a generated ``relaygate serve`` config) with the gateway key and its limits,
    the default circuit breaker on, and state in Redis at ``redis_port`` when given."""
    import relaygate.config  # noqa: F401 - first: relaygate.security.keys alone is an import cycle
    from relaygate.security.keys import hash_key

    config = {name: value for name, value in base.items() if name != "breaker"}
    limits = {"requests_per_minute": 10**9, "tokens_per_minute": 10**12}
    config["auth"] = {"keys": [{"name": "bench", "hash": hash_key(KEY), "limits": limits}]}
    if redis_port is not None:
        config["state"] = {"redis": {"url": f"redis://127.0.0.1:{redis_port}/0"}}
    return config


def shared_state_system(name: str, ports: Sequence[int]) -> System:
    """The single-target request with the gateway key, to the replica(s) on ``ports``."""
    headers = (("x-portkey-config", "single"), ("authorization", f"Bearer {KEY}"))
    request = Request(ports[0], CHAT_PATH, headers, chat_body())
    return System(name, ports[0], {"single": request}, replicas=tuple(ports[1:]))


def state_errors(ports: Sequence[int]) -> float:
    """``relaygate_state_backend_errors_total`` summed over the processes on ``ports``."""
    total = 0.0
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        for line in text.splitlines():
            if line.startswith("relaygate_state_backend_errors_total "):
                total += float(line.rsplit(" ", 1)[1])
    return total
