"""Peer gateways for ``--peers``: Portkey's gateway (Node) and LiteLLM's proxy (Python).

Both are installed from their package registries (npm, PyPI) into a scratch directory
outside the repository (``$RELAYGATE_PEERS_DIR``, default ``/tmp/relaygate-peers``), once;
later runs reuse them. Each runs as one process pinned like relaygate and is asked for the
same four kinds of request against the same upstreams (see :mod:`benchmarks.systems`).
Both run with their default telemetry (neither exports spans unless configured to), which
the report states next to their figures. A peer that cannot be installed or started is
skipped with a note; it never stops the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.procs import Processes, Service, free_port, http_ok, port_open
from benchmarks.systems import (
    System,
    Upstreams,
    litellm_config,
    litellm_system,
    portkey_system,
)

PEERS_DIR = Path(os.environ.get("RELAYGATE_PEERS_DIR", "/tmp/relaygate-peers"))
"""Scratch directory holding the peers' installs."""

PORTKEY_PACKAGE = os.environ.get("RELAYGATE_PORTKEY_PACKAGE", "@portkey-ai/gateway")
"""npm package spec of Portkey's gateway (pin a version with ``@portkey-ai/gateway@1.x``)."""

PORTKEY_NODE_SERVER = os.environ.get("RELAYGATE_PORTKEY_NODE_SERVER", "1.14.2")
"""Version ``@hono/node-server`` is pinned to under Portkey's gateway: the last one Portkey's
issue 1389 reports working, later ones handing it fetch responses whose headers are
immutable, which Portkey's header update then fails on. Its streamed answers still fail that
way (its issue 1550) unless :data:`PORTKEY_STREAM_SHIM` is preloaded."""

PORTKEY_STREAM_SHIM = Path(__file__).with_name("portkey_streams.cjs")
"""Node preload (``node -r``) giving Portkey's upstream event-stream responses mutable
headers, without which every streamed request through Portkey answers 500."""

LITELLM_PACKAGE = os.environ.get("RELAYGATE_LITELLM_PACKAGE", "litellm[proxy]")
"""pip requirement of LiteLLM's proxy."""


@dataclass
class Peer:
    """A started peer gateway."""

    name: str
    service: Service
    system: System


def _run(argv: list[str], cwd: Path | None = None, timeout: float = 900) -> None:
    done = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")


def install_portkey() -> Path:
    """Install Portkey's gateway with npm (once, and again when the package or the pin
    changes); the path of its server script."""
    home = PEERS_DIR / "portkey"
    script = home / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    stamp = home / "installed.txt"
    wanted = f"{PORTKEY_PACKAGE} @hono/node-server@{PORTKEY_NODE_SERVER}\n"
    if not script.exists() or not stamp.exists() or stamp.read_text() != wanted:
        home.mkdir(parents=True, exist_ok=True)
        manifest = {
            "name": "relaygate-peer-portkey",
            "private": True,
            "overrides": {"@hono/node-server": PORTKEY_NODE_SERVER},
        }
        (home / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
        _run(["npm", "install", "--no-audit", "--no-fund", PORTKEY_PACKAGE], cwd=home)
        stamp.write_text(wanted)
    return script


def install_litellm() -> Path:
    """Install LiteLLM's proxy into its own virtualenv (once); the path of ``litellm``."""
    venv = PEERS_DIR / "litellm-venv"
    exe = venv / "bin" / "litellm"
    if not exe.exists():
        PEERS_DIR.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "venv", str(venv)])
        _run([str(venv / "bin" / "pip"), "install", "-q", LITELLM_PACKAGE])
    return exe


def portkey_argv(script: Path, port: int) -> list[str]:
    """The command line of Portkey's gateway: Node with the stream shim preloaded."""
    return ["node", "-r", str(PORTKEY_STREAM_SHIM), str(script), f"--port={port}", "--headless"]


def start_portkey(procs: Processes, up: Upstreams, cores: str | None) -> Peer:
    """Portkey's gateway on a free port (Node, one process)."""
    script = install_portkey()
    port = free_port()
    env = dict(os.environ)
    env["NODE_ENV"] = "production"
    svc = procs.start(
        "portkey",
        portkey_argv(script, port),
        port,
        cores,
        env,
        cwd=script.parent,
    )
    svc.wait_ready(lambda: port_open(port))
    return Peer("portkey", svc, portkey_system(port, up))


def start_litellm(
    procs: Processes, up: Upstreams, cores: str | None, config_text: str | None = None
) -> Peer:
    """LiteLLM's proxy on a free port (one worker), its config generated for the upstreams
    (or ``config_text``)."""
    exe = install_litellm()
    port = free_port()
    config = procs.run_dir / "litellm.yaml"
    config.write_text(config_text if config_text is not None else litellm_config(up))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LITELLM_"))}
    env["LITELLM_LOG"] = "ERROR"
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no fetch of the price list at start
    env["DISABLE_SCHEMA_UPDATE"] = "True"
    argv = [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--num_workers", "1"]
    svc = procs.start("litellm", argv, port, cores, env, cwd=procs.run_dir)
    svc.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/health/liveliness"), 180)
    return Peer("litellm", svc, litellm_system(port))


def start_peers(
    procs: Processes,
    up: Upstreams,
    cores: str | None,
    note: Callable[[str], None],
    litellm_config_text: str | None = None,
) -> list[Peer]:
    """Every peer that installs and starts; the others are skipped with a note.
    ``litellm_config_text`` replaces LiteLLM's generated config."""
    started: list[Peer] = []
    starters: tuple[tuple[str, Callable[[], Peer]], ...] = (
        ("portkey", lambda: start_portkey(procs, up, cores)),
        ("litellm", lambda: start_litellm(procs, up, cores, litellm_config_text)),
    )
    for name, start in starters:
        try:
            started.append(start())
        except Exception as exc:  # a peer that fails is reported, not fatal
            note(f"peer {name} skipped: {type(exc).__name__}: {str(exc)[:400]}")
    return started
