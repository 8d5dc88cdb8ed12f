"""The stream scenarios: many open streams, long streams, and a mixed load, side by side.

``bash benchmarks/run.sh --streams [flags]`` (or ``python -m benchmarks.streams``) starts
:mod:`benchmarks.stream_upstream` (timed, stamped SSE chunks), an OTLP sink, relaygate with
telemetry fully on, the floor proxy and, with ``--peers``, Portkey and LiteLLM; the systems
under test are pinned to core 0, upstream, sink and the load generator
(:mod:`benchmarks.stream_load`, in this process) to core 1. Then, in one run:

1. **open streams**: for each N of ``--counts``, N concurrent streams of one chunk every
   50 ms for ``--duration`` seconds, straight to the upstream (the baseline) and through
   every system: CPU per chunk, resident memory idle / with N open / after, chunk delivery
   delay and gap percentiles at the client; a system *holds* N when every stream completes
   and its p99 delay is within 10 ms of the floor's at the same N;
2. **long streams**: ``--long-repeats`` sequential streams of ``--long-chunks`` chunks sent
   as fast as the upstream turns: time and CPU per chunk;
3. **mixed load**: ``--mix-seconds`` of 80% streamed, 10% retried (503 then 200), 5% falling
   back (503 target, then a 200 one), 5% client errors (a malformed body) at ``--mix-rate``
   requests per second, open loop: served rate, answers by kind and status, latency per kind,
   CPU per request. The direct baseline and the floor (which neither retries nor falls back)
   get the request each kind ends in: the stream, a 200, an upstream 400.

Writes ``benchmarks/results/streams[-peers].{json,md}`` and the stream section of
``benchmarks/README.md`` (``--quick`` runs write ``streams-quick.*`` and leave the README).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks import peers, report, stream_load
from benchmarks.procs import Processes, Service, free_port, http_ok, port_open, python_env
from benchmarks.stream_load import Req
from benchmarks.stream_upstream import raise_open_files_limit
from benchmarks.systems import API_KEY, CHAT_PATH, Upstreams, relaygate_server_config, write_json

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STREAMS_START = "<!-- streams:start -->"
STREAMS_END = "<!-- streams:end -->"
HOLD_MARGIN_MS = 10.0
"""How far beyond the floor's p99 chunk delay a system's may be while it holds N streams."""
OPEN_INTERVAL_MS = 50
MIX_STREAM_PATH = "/s/20/10"
"""The mixed load's streamed answer: 20 chunks, 10 ms apart."""
PEER_NAMES = ("portkey", "litellm")
MALFORMED = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"cut'


@dataclass(frozen=True)
class Options:
    """What to run and for how long."""

    counts: tuple[int, ...]
    duration_s: float
    long_chunks: int
    long_repeats: int
    mix_rate: float
    mix_s: float
    only: tuple[str, ...]
    peers: bool
    quick: bool
    pin: bool
    run_dir: Path
    results_dir: Path
    update_readme: bool
    granian: bool = False
    """Also relaygate served by granian (``relaygate-granian``): the HTTP server measured
    for streams (granian must be installed: ``pip install granian``)."""


def upstream_paths(opts: Options) -> dict[str, str]:
    """The upstream path (before ``/v1``) each request kind ends at when it succeeds."""
    chunks = int(opts.duration_s * 1000 / OPEN_INTERVAL_MS)
    return {
        "open": f"/s/{chunks}/{OPEN_INTERVAL_MS}",
        "long": f"/s/{opts.long_chunks}/0",
        "stream": MIX_STREAM_PATH,
        "retry": "/fast",
        "fallback": "/fast",
        "client_error": "/bad",
    }


def stream_chunks(path: str) -> int:
    """Chunks a ``/s/<count>/...`` path streams (0 for other paths)."""
    parts = path.split("/")
    return int(parts[2]) if len(parts) > 2 and parts[1] == "s" else 0


def gateway_configs(port: int, opts: Options) -> dict[str, Any]:
    """The Portkey-format config of each kind a gateway routes (relaygate's named configs,
    Portkey's inline header configs)."""

    def target(path: str, retry: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "provider": "openai",
            "api_key": API_KEY,
            "custom_host": f"http://127.0.0.1:{port}{path}/v1",
        }
        if retry:
            out["retry"] = {"attempts": 1, "on_status_codes": [503]}
        return out

    paths = upstream_paths(opts)
    return {
        "stream": target(paths["stream"]),
        "open": target(paths["open"]),
        "long": target(paths["long"]),
        "retry": target("/flaky", retry=True),
        "fallback": {
            "strategy": {"mode": "fallback"},
            "targets": [target("/fail"), target("/fast")],
        },
    }


