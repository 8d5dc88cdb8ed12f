"""The ``relaygate`` command: ``serve``, ``validate``, ``keys``, ``demo``, ``rehearse``,
``mock-upstream``.

``relaygate serve --config FILE`` listens on 127.0.0.1:8787 by default (Portkey's port, so it
can replace a local Portkey gateway). ``relaygate validate FILE`` checks a server config or a
Portkey config and explains every error. ``relaygate keys create --name N`` makes a gateway
key and prints the hashed ``auth.keys`` entry for the server config. ``relaygate
mock-upstream`` runs the fault simulator.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from relaygate.config import ConfigError
from relaygate.config.compile import compile_file, compile_server, read_config_file
from relaygate.config.explain import explain
from relaygate.config.server import ServerConfig, load_server_config

CONFIG_ENV = "RELAYGATE_CONFIG"
"""Environment variable through which ``serve`` hands the config path to worker processes."""


def app_factory() -> Any:
    """Build the ASGI app from ``$RELAYGATE_CONFIG`` (used by uvicorn workers)."""
    from relaygate.app import create_app
    from relaygate.exporters.logging import configure_logging
    from relaygate.exporters.workers import METRICS_DIR_ENV

    path = os.environ.get(CONFIG_ENV)
    server = load_server_config(path) if path else ServerConfig()
    configure_logging(server.telemetry.logs.level, server.telemetry.logs.format)
    return create_app(
        server, metrics_dir=os.environ.get(METRICS_DIR_ENV) or None, reload_from=path or None
    )


def _serve(ns: argparse.Namespace) -> int:
    from relaygate.exporters.workers import METRICS_DIR_ENV, check_directory
    from relaygate.serving import run, uvicorn_options

    try:
        server = load_server_config(ns.config) if ns.config else ServerConfig()
        compile_server(server, _provider_names())
    except ConfigError as exc:
        print(f"relaygate: invalid config {ns.config}:\n{explain(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"relaygate: cannot read {ns.config}: {exc.strerror}", file=sys.stderr)
        return 2
    host = ns.host or server.listen.host
    port = ns.port if ns.port is not None else server.listen.port
    if ns.config:
        os.environ[CONFIG_ENV] = str(Path(ns.config).resolve())
    # Several workers share a fresh directory through which any of them answers /metrics
    # for all (relaygate.exporters.workers); it lives as long as this process.
    metrics_dir: str | None = None
    if ns.workers > 1:
        try:
            metrics_dir = tempfile.mkdtemp(prefix="relaygate-metrics-")
            check_directory(Path(metrics_dir))
        except (OSError, ValueError) as exc:
            if metrics_dir is not None:
                shutil.rmtree(metrics_dir, ignore_errors=True)
            print(f"relaygate: cannot share metrics between workers: {exc}", file=sys.stderr)
            return 2
        os.environ[METRICS_DIR_ENV] = metrics_dir
    else:
        os.environ.pop(METRICS_DIR_ENV, None)
    print(f"relaygate listening on http://{host}:{port}", file=sys.stderr, flush=True)
    # uvicorn drains on SIGTERM, then raises the signal again for the handler it found: a
    # SIGTERM that was drained is a clean stop (exit status 0), not a death by signal.
    signal.signal(signal.SIGTERM, _drained)
    try:
        run(
            "relaygate.cli:app_factory",
            host=host,
            port=port,
            workers=ns.workers,
            options=uvicorn_options(server),
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _drained(signum: int, frame: FrameType | None) -> None:
    """SIGTERM handler in force once uvicorn has drained: nothing left to do."""


def _provider_names() -> frozenset[str]:
    from relaygate.providers.registry import default_registry

    return frozenset(default_registry().names)


def _validate(ns: argparse.Namespace) -> int:
    path = Path(ns.file)
    try:
        path.read_bytes()
    except OSError as exc:
        print(f"relaygate: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        file = read_config_file(path)
        compiled = compile_file(file, _provider_names())
    except ConfigError as exc:
        print(f"{path}: invalid\n{explain(exc)}")
        return 1
    kind = "Portkey config" if file.portkey else "server config"
    print(f"{path}: valid {kind}")
    for warning in compiled.warnings:
        print(f"  warning: {warning}")
    return 0


def _keys_create(ns: argparse.Namespace) -> int:
    from relaygate.security.keys import hash_key, new_key

    key = new_key()
    entry: dict[str, Any] = {"name": ns.name, "hash": hash_key(key)}
    for field in ("configs", "providers", "models"):
        values = getattr(ns, field)
        if values is not None:
            entry[field] = [v.strip() for v in values.split(",") if v.strip()]
    if ns.no_inline_configs:
        entry["inline_configs"] = False
    if ns.no_custom_hosts:
        entry["custom_hosts"] = False
    print(f"# the key, shown once; give it to {ns.name}:")
    print(key)
    print("# add under auth.keys in the server config (only the hash is stored):")
    print(f"  - {json.dumps(entry)}")
    return 0


def _mock(ns: argparse.Namespace) -> int:
    from relaygate.mock import serve_mock, settings_from_args

    serve_mock(ns.host, ns.port, settings_from_args(ns))
    return 0


def _demo(ns: argparse.Namespace) -> int:
    from relaygate.demo import run_demo

    run_demo(ns.port)
    return 0


def parser() -> argparse.ArgumentParser:
    """The argument parser of the ``relaygate`` command."""
    from relaygate.mock import add_mock_arguments

    root = argparse.ArgumentParser(prog="relaygate", description=__doc__.split("\n")[0])
    sub = root.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", "-c", help="server config file (YAML or JSON)")
    serve.add_argument("--host", help="interface to bind (default: config, else 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: config, else 8787)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes")
    serve.set_defaults(run=_serve)

    validate = sub.add_parser("validate", help="check a server config or a Portkey config")
    validate.add_argument("file")
    validate.set_defaults(run=_validate)

    keys = sub.add_parser("keys", help="manage gateway keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser(
        "create",
        help="make a new gateway key: prints the key once and its auth.keys entry",
    )
    create.add_argument("--name", required=True, help="who holds the key (shown in logs)")
    create.add_argument("--configs", help="comma-separated named configs it may use")
    create.add_argument("--providers", help="comma-separated providers it may reach")
    create.add_argument("--models", help="comma-separated models it may use")
    create.add_argument(
        "--no-inline-configs",
        action="store_true",
        help="refuse its JSON configs in x-portkey-config and x-portkey-provider calls",
    )
    create.add_argument(
        "--no-custom-hosts", action="store_true", help="refuse base URLs it chooses"
    )
    create.set_defaults(run=_keys_create)

    demo = sub.add_parser("demo", help="run the gateway on the bundled fallback demo")
    demo.add_argument("--port", type=int, default=8787)
    demo.set_defaults(run=_demo)

    from relaygate.rehearse import add_rehearse_arguments, run_rehearse

    rehearse = sub.add_parser("rehearse", help="rehearse a config against scripted upstream faults")
    add_rehearse_arguments(rehearse)
    rehearse.set_defaults(run=run_rehearse)

    mock = sub.add_parser("mock-upstream", help="run the OpenAI-compatible fault simulator")
    add_mock_arguments(mock)
    mock.set_defaults(run=_mock)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``relaygate`` command; returns the exit status."""
    ns = parser().parse_args(argv)
    result: int = ns.run(ns)
    return result


if __name__ == "__main__":
    sys.exit(main())
