"""The ``relaygate rehearse`` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from relaygate.argtypes import int_in
from relaygate.config import ConfigError
from relaygate.config.explain import explain
from relaygate.rehearse.driver import DEFAULT_DEADLINE_MS, rehearse
from relaygate.rehearse.report import format_report
from relaygate.rehearse.scenario import (
    BUILTIN_SCENARIOS,
    DEFAULT_SCENARIO,
    MAX_REQUESTS,
    ScenarioError,
    load_scenario,
)
from relaygate.rehearse.target import load_rehearsal_config

_DESCRIPTION = (
    "Run a routing config against simulated upstreams with scripted faults, and report "
    "what happened per request and which metrics moved."
)


def _metadata(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a JSON object") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _scenario_help() -> str:
    lines = ["built-in scenarios:"]
    for scenario in BUILTIN_SCENARIOS.values():
        lines += textwrap.wrap(
            scenario.description,
            width=78,
            initial_indent=f"  {scenario.name:<22}",
            subsequent_indent=" " * 24,
        )
    lines.append("")
    lines += textwrap.wrap(
        "A scenario file is YAML: {name, description, requests, stream, targets: "
        "{<index|name|path>: <fault script> | {script, loop, error_rate, error_status, "
        "latency_ms, stream_chunks}}}. Fault scripts use the mock-upstream --script syntax, "
        'e.g. "429@retry_after=1,timeout,503,200@cut_after_chunks=2".',
        width=78,
    )
    return "\n".join(lines)


def add_rehearse_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``rehearse`` arguments to ``parser`` (and list the built-in scenarios in its
    epilog).

    Dests: ``config`` (positional CONFIG), ``scenario`` (name or file, default
    :data:`DEFAULT_SCENARIO`), ``config_id``, ``requests`` (``None``: the scenario's),
    ``stream`` (``None``: the scenario's; ``--stream``/``--no-stream``), ``seed`` (default
    0), ``real_waits``, ``deadline_ms``, ``model``, ``metadata`` (parsed JSON object).
    """
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _scenario_help()
    if parser.description is None:
        parser.description = _DESCRIPTION
    parser.add_argument(
        "config",
        metavar="CONFIG",
        help="Portkey-format config file (JSON/YAML), or a server config file",
    )
    parser.add_argument(
        "--scenario",
        default=DEFAULT_SCENARIO,
        metavar="NAME|FILE",
        help="built-in scenario name or scenario YAML file (default: %(default)s)",
    )
    parser.add_argument(
        "--config-id", default=None, help="named config of a server config to rehearse"
    )
    parser.add_argument(
        "--requests",
        type=int_in(1, MAX_REQUESTS),
        default=None,
        metavar="N",
        help="requests to send (default: the scenario's)",
    )
    parser.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="stream the requests (default: the scenario's)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="seed of jitter, loadbalance picks and random faults (default: %(default)s)",
    )
    parser.add_argument(
        "--real-waits",
        action="store_true",
        help="sleep backoff and Retry-After waits in full instead of cutting them short",
    )
    parser.add_argument(
        "--deadline-ms",
        type=int_in(1, what="milliseconds"),
        default=DEFAULT_DEADLINE_MS,
        help="cap on the request deadline during the rehearsal (default: %(default)s)",
    )
    parser.add_argument(
        "--model", default="gpt-4o-mini", help="model the requests ask for (default: %(default)s)"
    )
    parser.add_argument(
        "--metadata",
        type=_metadata,
        default=None,
        metavar="JSON",
        help="x-portkey-metadata sent with every request (for conditional routing)",
    )


def _use_color(stream: Any) -> bool:
    isatty: Callable[[], bool] | None = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and "NO_COLOR" not in os.environ


def run_rehearse(ns: argparse.Namespace) -> int:
    """Run the rehearsal described by ``ns`` (see :func:`add_rehearse_arguments`) and print
    the report to standard output.

    Returns 0 when the rehearsal ran, whatever happened to its requests; 2, with the
    explanation on standard error, when the config or the scenario is invalid.
    """
    try:
        loaded = load_rehearsal_config(ns.config, getattr(ns, "config_id", None))
    except ConfigError as exc:
        print(f"relaygate rehearse: invalid config {ns.config}:\n{explain(exc)}", file=sys.stderr)
        return 2
    try:
        scenario = load_scenario(getattr(ns, "scenario", None) or DEFAULT_SCENARIO)
        report = rehearse(
            loaded,
            scenario,
            requests=getattr(ns, "requests", None),
            stream=getattr(ns, "stream", None),
            seed=getattr(ns, "seed", 0),
            real_waits=getattr(ns, "real_waits", False),
            deadline_ms=getattr(ns, "deadline_ms", DEFAULT_DEADLINE_MS),
            model=getattr(ns, "model", "gpt-4o-mini"),
            metadata=getattr(ns, "metadata", None),
        )
    except ScenarioError as exc:
        print(f"relaygate rehearse: invalid scenario: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.write(format_report(report, color=_use_color(sys.stdout)))
        sys.stdout.flush()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``relaygate rehearse`` with ``argv`` (default: ``sys.argv``); the exit status."""
    parser = argparse.ArgumentParser(prog="relaygate rehearse")
    add_rehearse_arguments(parser)
    return run_rehearse(parser.parse_args(argv))
