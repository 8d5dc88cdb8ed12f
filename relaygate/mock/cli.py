"""The ``relaygate mock-upstream`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Sequence

from relaygate.argtypes import int_in
from relaygate.mock.app import _DEFAULT_SETTINGS, create_mock_app
from relaygate.mock.faults import (
    _MAX_STATUS,
    _MIN_STATUS,
    TEXT_MODES,
    Fault,
    MockSettings,
    parse_faults,
)


def _script_arg(text: str) -> str:
    """A fault script as written, once it parses (so it can be shown as written)."""
    try:
        parse_faults(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _non_negative_float_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _probability_arg(text: str) -> float:
    value = _non_negative_float_arg(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a probability between 0 and 1, got {text!r}")
    return value


def add_mock_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the mock upstream options to ``parser``.

    Options (dest in brackets): ``--host`` [host, default 127.0.0.1], ``--port``
    [port, default 9001], ``--name`` [name], ``--latency-ms`` [latency_ms],
    ``--error-rate`` [error_rate], ``--error-status`` [error_status], ``--seed``
    [seed], ``--script`` [script, a :func:`parse_faults` spec, parsed at argument
    parsing time], ``--loop`` [loop], ``--stream-chunks`` [stream_chunks],
    ``--api-key`` [api_key], ``--text`` [text: ``greeting`` or ``request``], ``--answer``
    [answer].  Defaults match :class:`MockSettings`.
    """
    defaults = _DEFAULT_SETTINGS
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=9001, help="port to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--name", default=defaults.name, help="mock name in responses (default: %(default)s)"
    )
    parser.add_argument(
        "--latency-ms",
        type=_non_negative_float_arg,
        default=defaults.latency_ms,
        help="base latency per request",
    )
    parser.add_argument(
        "--error-rate",
        type=_probability_arg,
        default=defaults.error_rate,
        help="probability (0..1) of an error",
    )
    parser.add_argument(
        "--error-status",
        type=int_in(_MIN_STATUS, _MAX_STATUS, "an HTTP status"),
        default=defaults.error_status,
        help="status used by --error-rate",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="RNG seed for reproducible --error-rate"
    )
    parser.add_argument(
        "--script",
        type=_script_arg,
        default=None,
        help='fault script, e.g. "503,429@retry_after=1,200"',
    )
    parser.add_argument("--loop", action="store_true", help="restart the script when exhausted")
    parser.add_argument(
        "--stream-chunks",
        type=int_in(1),
        default=defaults.stream_chunks,
        help="content chunks per stream",
    )
    parser.add_argument(
        "--api-key", default=None, help="require this API key (Bearer or api-key header)"
    )
    parser.add_argument(
        "--text",
        choices=TEXT_MODES,
        default=defaults.text,
        help="answer text: 'greeting' (Hello from NAME) or 'request' (a deterministic "
        "function of the prompt, the same from every simulator; default: %(default)s)",
    )
    parser.add_argument(
        "--answer",
        default=None,
        help="completion text (default: 'Hello from NAME'); mocks given the same text "
        "answer alike, word for word",
    )


def settings_from_args(ns: argparse.Namespace) -> MockSettings:
    """Build :class:`MockSettings` from a namespace filled by :func:`add_mock_arguments`.

    ``ns.script`` may be a tuple of faults, a spec string or ``None``; missing
    attributes take the :class:`MockSettings` defaults.  Raises ``ValueError``
    on invalid values.
    """
    defaults = _DEFAULT_SETTINGS
    script = getattr(ns, "script", None)
    if script is None:
        faults: tuple[Fault, ...] = ()
    elif isinstance(script, str):
        faults = parse_faults(script)
    else:
        faults = tuple(script)
    return dataclasses.replace(
        defaults,
        name=getattr(ns, "name", defaults.name),
        latency_ms=getattr(ns, "latency_ms", defaults.latency_ms),
        error_rate=getattr(ns, "error_rate", defaults.error_rate),
        error_status=getattr(ns, "error_status", defaults.error_status),
        seed=getattr(ns, "seed", defaults.seed),
        script=faults,
        loop_script=bool(getattr(ns, "loop", defaults.loop_script)),
        stream_chunks=getattr(ns, "stream_chunks", defaults.stream_chunks),
        api_key=getattr(ns, "api_key", defaults.api_key),
        text=getattr(ns, "text", defaults.text),
        answer=getattr(ns, "answer", defaults.answer),
    )


def serve_mock(host: str, port: int, settings: MockSettings, script: str | None = None) -> int:
    """Run the mock upstream with uvicorn on ``host:port`` until interrupted (blocking).

    Once the port is bound it prints its base URL and ``script`` (the fault script as
    written) to stderr; a port in use is one line and exit status 2.
    """
    import sys

    from relaygate.serving import PortInUse, bind_listener, run_on_socket

    try:
        sock = bind_listener(host, port)
    except PortInUse as exc:
        print(f"relaygate mock-upstream: {exc}", file=sys.stderr)
        return 2
    faults = (
        f"script {script!r}" + (", looped" if settings.loop_script else "")
        if script
        else "no script"
    )
    print(
        f"relaygate mock-upstream '{settings.name}' on http://{host}:{port}/v1 ({faults}; "
        f"error rate {settings.error_rate:g})  Stop: Ctrl-C",
        file=sys.stderr,
        flush=True,
    )
    try:
        run_on_socket(create_mock_app(settings), sock, log_level="warning", lifespan="off")
    finally:
        sock.close()
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """Run the mock upstream from a command line (``python -m relaygate.mock``)."""
    parser = argparse.ArgumentParser(description="relaygate mock upstream LLM provider")
    add_mock_arguments(parser)
    ns = parser.parse_args(argv)
    raise SystemExit(serve_mock(ns.host, ns.port, settings_from_args(ns), ns.script))