def litellm_config_text(port: int, opts: Options) -> str:
    """LiteLLM's proxy config for the same kinds: one model each, retries by the model's
    client, the failing model falling back to the fast one."""
    paths = upstream_paths(opts)
    models = {
        "open": paths["open"],
        "long": paths["long"],
        "stream": paths["stream"],
        "retry": "/flaky",
        "fail": "/fail",
        "fast": "/fast",
    }
    lines = ["model_list:"]
    for name, path in models.items():
        lines += [
            f"  - model_name: bench-{name}",
            "    litellm_params:",
            "      model: openai/gpt-4o-mini",
            f"      api_base: http://127.0.0.1:{port}{path}/v1",
            f"      api_key: {API_KEY}",
            "      max_retries: 0",
            f"      num_retries: {1 if name == 'retry' else 0}",
        ]
    lines += [
        "litellm_settings:",
        "  num_retries: 0",
        "  request_timeout: 120",
        "router_settings:",
        "  num_retries: 0",
        '  fallbacks: [{"bench-fail": ["bench-fast"]}]',
        "general_settings:",
        f"  master_key: {peers_litellm_key()}",
    ]
    return "\n".join(lines) + "\n"


def peers_litellm_key() -> str:
    """The LiteLLM master key the benchmark uses (loopback only)."""
    from benchmarks.systems import LITELLM_KEY

    return LITELLM_KEY


def body(model: str, stream: bool) -> bytes:
    """A small chat request; ``user`` carries a per-request number (the flaky route's key)."""
    data: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello to the benchmark."}],
        "max_tokens": 16,
        "user": "u@U@",
    }
    if stream:
        data["stream"] = True
    return json.dumps(data, separators=(",", ":")).encode()


STREAMED = frozenset({"open", "long", "stream"})


def system_requests(system: str, port: int, opts: Options, up_port: int) -> dict[str, Req]:
    """Each kind's request to ``system`` listening on ``port``."""
    paths = upstream_paths(opts)
    out: dict[str, Req] = {}
    configs = gateway_configs(up_port, opts)
    for kind, path in paths.items():
        streamed = kind in STREAMED
        chunks = stream_chunks(path)
        if system in ("direct", "floor"):
            out[kind] = Req(
                port, path + "/v1/chat/completions", (), body("gpt-4o-mini", streamed), chunks
            )
            continue
        payload = MALFORMED if kind == "client_error" else body("gpt-4o-mini", streamed)
        config_kind = "stream" if kind == "client_error" else kind
        headers: tuple[tuple[str, str], ...]
        if system == "litellm":
            model = {"fallback": "bench-fail", "client_error": "bench-stream"}.get(
                kind, f"bench-{kind}"
            )
            if kind != "client_error":
                payload = body(model, streamed)
            headers = (("authorization", f"Bearer {peers_litellm_key()}"),)
        elif system == "portkey":
            inline = json.dumps(configs[config_kind], separators=(",", ":"))
            headers = (("x-portkey-config", inline),)
        else:
            headers = (("x-portkey-config", config_kind),)
        out[kind] = Req(port, CHAT_PATH, headers, payload, chunks)
    return out


