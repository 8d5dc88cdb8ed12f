"""relaygate's benchmark: relaygate against a direct call, its floor and (optionally) peers.

``bash benchmarks/run.sh [flags]`` installs nginx, wrk and redis-server, then runs this
module, which:

1. starts the upstreams on loopback: nginx (fast 200 JSON, 503, SSE stream), the 50 ms
   delay server, and OTLP sinks; then the systems under test: relaygate with telemetry fully
   on (pinned to core 0), relaygate with telemetry off (core 0), relaygate with 2 workers
   (cores 0-1), the shared-state systems of :mod:`benchmarks.replicas` with their
   ``redis-server`` (1 worker on core 0, 2 workers and 2 replicas on cores 0-1, Redis on
   core 1), the bare pass-through floor proxy and the two floors of
   :mod:`benchmarks.stack_floors` (aiohttp's server, Starlette routing; core 0) and, with
   ``--peers``, Portkey and LiteLLM (core 0). Load generator and upstreams run on core 1.
2. checks that every system answers every kind of request correctly, calibrates how many
   spans each kind of request exports, warms everything up and reads idle memory;
3. runs every scenario ``--reps`` times, interleaved (direct baseline next to the gateway
   rows it is compared with), each a bounded wrk run (``-d``) or a bounded count of streamed
   requests, recording req/s, latency percentiles, non-2xx and socket errors, the measured
   process tree's CPU time per request and its resident memory;
4. soaks relaygate under load while sampling its memory, checks that the spans and log lines
   it produced match the requests it served, and optionally profiles it with py-spy;
5. writes ``benchmarks/results/latest.{json,md}`` and the results section of
   ``benchmarks/README.md``.

Every process it starts is stopped on the way out (and ``run.sh`` stops any left over).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks import loadgen, peers, profiling, replicas, report
from benchmarks.procs import (
    Measured,
    Processes,
    Service,
    ServiceGroup,
    free_port,
    http_ok,
    port_open,
    python_env,
)
from benchmarks.systems import (
    PRODUCTION_TRACES,
    Kind,
    System,
    Upstreams,
    direct_system,
    floor_system,
    relaygate_server_config,
    relaygate_system,
    write_json,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SLOW_C1_DURATION_FACTOR = 2.5
"""How much longer than other runs the 50 ms upstream runs at 1 connection last."""
RELAYGATES = ("relaygate", "relaygate-off", "relaygate-2w", "relaygate-tail", *replicas.SYSTEMS)
"""The relaygate systems under test."""
SSE_EVENTS = 7
FLOORS = ("floor", "floor-aiohttp", "floor-starlette")
"""The floor proxies: relaygate's server stack bare (the floor every ratio is to), aiohttp's
server, and Starlette routing on relaygate's stack (:mod:`benchmarks.stack_floors`)."""
STACK_CONNECTIONS = 16
"""The connection count at which every step from the floors to relaygate is measured."""


