"""The ``relaygate`` command: ``serve``, ``validate``, ``keys``, ``demo``, ``rehearse``,
``mock-upstream``.

``relaygate serve --config FILE`` listens on 127.0.0.1:8787 by default (Portkey's port, so it
can replace a local Portkey gateway); ``--portkey-config FILE`` serves a Portkey config as the
default config. ``relaygate validate FILE`` checks a server config or a Portkey config and
explains every error (exit status 0 valid, 1 invalid, 2 usage). ``relaygate init`` writes a
starter server config. ``relaygate keys create --name N`` makes a gateway
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
from relaygate.config.compile import compile_file, read_config_file
from relaygate.config.explain import explain
from relaygate.config.server import ServerConfig

CONFIG_ENV = "RELAYGATE_CONFIG"
"""Environment variable through which ``serve`` hands the config path to worker processes."""


def app_factory() -> Any:
    """Build the ASGI app from ``$RELAYGATE_CONFIG`` (used by uvicorn workers)."""
    from relaygate.app import create_app
    from relaygate.exporters.logging import configure_logging
    from relaygate.exporters.workers import METRICS_DIR_ENV

    path = os.environ.get(CONFIG_ENV)
    server = read_config_file(path).server if path else ServerConfig()
    configure_logging(server.telemetry.logs.level, server.telemetry.logs.format)
    return create_app(
        server, metrics_dir=os.environ.get(METRICS_DIR_ENV) or None, reload_from=path or None
    )


def _serve(ns: argparse.Namespace) -> int:
    from relaygate.exporters.workers import METRICS_DIR_ENV, check_directory
    from relaygate.serving import PortInUse, bind_listener, run_on_socket, uvicorn_options

    path: str | None = ns.config or ns.portkey_config
    server = _served_config(path, portkey=ns.portkey_config is not None)
    if server is None:
        return 2
    host = ns.host or server.listen.host
    port = ns.port if ns.port is not None else server.listen.port
    try:
        sock = bind_listener(host, port)
    except PortInUse as exc:
        print(f"relaygate: {exc}", file=sys.stderr)
        return 2
    if path:
        os.environ[CONFIG_ENV] = str(Path(path).resolve())
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
            sock.close()
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
        started = run_on_socket(
            "relaygate.cli:app_factory",
            sock,
            factory=True,
            workers=ns.workers,
            **uvicorn_options(server),
        )
    finally:
        sock.close()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0 if started else 3


def _served_config(path: str | None, *, portkey: bool) -> ServerConfig | None:
    """The server config ``serve`` runs: from a server config file, or (``portkey``) a
    Portkey config file served as the default config. A problem is printed (a Portkey
    config given as a server config, or the reverse, in one line naming the right flag)
    and ``None`` returned."""
    if path is None:
        return ServerConfig()
    try:
        file = read_config_file(path)
        compile_file(file, _provider_names())
    except ConfigError as exc:
        print(f"relaygate: invalid config {path}:\n{explain(exc)}", file=sys.stderr)
        return None
    if file.portkey and not portkey:
        print(
            f"relaygate: {path} is a Portkey config, not a server config: serve it with "
            f"`relaygate serve --portkey-config {path}`, or put it under `default_config:` "
            "in a server config",
            file=sys.stderr,
        )
        return None
    if portkey and not file.portkey:
        print(
            f"relaygate: {path} is a server config, not a Portkey config: serve it with "
            f"`relaygate serve --config {path}`",
            file=sys.stderr,
        )
        return None
    return file.server


def _drained(signum: int, frame: FrameType | None) -> None:
    """SIGTERM handler in force once uvicorn has drained: nothing left to do."""


def _provider_names() -> frozenset[str]:
    from relaygate.providers.registry import default_registry

    return frozenset(default_registry().names)


VALIDATE_VALID, VALIDATE_INVALID, VALIDATE_USAGE = 0, 1, 2
"""Exit statuses of ``relaygate validate``: valid, invalid (explained), usage (bad
arguments, or a file that cannot be read)."""


def _validate(ns: argparse.Namespace) -> int:
    path = Path(ns.file)
    try:
        # Read once: a pipe such as /dev/stdin has nothing left for a second read.
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"relaygate: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return VALIDATE_USAGE
    except UnicodeDecodeError:
        print(f"{path}: invalid\n(root): not valid UTF-8")
        return VALIDATE_INVALID
    try:
        file = read_config_file(path, text=text)
        compiled = compile_file(file, _provider_names())
    except ConfigError as exc:
        print(f"{path}: invalid\n{explain(exc)}")
        return VALIDATE_INVALID
    kind = "Portkey config" if file.portkey else "server config"
    print(f"{path}: valid {kind}")
    for warning in compiled.warnings:
        print(f"  warning: {warning}")
    return VALIDATE_VALID


def _init(ns: argparse.Namespace) -> int:
    from relaygate.starter import checked_starter, variables

    providers = [p.strip() for p in ns.providers.split(",") if p.strip()]
    try:
        text = checked_starter(providers, _provider_names())
    except ValueError as exc:
        print(f"relaygate init: {exc}", file=sys.stderr)
        return 2
    if ns.output == "-":
        sys.stdout.write(text)
        return 0
    out = Path(ns.output)
    if out.exists() and not ns.force:
        print(f"relaygate init: {out} exists; pass --force to overwrite it", file=sys.stderr)
        return 1
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"relaygate init: cannot write {out}: {exc.strerror}", file=sys.stderr)
        return 1
    names = " ".join(f"{name}=..." for name in variables(providers))
    print(f"wrote {out} (validated). Next:\n  export {names}\n  relaygate serve --config {out}")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("relaygate")
    except PackageNotFoundError:
        return "unknown"


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

    return serve_mock(ns.host, ns.port, settings_from_args(ns), ns.script)


def _demo(ns: argparse.Namespace) -> int:
    from relaygate.demo import run_demo

    return run_demo(ns.port, ns.upstream_ports)


def _port_pair(text: str) -> tuple[int, int]:
    """``A,B`` as two ports (argparse type)."""
    try:
        first, second = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two ports as A,B, got {text!r}") from None
    return first, second


def parser() -> argparse.ArgumentParser:
    """The argument parser of the ``relaygate`` command."""
    from relaygate.mock import add_mock_arguments

    root = argparse.ArgumentParser(prog="relaygate", description=__doc__.split("\n")[0])
    root.add_argument("--version", action="version", version=f"relaygate {_version()}")
    sub = root.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    source = serve.add_mutually_exclusive_group()
    source.add_argument("--config", "-c", help="server config file (YAML or JSON)")
    source.add_argument(
        "--portkey-config",
        metavar="FILE",
        help="a Portkey config file (JSON or YAML), served as the default config",
    )
    serve.add_argument("--host", help="interface to bind (default: config, else 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: config, else 8787)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes")
    serve.set_defaults(run=_serve)

    validate = sub.add_parser(
        "validate",
        help="check a server config or a Portkey config",
        description="Check a server config or a Portkey config (JSON or YAML). Exit status: "
        "0 valid, 1 invalid (every problem explained), 2 usage (bad arguments, unreadable file).",
    )
    validate.add_argument("file", help="the config file ('/dev/stdin' reads a pipe)")
    validate.set_defaults(run=_validate)

    init = sub.add_parser(
        "init",
        help="write a commented starter server config for the named providers",
    )
    init.add_argument(
        "--providers",
        default="openai",
        help="comma-separated providers, tried in this order (default: openai)",
    )
    init.add_argument(
        "--output", "-o", default="relaygate.yaml", help="file to write ('-': standard output)"
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(run=_init)

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
    demo.add_argument("--port", type=int, default=8787, help="the gateway's port (8787)")
    demo.add_argument(
        "--upstream-ports",
        type=_port_pair,
        default=(9101, 9102),
        metavar="A,B",
        help="ports of the two simulated upstreams (9101,9102)",
    )
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