class StreamBench:
    """One run of the stream scenarios: processes, systems, results."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.procs = Processes(opts.run_dir)
        self.services: dict[str, Service] = {}
        self.requests: dict[str, dict[str, Req]] = {}
        self.gw_cores = "0" if opts.pin else None
        self.side_cores = "1" if opts.pin else None
        self.up_port = 0
        self.results: dict[str, Any] = {
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items()},
            "notes": [],
        }

    def note(self, text: str) -> None:
        """Record a remark for the report (and show it)."""
        print(f"[streams] {text}", flush=True)
        self.results["notes"].append(text)

    def _python(self, name: str, args: list[str], port: int, cores: str | None) -> Service:
        env = python_env(REPO)
        return self.procs.start(name, [sys.executable, *args], port, cores, env, cwd=REPO)

    def start(self) -> None:
        """Upstream, sink, relaygate, the floor and (with ``--peers``) the peers."""
        opts = self.opts
        self.up_port = free_port()
        up = self._python(
            "stream-upstream",
            ["-m", "benchmarks.stream_upstream", "--port", str(self.up_port)],
            self.up_port,
            self.side_cores,
        )
        up.wait_ready(lambda: port_open(self.up_port))
        self.requests["direct"] = system_requests("direct", self.up_port, opts, self.up_port)
        sink_port = free_port()
        sink = self._python(
            "otlp-sink", ["-m", "benchmarks.otlp_sink", "--port", str(sink_port)], sink_port, None
        )
        sink.wait_ready(lambda: port_open(sink_port))
        self.sink = sink
        port = free_port()
        config = relaygate_server_config(
            None, port, True, sink_port, configs=gateway_configs(self.up_port, opts)
        )
        path = write_json(opts.run_dir / "relaygate.json", config)
        argv = ["-m", "relaygate.cli", "serve", "--config", str(path), "--workers", "1"]
        svc = self._python("relaygate", argv, port, self.gw_cores)
        svc.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/health"))
        self._add("relaygate", svc)
        if opts.granian:
            self._start_granian(config, path)
        port = free_port()
        env = python_env(REPO, FLOOR_PASS_BASE=f"http://127.0.0.1:{self.up_port}")
        argv = [sys.executable, "-m", "uvicorn", "benchmarks.floor_proxy:app"]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop"]
        argv += ["--http", "httptools", "--log-level", "warning", "--no-access-log"]
        argv += ["--lifespan", "off", "--backlog", "4096"]
        floor = self.procs.start("floor", argv, port, self.gw_cores, env, cwd=REPO)
        floor.wait_ready(lambda: port_open(port))
        self._add("floor", floor)
        if opts.peers:
            fake = Upstreams(self.up_port, self.up_port)
            text = litellm_config_text(self.up_port, opts)
            for peer in peers.start_peers(self.procs, fake, self.gw_cores, self.note, text):
                self._add(peer.name, peer.service)

    def _start_granian(self, config: dict[str, Any], path: Path) -> None:
        """relaygate's app, the same config, served by granian (one worker, one runtime
        thread, uvloop) instead of relaygate's own uvicorn protocol."""
        port = free_port()
        config = {**config, "listen": {**config.get("listen", {}), "port": port}}
        path = write_json(path.with_name("relaygate-granian.json"), config)
        env = python_env(REPO, RELAYGATE_CONFIG=str(path))
        argv = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory"]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        argv += ["--runtime-threads", "1", "--loop", "uvloop", "--no-ws"]
        argv += ["--log-level", "warning", "--backlog", "4096", "relaygate.cli:app_factory"]
        svc = self.procs.start("relaygate-granian", argv, port, self.gw_cores, env, cwd=REPO)
        svc.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/health"))
        self._add("relaygate-granian", svc)

    def _add(self, name: str, svc: Service) -> None:
        self.services[name] = svc
        self.requests[name] = system_requests(name, svc.port, self.opts, self.up_port)

    def verify(self) -> None:
        """One short request of every kind to every system; wrong answers are noted."""
        checks = []
        want = {"stream": 200, "retry": 200, "fallback": 200, "client_error": 400}
        for name, reqs in self.requests.items():
            for kind, status in want.items():
                req = reqs[kind]
                answer, _ = asyncio.run(_one(req))
                ok = answer.status == status and not answer.error
                if name != "direct" and name != "floor" and kind == "client_error":
                    ok = 400 <= answer.status < 500 and not answer.error
                checks.append({"system": name, "kind": kind, "status": answer.status, "ok": ok})
                if not ok:
                    self.note(
                        f"verification failed: {name} {kind}: status {answer.status} "
                        f"{answer.error}".rstrip()
                    )
        self.results["verification"] = checks

    # --- scenarios -------------------------------------------------------------------------

    def open_streams(self) -> None:
        """The ramp of open streams; a peer stops climbing once it no longer holds (relaygate,
        the floor and the direct baseline run at every N)."""
        rows: list[dict[str, Any]] = []
        stopped: dict[str, int] = {}
        for count in self.opts.counts:
            ramp = min(5.0, max(0.5, count / 500))
            for name in ("direct", *self.services):
                if name in stopped:
                    continue
                row = self._open_run(name, count, ramp)
                rows.append(row)
                print(f"[streams] open {count} {name}: {_brief(row)}", flush=True)
            for row in rows:
                if row["streams"] != count or row["system"] not in PEER_NAMES:
                    continue
                if not _held(row, rows) and row["system"] not in stopped:
                    stopped[row["system"]] = count
        self.results["open_streams"] = rows
        self.results["open_streams_stopped"] = stopped

    def _open_run(self, name: str, count: int, ramp: float) -> dict[str, Any]:
        svc = self.services.get(name)
        req = self.requests[name]["open"]
        readings: dict[str, float] = {}

        async def probe(mark: str) -> None:
            if svc is None:
                return
            if mark == "middle":
                readings["rss_open"] = await asyncio.to_thread(svc.rss_bytes)
            else:
                readings[mark] = await asyncio.to_thread(svc.cpu_seconds)

        idle = svc.rss_bytes() if svc else 0
        run = stream_load.open_streams(req, count, self.opts.duration_s, ramp, probe)
        try:
            row = asyncio.run(run)
        except Exception as exc:  # a broken run is reported, not hidden
            row = {"streams": count, "failed": f"{type(exc).__name__}: {exc}"[:300]}
        row.update(system=name, streams=count)
        if svc is not None and "window_end" in readings:
            cpu = readings["window_end"] - readings["window_start"]
            chunks = row.get("window_chunks", 0)
            row["cpu_us_per_chunk"] = cpu * 1e6 / chunks if chunks else None
            row["cpu_share"] = cpu / row["window_s"] if row.get("window_s") else None
            time.sleep(3.0)
            row["rss_idle_mib"] = idle / 2**20
            row["rss_open_mib"] = readings["rss_open"] / 2**20
            row["rss_after_mib"] = svc.rss_bytes() / 2**20
            row["kib_per_stream"] = (readings["rss_open"] - idle) / 1024 / count
            row["alive"] = svc.alive()
        else:
            time.sleep(1.0)
        return row

    def long_streams(self) -> None:
        """Sequential long streams through every system: time and CPU per chunk."""
        rows = []
        for name in ("direct", *self.services):
            svc = self.services.get(name)
            req = self.requests[name]["long"]
            asyncio.run(stream_load.long_streams(req, 1))  # warm the connection pools
            before = svc.cpu_seconds() if svc else 0.0
            row = asyncio.run(stream_load.long_streams(req, self.opts.long_repeats))
            if svc is not None:
                chunks = row["chunks_received"]
                cpu = svc.cpu_seconds() - before
                row["cpu_us_per_chunk"] = cpu * 1e6 / chunks if chunks else None
            row["system"] = name
            rows.append(row)
            print(f"[streams] long {name}: {_brief(row)}", flush=True)
        self.results["long_streams"] = rows

    def mixed(self) -> None:
        """The mixed load through every system at the same arrival rate."""
        rows = []
        for name in ("direct", *self.services):
            svc = self.services.get(name)
            readings: dict[str, float] = {}

            async def probe(
                mark: str, svc: Service | None = svc, out: dict[str, float] = readings
            ) -> None:
                if svc is not None:
                    out[mark] = await asyncio.to_thread(svc.cpu_seconds)

            reqs = {
                k: self.requests[name][k] for k in ("stream", "retry", "fallback", "client_error")
            }
            row = asyncio.run(stream_load.mixed(reqs, self.opts.mix_rate, self.opts.mix_s, probe))
            if svc is not None and row["requests"]:
                cpu = readings["window_end"] - readings["window_start"]
                row["cpu_ms_per_req"] = cpu * 1000 / row["requests"]
                row["alive"] = svc.alive()
            row["system"] = name
            rows.append(row)
            print(f"[streams] mixed {name}: {_brief(row)}", flush=True)
            time.sleep(2.0)
        self.results["mixed"] = rows

    def run(self) -> None:
        """Every selected scenario."""
        self.results["machine"] = report.machine_info()
        self.results["started"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        self.start()
        self.verify()
        for name, svc in self.services.items():
            self.results.setdefault("rss_started_mib", {})[name] = svc.rss_bytes() / 2**20
        if "long" in self.opts.only:
            self.long_streams()
        if "open" in self.opts.only:
            self.open_streams()
        if "mixed" in self.opts.only:
            self.mixed()
        self.results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        self.results["load_after"] = os.getloadavg()


async def _one(req: Req) -> tuple[stream_load.Answer, Any]:
    return await stream_load.one(req, None, 30.0)


def _brief(row: dict[str, Any]) -> str:
    if "failed" in row:
        return f"FAILED {row['failed']}"
    parts = []
    for key in ("delay_p50_ms", "delay_p99_ms", "cpu_us_per_chunk", "per_chunk_us"):
        if row.get(key) is not None:
            parts.append(f"{key} {row[key]:.3f}")
    if "served_rate" in row:
        parts.append(f"served {row['served_rate']:.1f}/s")
    if row.get("cpu_ms_per_req") is not None:
        parts.append(f"cpu {row['cpu_ms_per_req']:.3f} ms/req")
    if row.get("errors"):
        parts.append(f"errors {row['errors']}")
    return " ".join(parts)


def _kept_up(row: dict[str, Any]) -> bool:
    """Whether the window's chunks arrived at (at least 95% of) the rate the streams send."""
    offered = row["streams"] * 1000 / OPEN_INTERVAL_MS
    window = row.get("window_s") or 0.0
    return bool(window and row.get("window_chunks", 0) / window >= 0.95 * offered)


def _valid(row: dict[str, Any] | None) -> bool:
    """Whether a row measured work that was done: no failed run and no error answer (a
    timeout from an overloaded system still measures its CPU per chunk)."""
    if row is None or "failed" in row:
        return False
    errors = row.get("errors") or {}
    return not any(key.startswith("status") for key in errors)


def _both(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str) -> bool:
    """Whether both rows exist and carry a non-zero ``key``."""
    return bool(a and b and a.get(key) and b.get(key))


def _held(row: dict[str, Any], rows: list[dict[str, Any]]) -> bool:
    """Whether ``row``'s system held its N streams: all complete whole, no errors, the
    chunks delivered at the rate they were sent, and a p99 delay within
    :data:`HOLD_MARGIN_MS` of the floor's at the same N."""
    if "failed" in row or row.get("errors") or not row.get("alive", True):
        return False
    if row.get("chunks_received", 0) < row.get("chunks_expected", 0) or not _kept_up(row):
        return False
    floor = _find(rows, "floor", row["streams"])
    if floor is None or "failed" in floor:
        return False
    return bool(row["delay_p99_ms"] - floor["delay_p99_ms"] <= HOLD_MARGIN_MS)


def _find(rows: list[dict[str, Any]], system: str, count: int) -> dict[str, Any] | None:
    for row in rows:
        if row.get("system") == system and row.get("streams") == count:
            return row
    return None


# --- report ----------------------------------------------------------------------------------


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ratio(a: Any, b: Any) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def _errs(errors: dict[str, int] | None) -> str:
    return ", ".join(f"{k}: {v}" for k, v in (errors or {}).items()) or "ok"


def evaluate(results: dict[str, Any]) -> list[dict[str, str]]:
    """#16's goals this run measures, each with its figure and verdict."""
    goals: list[dict[str, str]] = []
    rows = results.get("open_streams", [])
    counts = sorted({r["streams"] for r in rows})
    held = [n for n in counts if (r := _find(rows, "relaygate", n)) and _held(r, rows)]
    largest = max(held) if held else None
    floor_held = [
        n
        for n in counts
        if (r := _find(rows, "floor", n))
        and "failed" not in r
        and not r.get("errors")
        and _kept_up(r)
        and (d := _find(rows, "direct", n))
        and r["delay_p99_ms"] - d["delay_p99_ms"] <= HOLD_MARGIN_MS
    ]
    goals.append(
        {
            "goal": "open streams one process holds (p99 chunk delay ≤ floor's + 10 ms), "
            "at least 2,000",
            "measured": f"{largest if largest else 'none'} of {', '.join(map(str, counts))} "
            f"(the floor itself keeps up within 10 ms of the direct p99 up to "
            f"{max(floor_held) if floor_held else 'none of them'})",
            "verdict": "MET" if largest and largest >= 2000 else "MISSED",
        }
    )
    ratios = []
    for n in counts:
        rg, fl = _find(rows, "relaygate", n), _find(rows, "floor", n)
        if rg and fl and rg.get("cpu_us_per_chunk") and fl.get("cpu_us_per_chunk"):
            ratios.append((n, rg["cpu_us_per_chunk"] / fl["cpu_us_per_chunk"]))
    long_rows = {r["system"]: r for r in results.get("long_streams", [])}
    rg_long, fl_long = long_rows.get("relaygate"), long_rows.get("floor")
    if rg_long and fl_long and rg_long.get("cpu_us_per_chunk") and fl_long.get("cpu_us_per_chunk"):
        ratios.append((-1, rg_long["cpu_us_per_chunk"] / fl_long["cpu_us_per_chunk"]))
    if ratios:
        text = ", ".join(f"{'long' if n < 0 else f'N={n}'} {r:.2f}x" for n, r in ratios)
        goals.append(
            {
                "goal": "stream CPU per chunk ≤ 1.1x the floor's, telemetry fully on",
                "measured": text,
                "verdict": "MET" if max(r for _, r in ratios) <= 1.1 else "MISSED",
            }
        )
    for peer, factor in (("portkey", 2.5), ("litellm", 25.0)):
        worst: list[tuple[str, float]] = []
        invalid: list[str] = []
        for n in counts:
            rg, pr = _find(rows, "relaygate", n), _find(rows, peer, n)
            if pr is not None and not _valid(pr):
                invalid.append(f"open N={n}")
            elif rg and pr and rg.get("cpu_us_per_chunk") and pr.get("cpu_us_per_chunk"):
                worst.append((f"open N={n}", pr["cpu_us_per_chunk"] / rg["cpu_us_per_chunk"]))
        pr_long = long_rows.get(peer)
        if pr_long is not None and not _valid(pr_long):
            invalid.append("long")
        elif _both(rg_long, pr_long, "cpu_us_per_chunk"):
            assert rg_long is not None and pr_long is not None
            worst.append(("long", pr_long["cpu_us_per_chunk"] / rg_long["cpu_us_per_chunk"]))
        mixed = {r["system"]: r for r in results.get("mixed", [])}
        rg_mix, pr_mix = mixed.get("relaygate"), mixed.get(peer)
        if pr_mix is not None and pr_mix["kinds"]["stream"]["status"].get("5xx"):
            invalid.append("mixed")
        elif rg_mix and pr_mix and rg_mix.get("cpu_ms_per_req") and pr_mix.get("cpu_ms_per_req"):
            worst.append(("mixed", pr_mix["cpu_ms_per_req"] / rg_mix["cpu_ms_per_req"]))
        if not worst and not invalid:
            continue
        text = ", ".join(f"{k} {r:.1f}x" for k, r in worst)
        if invalid:
            text += ("; " if text else "") + f"not measurable ({peer}'s streamed answers "
            text += f"failed): {', '.join(invalid)}"
        if not worst:
            verdict = "NOT MEASURED"
        else:
            verdict = "MET" if min(r for _, r in worst) >= factor else "MISSED"
        goals.append(
            {
                "goal": f"{peer}'s CPU per chunk / request over relaygate's ≥ {factor:g}x at "
                "every stream scenario",
                "measured": text,
                "verdict": verdict,
            }
        )
    return goals


def render(results: dict[str, Any]) -> str:
    """The Markdown section of one run."""
    opts = results["options"]
    machine = results["machine"]
    lines = [
        f"Run {results['started']} on {machine['nproc']} cores ({machine['cpu_model']}), "
        f"Python {machine['python']}, relaygate code {machine['code'].get('commit', '?')}. "
        f"Load average at start {' '.join(f'{x:.2f}' for x in machine['load_average_at_start'])}, "
        f"at end {' '.join(f'{x:.2f}' for x in results.get('load_after', ()))} "
        "(other work shared the machine).",
        "",
        f"Command: `bash benchmarks/run.sh --streams{' --peers' if opts['peers'] else ''}"
        f"{' --quick' if opts['quick'] else ''}` (open streams: N of "
        f"{', '.join(map(str, opts['counts']))}, {opts['duration_s']:g} s each; long streams: "
        f"{opts['long_repeats']} x {opts['long_chunks']} chunks; mixed: {opts['mix_rate']:g} "
        f"req/s for {opts['mix_s']:g} s). relaygate with telemetry fully on (every span "
        "exported over OTLP/HTTP, metrics, a JSON log line per request); peers with their "
        "default telemetry. Gateways pinned to core 0; upstream and load generator on core 1"
        f"{'' if opts['pin'] else ' (pinning off)'}.",
        "",
        "#### Goals",
        "",
    ]
    lines += report._table(
        ["goal", "measured", "verdict"],
        [[g["goal"], g["measured"], g["verdict"]] for g in results.get("goals", [])],
        "lll",
    )
    rows = results.get("open_streams", [])
    if rows:
        lines += [
            "",
            f"#### Many open streams (one chunk every {OPEN_INTERVAL_MS} ms per stream)",
            "",
            "Delay: chunk sent by the upstream → read by the client; added: minus the direct "
            "delay at the same N. CPU per chunk over the window with every stream open; "
            "memory idle before → with N open → 3 s after.",
            "",
        ]
        table = []
        for row in rows:
            n = row["streams"]
            direct = _find(rows, "direct", n) or {}
            floor = _find(rows, "floor", n) or {}
            if "failed" in row:
                table.append([str(n), row["system"], row["failed"]] + [""] * 9)
                continue
            if not row.get("delay_samples"):
                table.append([str(n), row["system"], "-", "-", "-", "-", "-", "-", "-", "-"])
                table[-1] += [_errs(row.get("errors")), "no"]
                continue
            added50 = row["delay_p50_ms"] - direct.get("delay_p50_ms", 0.0)
            added99 = row["delay_p99_ms"] - direct.get("delay_p99_ms", 0.0)
            mem = "-"
            if "rss_idle_mib" in row:
                mem = " → ".join(
                    f"{row[k]:.0f}" for k in ("rss_idle_mib", "rss_open_mib", "rss_after_mib")
                )
            system = row["system"]
            held = "-" if system in ("direct", "floor") else ("yes" if _held(row, rows) else "no")
            table.append(
                [
                    str(n),
                    system,
                    f"{row['window_chunks'] / row['window_s']:.0f}" if row.get("window_s") else "-",
                    _f(row.get("cpu_us_per_chunk"), 1),
                    _ratio(row.get("cpu_us_per_chunk"), floor.get("cpu_us_per_chunk"))
                    if system != "floor"
                    else "-",
                    f"{row['delay_p50_ms']:.2f} / {row['delay_p99_ms']:.2f}",
                    "-" if system == "direct" else f"{added50:.2f} / {added99:.2f}",
                    f"{row['gap_p99_ms']:.1f}",
                    mem,
                    _f(row.get("kib_per_stream"), 1),
                    _errs(row.get("errors")),
                    held,
                ]
            )
        lines += report._table(
            [
                "N",
                "system",
                "chunks/s",
                "CPU µs/chunk",
                "x floor",
                "delay p50 / p99 ms",
                "added p50 / p99 ms",
                "gap p99 ms",
                "RSS MiB",
                "KiB/stream",
                "errors",
                "holds",
            ],
            table,
            "rlrrrrrrrrll",
        )
        stopped = results.get("open_streams_stopped", {})
        if stopped:
            lines += [
                "",
                "Not run at larger N (did not hold a smaller one): "
                + ", ".join(f"{k} (from N={v})" for k, v in stopped.items())
                + ".",
            ]
    long_rows = results.get("long_streams", [])
    if long_rows:
        direct = next((r for r in long_rows if r["system"] == "direct"), {})
        floor = next((r for r in long_rows if r["system"] == "floor"), {})
        lines += [
            "",
            f"#### Long streams ({opts['long_chunks']} chunks as fast as the upstream sends, "
            f"{opts['long_repeats']} sequential streams, medians)",
            "",
        ]
        lines += report._table(
            [
                "system",
                "ms per stream",
                "µs per chunk",
                "added µs/chunk",
                "CPU µs/chunk",
                "x floor",
                "errors",
            ],
            [
                [r["system"], "-", "-", "-", "-", "-", _errs(r.get("errors"))]
                if not r["chunks_received"]
                else [
                    r["system"],
                    _f(r["total_p50_ms"]),
                    _f(r["per_chunk_us"], 1),
                    "-"
                    if r["system"] == "direct"
                    else _f(r["per_chunk_us"] - direct.get("per_chunk_us", 0.0), 1),
                    _f(r.get("cpu_us_per_chunk"), 1),
                    _ratio(r.get("cpu_us_per_chunk"), floor.get("cpu_us_per_chunk"))
                    if r["system"] != "floor"
                    else "-",
                    _errs(r.get("errors")),
                ]
                for r in long_rows
            ],
            "lrrrrrl",
        )
    mixed = results.get("mixed", [])
    if mixed:
        direct = next((r for r in mixed if r["system"] == "direct"), {})
        floor = next((r for r in mixed if r["system"] == "floor"), {})
        lines += [
            "",
            f"#### Mixed load ({opts['mix_rate']:g} req/s offered for {opts['mix_s']:g} s: 80% "
            "streamed (20 chunks, 10 ms apart), 10% retried, 5% falling back, 5% client errors)",
            "",
            "The direct baseline and the floor get the request each kind ends in (the stream, a "
            "200, an upstream 400); added latency is the system's p50 minus direct's, per kind.",
            "",
        ]
        table = []
        for r in mixed:
            kinds = r["kinds"]
            for kind, k in kinds.items():
                base = direct.get("kinds", {}).get(kind, {})
                table.append(
                    [
                        r["system"],
                        f"{r['served_rate']:.1f}" if kind == "stream" else "",
                        _f(r.get("cpu_ms_per_req"), 3) if kind == "stream" else "",
                        _ratio(r.get("cpu_ms_per_req"), floor.get("cpu_ms_per_req"))
                        if kind == "stream" and r["system"] != "floor"
                        else "",
                        kind,
                        f"{k['ok']}/{k['sent']}" + (f" (+{k['shed']} shed)" if k["shed"] else ""),
                        ", ".join(f"{s}: {c}" for s, c in sorted(k["status"].items())),
                        f"{k['latency_p50_ms']:.1f} / {k['latency_p99_ms']:.1f}",
                        "-"
                        if r["system"] == "direct"
                        else f"{k['latency_p50_ms'] - base.get('latency_p50_ms', 0.0):.1f}",
                        _errs({e: c for e, c in k["errors"].items() if not e.startswith("status")}),
                    ]
                )
        lines += report._table(
            [
                "system",
                "served req/s",
                "CPU ms/req",
                "x floor",
                "kind",
                "2xx/sent",
                "statuses",
                "latency p50 / p99 ms",
                "added p50 ms",
                "transport errors",
            ],
            table,
            "lrrrlrlrrl",
        )
    notes = results.get("notes", [])
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], results_dir: Path, readme: Path, update_readme: bool) -> str:
    """Evaluate, write ``streams[-peers|-quick].{json,md}`` and (unless quick) the README
    section; the Markdown."""
    results["goals"] = evaluate(results)
    body = render(results)
    opts = results["options"]
    name = "streams-quick" if opts["quick"] else ("streams-peers" if opts["peers"] else "streams")
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{name}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (results_dir / f"{name}.md").write_text(f"# relaygate stream scenarios ({name})\n\n{body}")
    if update_readme and not opts["quick"]:
        text = readme.read_text() if readme.exists() else ""
        readme.write_text(report._replace_section(text, STREAMS_START, STREAMS_END, body))
    return body