def floor_args(name: str, port: int) -> list[str]:
    """The Python arguments that serve floor proxy ``name`` on ``port``."""
    if name == "floor-aiohttp":
        return ["-m", "benchmarks.stack_floors", "--port", str(port)]
    app = "benchmarks.stack_floors:starlette_app" if name == "floor-starlette" else None
    argv = ["-m", "uvicorn", app or "benchmarks.floor_proxy:app"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop"]
    argv += ["--http", "httptools", "--log-level", "warning", "--no-access-log"]
    return [*argv, "--lifespan", "off"]


"""Events in the upstream's SSE answer: six chunks, then ``data: [DONE]``."""


@dataclass(frozen=True)
class Options:
    """What to run and for how long."""

    duration_s: float
    reps: int
    soak_s: float
    stream_count: int
    warmup_s: float
    peers: bool
    profile_s: float
    profile_only: bool
    run_dir: Path
    results_dir: Path
    update_readme: bool
    keep_run_dir: bool
    run_dir_given: bool
    pin: bool


@dataclass(frozen=True)
class Scenario:
    """One measured configuration: a system, a request kind, a connection count."""

    key: str
    system: str
    kind: Kind
    connections: int
    measured: str | None
    baseline: str | None
    label: str
    duration_factor: float = 1.0

    @property
    def streaming(self) -> bool:
        """Whether this scenario is timed by the stream client rather than wrk."""
        return self.kind == "stream"


def scenarios(with_peers: bool) -> list[Scenario]:
    """Every scenario, in the interleaved order of one repetition."""
    out: list[Scenario] = []
    peer_names = ("portkey", "litellm") if with_peers else ()

    def add(system: str, kind: Kind, conns: int, measured: str | None, label: str) -> None:
        base_kind = "single" if kind == "fallback" else kind
        key = f"{system}.{kind}.c{conns}"
        baseline = None if system == "direct" else f"direct.{base_kind}.c{conns}"
        # At 1 connection a 50 ms upstream answers ~20 times a second: run longer, so the
        # p99 of the added latency rests on a few hundred requests per repetition.
        factor = SLOW_C1_DURATION_FACTOR if (kind, conns) == ("slow", 1) else 1.0
        out.append(Scenario(key, system, kind, conns, measured, baseline, label, factor))

    for conns in (1, 16, 64):
        add("direct", "single", conns, None, "direct to nginx (fast 200)")
        add("relaygate", "single", conns, "relaygate", "relaygate, single target")
        add("floor", "single", conns, "floor", "floor: bare aiohttp pass-through proxy")
        if conns == STACK_CONNECTIONS:
            add("floor-aiohttp", "single", conns, "floor-aiohttp", "floor on aiohttp's server")
            label = "floor through Starlette routing"
            add("floor-starlette", "single", conns, "floor-starlette", label)
        add("relaygate-off", "single", conns, "relaygate-off", "relaygate, telemetry off")
        label = "relaygate, tail sampling (production setting)"
        add("relaygate-tail", "single", conns, "relaygate-tail", label)
        if conns == 16:
            add("relaygate", "fallback", conns, "relaygate", "relaygate, fallback 503 → 200")
        if conns == 64:
            add("relaygate-2w", "single", conns, "relaygate-2w", "relaygate, 2 workers")
            for name, setup in replicas.SYSTEMS.items():
                add(name, "single", conns, name, setup.label)
        for peer in peer_names:
            add(peer, "single", conns, peer, f"{peer}, single target")
            if conns == 16:
                add(peer, "fallback", conns, peer, f"{peer}, fallback 503 → 200")
    for conns in (1, 64):
        add("direct", "slow", conns, None, "direct to the 50 ms upstream")
        add("relaygate", "slow", conns, "relaygate", "relaygate, 50 ms upstream")
        add("floor", "slow", conns, "floor", "floor, 50 ms upstream")
        for peer in peer_names:
            add(peer, "slow", conns, peer, f"{peer}, 50 ms upstream")
    add("direct", "stream", 1, None, "direct SSE stream")
    add("relaygate", "stream", 1, "relaygate", "relaygate, SSE stream")
    add("floor", "stream", 1, "floor", "floor, SSE stream")
    for peer in peer_names:
        add(peer, "stream", 1, peer, f"{peer}, SSE stream")
    return out


class Bench:
    """One benchmark run: its processes, systems and collected results."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.procs = Processes(opts.run_dir)
        self.services: dict[str, Service] = {}
        self.groups: dict[str, ServiceGroup] = {}
        """Systems of several processes (replicas), measured together."""
        self.redis: Service | None = None
        self.systems: dict[str, System] = {}
        self.sinks: dict[str, Service] = {}
        self.results: dict[str, Any] = {"options": _jsonable(asdict(opts)), "notes": []}
        self.gw_cores = "0" if opts.pin else None
        self.side_cores = "1" if opts.pin else None
        self.upstreams: Upstreams | None = None

    # --- processes -----------------------------------------------------------------------

    def _python(self, name: str, args: list[str], port: int, cores: str | None) -> Service:
        env = python_env(REPO)
        return self.procs.start(name, [sys.executable, *args], port, cores, env, cwd=REPO)

    def start_upstreams(self) -> Upstreams:
        """nginx (fast, 503, SSE) and the 50 ms delay server, ready to answer."""
        run_dir = self.opts.run_dir
        nginx_port, slow_port = free_port(), free_port()
        conf = run_dir / "nginx.conf"
        template = (HERE / "nginx.conf.template").read_text()
        conf.write_text(
            template.replace("@RUN_DIR@", str(run_dir))
            .replace("@PORT@", str(nginx_port))
            .replace("@SSE_BODY@", sse_body_nginx())
        )
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        argv = [nginx, "-c", str(conf), "-p", f"{run_dir}/", "-e", str(run_dir / "nginx-error.log")]
        svc = self.procs.start("nginx", argv, nginx_port, self.side_cores)
        svc.wait_ready(lambda: port_open(nginx_port))
        self.services["nginx"] = svc
        slow = self._python(
            "slow-upstream",
            ["-m", "benchmarks.delay_upstream", "--port", str(slow_port), "--delay-ms", "50"],
            slow_port,
            self.side_cores,
        )
        slow.wait_ready(lambda: port_open(slow_port))
        self.services["slow-upstream"] = slow
        self.upstreams = Upstreams(nginx_port, slow_port)
        self.systems["direct"] = direct_system(self.upstreams)
        return self.upstreams

    def start_sink(self, name: str) -> Service:
        """An OTLP/HTTP sink that counts and discards spans."""
        port = free_port()
        sink = self._python(
            name, ["-m", "benchmarks.otlp_sink", "--port", str(port)], port, self.side_cores
        )
        sink.wait_ready(lambda: port_open(port))
        self.sinks[name] = sink
        return sink

    def start_relaygate(
        self,
        name: str,
        telemetry: bool,
        workers: int = 1,
        cores: str | None = None,
        traces: dict[str, Any] | None = None,
    ) -> Service:
        """``relaygate serve`` on a generated config; ready when ``/health`` answers."""
        assert self.upstreams is not None
        port = free_port()
        sink = self.start_sink(f"{name}-otlp-sink") if telemetry else None
        config = relaygate_server_config(
            self.upstreams, port, telemetry, sink.port if sink else None, traces
        )
        svc = self._serve(name, config, port, workers, cores)
        self.services[name] = svc
        self.systems[name] = relaygate_system(name, port)
        return svc

    def _serve(
        self, name: str, config: dict[str, Any], port: int, workers: int, cores: str | None
    ) -> Service:
        """``relaygate serve`` on ``config``; ready when ``/health`` answers."""
        path = write_json(self.opts.run_dir / f"{name}.json", config)
        argv = ["-m", "relaygate.cli", "serve", "--config", str(path), "--workers", str(workers)]
        svc = self._python(name, argv, port, cores)
        svc.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/health"))
        return svc

    def start_shared_state(self) -> None:
        """``redis-server`` and the shared-state systems (:mod:`benchmarks.replicas`): one
        OTLP sink per system; a single process on core 0, more than one on cores 0-1."""
        assert self.upstreams is not None
        redis = replicas.start_redis(self.procs, self.opts.run_dir, self.side_cores)
        self.redis = redis
        both = "0,1" if self.opts.pin else None
        for name, setup in replicas.SYSTEMS.items():
            sink = self.start_sink(f"{name}-otlp-sink")
            single = setup.workers == 1 and setup.replicas == 1
            members = []
            for index in range(setup.replicas):
                port = free_port()
                base = relaygate_server_config(self.upstreams, port, True, sink.port)
                config = replicas.shared_state_config(base, redis.port if setup.redis else None)
                member = name if setup.replicas == 1 else f"{name}-{index + 1}"
                cores = self.gw_cores if single else both
                members.append(self._serve(member, config, port, setup.workers, cores))
            if setup.replicas == 1:
                self.services[name] = members[0]
            else:
                self.groups[name] = ServiceGroup(name, members)
            self.systems[name] = replicas.shared_state_system(name, [m.port for m in members])

    def measured(self, name: str) -> Measured | None:
        """The process tree (or group of them) measured for system ``name``."""
        return self.groups.get(name) or self.services.get(name)

    def under_test(self) -> dict[str, Measured]:
        """Every system under test that runs processes, with what is measured for it."""
        found = {name: self.measured(name) for name in self.systems}
        return {name: svc for name, svc in found.items() if svc is not None}

    def start_floor(self, name: str = "floor") -> Service:
        """A floor proxy (:data:`FLOORS`): the bare pass-through under uvicorn (uvloop,
        httptools), or one of :mod:`benchmarks.stack_floors`."""
        assert self.upstreams is not None
        port = free_port()
        env = python_env(REPO)
        env["FLOOR_UPSTREAM"] = self.upstreams.base("fast") + "/chat/completions"
        env["FLOOR_SLOW_UPSTREAM"] = self.upstreams.base("slow") + "/chat/completions"
        env["FLOOR_STREAM_UPSTREAM"] = self.upstreams.base("sse") + "/chat/completions"
        argv = [sys.executable, *floor_args(name, port)]
        svc = self.procs.start(name, argv, port, self.gw_cores, env, cwd=REPO)
        svc.wait_ready(lambda: port_open(port))
        self.services[name] = svc
        self.systems[name] = floor_system(port, name)
        return svc

    def start_all(self) -> None:
        """Upstreams, sinks and every system under test."""
        self.start_upstreams()
        self.start_relaygate("relaygate", telemetry=True, cores=self.gw_cores)
        self.start_relaygate("relaygate-off", telemetry=False, cores=self.gw_cores)
        self.start_relaygate(
            "relaygate-tail", telemetry=True, cores=self.gw_cores, traces=PRODUCTION_TRACES
        )
        both = "0,1" if self.opts.pin else None
        self.start_relaygate("relaygate-2w", telemetry=True, workers=2, cores=both)
        self.start_shared_state()
        for name in FLOORS:
            self.start_floor(name)
        if self.opts.peers:
            assert self.upstreams is not None
            for peer in peers.start_peers(self.procs, self.upstreams, self.gw_cores, self.notes):
                self.services[peer.name] = peer.service
                self.systems[peer.name] = peer.system

    def notes(self, text: str) -> None:
        """Record a remark for the report (and show it)."""
        print(f"[bench] {text}", flush=True)
        self.results["notes"].append(text)

    # --- checks --------------------------------------------------------------------------

    def verify(self) -> None:
        """One request of every kind to every system: status, body and route must be right."""
        checks: list[dict[str, Any]] = []
        for name, system in self.systems.items():
            sent = [(kind, each) for kind in system.requests for each in system.spread(kind)]
            for kind, request in sent:
                status, headers, body = post(request)
                ok = 200 <= status < 300
                if kind == "stream" and name in ("direct", "floor", *RELAYGATES):
                    # relaygate passes the upstream's events through untouched.
                    ok = ok and body.count(b"data:") == SSE_EVENTS and b"[DONE]" in body
                elif kind == "stream":
                    # Peers may re-chunk a stream; it must still be one and end properly.
                    ok = ok and b"data:" in body and b"[DONE]" in body
                else:
                    ok = ok and b'"chat.completion"' in body
                route = headers.get("x-relaygate-route", "")
                if kind == "fallback" and name.startswith("relaygate"):
                    ok = ok and "503" in route and route.endswith("200")
                checks.append(
                    {"system": name, "kind": kind, "status": status, "ok": ok, "route": route}
                )
                if not ok:
                    self.notes(
                        f"verification failed: {name} {kind}: status {status}, body {body[:200]!r}"
                    )
        self.results["verification"] = checks

    def calibrate_spans(self) -> None:
        """Spans exported per request of each kind, measured at low rate (nothing dropped)."""
        sink = self.sinks["relaygate-otlp-sink"]
        system = self.systems["relaygate"]
        per_kind: dict[str, float] = {}
        count = 20
        # Spans of the verification requests may still be queued for export: let them land.
        wait_sink_settled(sink, sink_stats(sink)["spans"], first_change_s=7.0, quiet_s=5.5)
        for kind, request in system.requests.items():
            before = sink_stats(sink)["spans"]
            for _ in range(count):
                post(request)
            # Quiet for longer than the span processor's 5 s export period, so spans split
            # across two exports are all counted.
            after = wait_sink_settled(sink, before, quiet_s=5.5)
            per_kind[kind] = (after - before) / count
        self.results["spans_per_request_calibrated"] = per_kind

    def warm_up(self) -> None:
        """Short unrecorded load on every system and kind (JIT-free Python still has caches,
        pools and lazily created clients)."""
        seconds = self.opts.warmup_s
        for name, system in self.systems.items():
            if name == "direct":
                continue
            svc = self.measured(name)
            for kind, request in system.requests.items():
                if kind == "stream":
                    loadgen.run_stream(request, 50, svc)
                else:
                    conns = 1 if kind == "slow" else 16
                    loadgen.run_wrk(
                        system.spread(kind),
                        conns,
                        seconds,
                        svc,
                        self.opts.run_dir,
                        cores=self.side_cores,
                    )

    # --- measurement ---------------------------------------------------------------------

    def measure(self, scenario: Scenario) -> dict[str, Any]:
        """One run of ``scenario``; for a system whose state is in Redis, also the CPU
        ``redis-server`` spent per request and the round trips to it that failed."""
        system = self.systems[scenario.system]
        request = system.request(scenario.kind)
        measured = self.measured(scenario.measured) if scenario.measured else None
        if scenario.streaming:
            return loadgen.run_stream(request, self.opts.stream_count, measured)
        redis = self.redis if scenario.system in replicas.SHARED_STATE else None
        ports = [each.port for each in system.spread(scenario.kind)]
        redis_before = redis.cpu_seconds() if redis else 0.0
        errors_before = replicas.state_errors(ports) if redis else 0.0
        row = loadgen.run_wrk(
            system.spread(scenario.kind),
            scenario.connections,
            self.opts.duration_s * scenario.duration_factor,
            measured,
            self.opts.run_dir,
            cores=self.side_cores,
        )
        if redis is not None:
            served = row["requests"]
            spent = redis.cpu_seconds() - redis_before
            row["redis_cpu_ms_per_req"] = spent * 1000 / served if served else None
            row["state_backend_errors"] = int(replicas.state_errors(ports) - errors_before)
        return row

    def run_scenarios(self) -> None:
        """Every scenario, ``reps`` times, interleaved."""
        plan = [s for s in scenarios(self.opts.peers) if s.system in self.systems]
        rows: list[dict[str, Any]] = []
        total = len(plan) * self.opts.reps
        done = 0
        for rep in range(1, self.opts.reps + 1):
            for scenario in plan:
                done += 1
                try:
                    row = self.measure(scenario)
                except Exception as exc:  # a broken run is reported, not hidden
                    row = {"failed": f"{type(exc).__name__}: {exc}"[:500]}
                row.update(
                    key=scenario.key,
                    rep=rep,
                    system=scenario.system,
                    kind=scenario.kind,
                    connections=scenario.connections,
                    label=scenario.label,
                    baseline=scenario.baseline,
                )
                rows.append(row)
                print(f"[bench] {done}/{total} {report.progress_line(row)}", flush=True)
                time.sleep(0.5)
        self.results["runs"] = rows

    def memory(self, phase: str) -> None:
        """Resident memory of every system under test now, under ``memory.<phase>``."""
        mem = self.results.setdefault("memory", {})
        for name, svc in self.under_test().items():
            mem.setdefault(name, {})[phase] = svc.rss_bytes() / 2**20
        if self.redis is not None:
            mem.setdefault("redis-server", {})[phase] = self.redis.rss_bytes() / 2**20

    def idle_cpu(self, seconds: float = 10.0) -> None:
        """CPU each system under test uses per second with no requests (timers, threads)."""
        services = self.under_test()
        before = {n: svc.cpu_seconds() for n, svc in services.items()}
        started = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - started
        self.results["idle_cpu_ms_per_s"] = {
            n: (svc.cpu_seconds() - before[n]) * 1000 / elapsed for n, svc in services.items()
        }

    def soak(self) -> None:
        """Sustained single-target load on relaygate while its memory is sampled."""
        seconds = self.opts.soak_s
        if seconds <= 0:
            return
        svc = self.services["relaygate"]
        request = self.systems["relaygate"].request("single")
        samples: list[tuple[float, float]] = []
        body_file = self.opts.run_dir / "soak-body.json"
        body_file.write_bytes(request.body)
        env = dict(os.environ)
        env["RG_BODY_FILE"] = str(body_file)
        env["RG_HEADERS"] = "\n".join(f"{n}: {v}" for n, v in request.headers)
        argv = loadgen.wrk_command(request, 16, seconds, 1, self.side_cores)
        cpu_before = svc.cpu_seconds()
        started = time.monotonic()
        with open(self.opts.run_dir / "soak-wrk.out", "w") as out:
            wrk = subprocess.Popen(argv, env=env, stdout=out, stderr=out)
            try:
                while wrk.poll() is None:
                    samples.append((time.monotonic() - started, svc.rss_bytes() / 2**20))
                    time.sleep(min(2.0, max(seconds / 60, 0.5)))
                wrk.wait(timeout=seconds + 60)
            finally:
                if wrk.poll() is None:
                    wrk.kill()
                    wrk.wait()
        raw = loadgen.parse_wrk((self.opts.run_dir / "soak-wrk.out").read_text())
        cpu = svc.cpu_seconds() - cpu_before
        requests = int(raw["requests"])
        self.results["soak"] = {
            "seconds": seconds,
            "connections": 16,
            "requests": requests,
            "rps": requests / (raw["duration_us"] / 1e6),
            "non_2xx": raw["non_2xx"],
            "socket_errors": sum(
                int(raw[k])
                for k in ("errors_connect", "errors_read", "errors_write", "errors_timeout")
            ),
            "cpu_ms_per_req": cpu * 1000 / requests if requests else None,
            "rss_samples": [(round(t, 1), round(m, 2)) for t, m in samples],
        }

    def telemetry_integrity(self) -> None:
        """Compare what relaygate served with the spans and log lines it produced."""
        svc = self.services["relaygate"]
        served = requests_by_config(svc.port)
        sink = self.sinks["relaygate-otlp-sink"]
        before = sink_stats(sink)["spans"]
        self.procs.stop(svc)  # graceful: flushes the span processor
        exported = wait_sink_settled(sink, before, first_change_s=8.0)
        log_lines = sum(
            1 for line in svc.log.read_text(errors="replace").splitlines() if '"request"' in line
        )
        calibrated = self.results.get("spans_per_request_calibrated", {})
        expected = sum(n * calibrated.get(kind, 0.0) for kind, n in served.items())
        self.results["telemetry_integrity"] = {
            "requests_served": served,
            "requests_total": sum(served.values()),
            "spans_exported": exported,
            "spans_expected": expected,
            "span_export_ratio": exported / expected if expected else None,
            "log_lines": log_lines,
            "sink": sink_stats(sink),
        }

    def run(self) -> None:
        """The whole benchmark (or only the profile, with ``--profile-only``)."""
        self.results["machine"] = report.machine_info()
        self.results["started"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        if self.opts.profile_only:
            self.start_upstreams()
            self.start_relaygate("relaygate", telemetry=True, cores=self.gw_cores)
            self.warm_up()
            self.profile()
            return
        self.start_all()
        self.memory("started")
        self.verify()
        self.calibrate_spans()
        self.warm_up()
        time.sleep(2)
        self.memory("idle_warm")
        self.idle_cpu()
        self.run_scenarios()
        self.memory("after_load")
        self.soak()
        self.memory("after_soak")
        if self.opts.profile_s > 0:
            self.profile()
        self.telemetry_integrity()
        self.results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        self.results["load_after"] = os.getloadavg()

    def profile(self) -> None:
        """py-spy on relaygate under single-target load; summary into the results."""
        svc = self.services["relaygate"]
        request = self.systems["relaygate"].request("single")
        self.results["profile"] = profiling.profile(
            svc,
            request,
            self.opts.profile_s,
            self.opts.run_dir,
            self.opts.results_dir,
            self.side_cores,
        )


# --- helpers -----------------------------------------------------------------------------


def sse_body() -> str:
    """The upstream's SSE answer: six ``chat.completion.chunk`` events, then ``[DONE]``."""
    words = ["Hello", " from", " the", " benchmark", " upstream", "."]
    events = []
    for index, word in enumerate(words):
        delta: dict[str, Any] = {"content": word}
        if index == 0:
            delta["role"] = "assistant"
        finish = "stop" if index == len(words) - 1 else None
        chunk = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        events.append("data: " + json.dumps(chunk, separators=(",", ":")) + "\n\n")
    events.append("data: [DONE]\n\n")
    return "".join(events)


def sse_body_nginx() -> str:
    """:func:`sse_body` escaped for a double-quoted nginx string."""
    return sse_body().replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def post(request: loadgen.Request, timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    """One POST; returns status, lower-case headers and body (errors included)."""
    req = urllib.request.Request(request.url, data=request.body, method="POST")
    req.add_header("content-type", "application/json")
    for name, value in request.headers:
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            headers = {k.lower(): v for k, v in resp.headers.items()}
            return int(resp.status), headers, resp.read()
    except urllib.error.HTTPError as err:
        headers = {k.lower(): v for k, v in err.headers.items()}
        return int(err.code), headers, err.read()
    except (urllib.error.URLError, OSError) as err:
        return 0, {}, str(err).encode()


def sink_stats(sink: Service) -> dict[str, int]:
    """The OTLP sink's running totals."""
    with urllib.request.urlopen(f"http://127.0.0.1:{sink.port}/stats", timeout=10) as resp:
        stats: dict[str, int] = json.loads(resp.read())
        return stats


def wait_sink_settled(
    sink: Service, before: int, first_change_s: float = 12.0, quiet_s: float = 1.5
) -> int:
    """Wait for spans to arrive after ``before`` and then stop arriving; the final count."""
    deadline = time.monotonic() + first_change_s
    count = sink_stats(sink)["spans"]
    while count == before and time.monotonic() < deadline:
        time.sleep(0.2)
        count = sink_stats(sink)["spans"]
    last_change = time.monotonic()
    hard_stop = last_change + 30
    while time.monotonic() - last_change < quiet_s and time.monotonic() < hard_stop:
        time.sleep(0.2)
        now = sink_stats(sink)["spans"]
        if now != count:
            count, last_change = now, time.monotonic()
    return count


def requests_by_config(port: int) -> dict[str, int]:
    """relaygate's own count of answered requests, by config id (from ``/metrics``)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    served: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("relaygate_requests_total{"):
            labels, _, value = line.rpartition(" ")
            config = labels.split('config="', 1)[1].split('"', 1)[0]
            served[config] = served.get(config, 0) + int(float(value))
    return served


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def _on_signal(signum: int, _: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def parse_args(argv: list[str] | None = None) -> Options:
    """Command-line flags (see ``benchmarks/README.md``)."""
    parser = argparse.ArgumentParser(prog="benchmarks/run.sh", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s runs, 1 repetition, 10 s soak")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 8)")
    parser.add_argument("--reps", type=int, help="repetitions of every scenario (default 3)")
    parser.add_argument("--soak-seconds", type=float, help="memory soak (default 60; 600 = 10 min)")
    parser.add_argument("--stream-count", type=int, help="streamed requests per run (default 500)")
    parser.add_argument("--peers", action="store_true", help="also measure Portkey and LiteLLM")
    parser.add_argument(
        "--profile", type=float, default=0.0, metavar="SECONDS", help="py-spy profile length"
    )
    parser.add_argument("--profile-only", action="store_true", help="only the py-spy profile")
    parser.add_argument("--run-dir", help="scratch directory (default: a new temp directory)")
    parser.add_argument("--results-dir", default=str(HERE / "results"))
    parser.add_argument("--no-readme", action="store_true", help="do not update README.md")
    parser.add_argument("--keep-run-dir", action="store_true", help="keep logs and configs")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    ns = parser.parse_args(argv)
    quick = ns.quick
    run_dir = Path(ns.run_dir) if ns.run_dir else Path(tempfile.mkdtemp(prefix="relaygate-bench-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    pin = not ns.no_pin and (os.cpu_count() or 1) >= 2
    profile_s = ns.profile if not ns.profile_only else (ns.profile or (10.0 if quick else 20.0))
    return Options(
        duration_s=ns.duration or (3.0 if quick else 8.0),
        reps=ns.reps or (1 if quick else 3),
        soak_s=ns.soak_seconds if ns.soak_seconds is not None else (10.0 if quick else 60.0),
        stream_count=ns.stream_count or (200 if quick else 500),
        warmup_s=1.0 if quick else 2.0,
        peers=ns.peers,
        profile_s=profile_s,
        profile_only=ns.profile_only,
        run_dir=run_dir,
        results_dir=Path(ns.results_dir),
        update_readme=not ns.no_readme,
        keep_run_dir=ns.keep_run_dir,
        run_dir_given=bool(ns.run_dir),
        pin=pin,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    opts = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    if opts.pin:
        os.sched_setaffinity(0, {1})  # the harness and what it starts run beside wrk
    bench = Bench(opts)
    failed = False
    try:
        bench.run()
    except BaseException as exc:
        failed = True
        bench.results["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        bench.procs.stop_all()
        if not opts.profile_only and "runs" in bench.results:
            opts.results_dir.mkdir(parents=True, exist_ok=True)
            report.write(bench.results, opts.results_dir, HERE / "README.md", opts.update_readme)
        if opts.profile_only and "profile" in bench.results and opts.update_readme:
            report.update_profile_section(bench.results["profile"], HERE / "README.md")
        if not failed and not opts.keep_run_dir and not opts.run_dir_given:
            with contextlib.suppress(OSError):
                shutil.rmtree(opts.run_dir)
        elif failed:
            print(f"[bench] logs and configs kept in {opts.run_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