def parse_args(argv: list[str] | None = None) -> Options:
    """Command-line flags (see ``benchmarks/README.md``)."""
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.sh --streams", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="seconds-long runs, small N")
    parser.add_argument(
        "--counts", help="open-stream counts, comma-separated (default 250,500,1000,2000)"
    )
    parser.add_argument(
        "--duration", type=float, help="seconds each open stream lasts (default 30)"
    )
    parser.add_argument("--long-chunks", type=int, help="chunks per long stream (default 1000)")
    parser.add_argument("--long-repeats", type=int, help="long streams per system (default 100)")
    parser.add_argument(
        "--mix-rate", type=float, help="mixed-load arrivals per second (default 100)"
    )
    parser.add_argument("--mix-seconds", type=float, help="mixed-load length (default 60)")
    parser.add_argument("--only", help="scenarios: open,long,mixed (default all)")
    parser.add_argument("--peers", action="store_true", help="also Portkey and LiteLLM")
    parser.add_argument(
        "--granian", action="store_true", help="also relaygate served by granian (installed)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument("--run-dir", help="scratch directory (default: a new temp directory)")
    parser.add_argument("--results-dir", default=str(HERE / "results"))
    parser.add_argument("--no-readme", action="store_true", help="do not update README.md")
    parser.add_argument("--streams", action="store_true", help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.granian and importlib.util.find_spec("granian") is None:
        parser.error("--granian needs granian installed (pip install granian)")
    quick = ns.quick
    counts = ns.counts or ("20,50" if quick else "250,500,1000,2000")
    run_dir = (
        Path(ns.run_dir) if ns.run_dir else Path(tempfile.mkdtemp(prefix="relaygate-streams-"))
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    return Options(
        counts=tuple(int(c) for c in counts.split(",")),
        duration_s=ns.duration or (3.0 if quick else 30.0),
        long_chunks=ns.long_chunks or (200 if quick else 1000),
        long_repeats=ns.long_repeats or (3 if quick else 100),
        mix_rate=ns.mix_rate or (20.0 if quick else 100.0),
        mix_s=ns.mix_seconds or (3.0 if quick else 60.0),
        only=tuple((ns.only or "open,long,mixed").split(",")),
        peers=ns.peers,
        quick=quick,
        pin=not ns.no_pin and (os.cpu_count() or 1) >= 2,
        run_dir=run_dir,
        results_dir=Path(ns.results_dir),
        update_readme=not ns.no_readme,
        granian=ns.granian,
    )


def _on_signal(signum: int, _: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run the stream scenarios; the exit status."""
    opts = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    raise_open_files_limit()  # the systems started inherit it: thousands of sockets each
    if opts.pin:
        os.sched_setaffinity(0, {1})
    bench = StreamBench(opts)
    failed = False
    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover
            pass
        else:
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        bench.run()
    except BaseException as exc:
        failed = True
        bench.results["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        bench.procs.stop_all()
        if any(k in bench.results for k in ("open_streams", "long_streams", "mixed")):
            print(write(bench.results, opts.results_dir, HERE / "README.md", opts.update_readme))
        if failed:
            print(f"[streams] logs and configs kept in {opts.run_dir}", file=sys.stderr)
        else:
            with contextlib.suppress(OSError):
                shutil.rmtree(opts.run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
