"""``relaygate rehearse``: run a routing config against scripted upstream faults and report.

A rehearsal takes a user's routing config (a Portkey-format config file, or a server config
file and one of its configs), starts one fault simulator (:mod:`relaygate.mock_upstream`)
per target on a free loopback port, points every target's ``custom_host`` at its simulator
and keeps everything else of the config (strategy, retry, timeouts, weights, conditions,
override params, provider defaults, client auth). It then sends a number of chat requests,
one after the other, through the gateway in-process (:class:`relaygate.AsyncTransport`,
the same pipeline as the server) and prints what happened: one line per request (status,
served-by target, route story, latency) and a summary (attempts per target by outcome,
retries, timeouts, fallbacks, exhausted requests, and the ``relaygate_*`` Prometheus series
that moved).

A :class:`Scenario` says which faults each simulated upstream produces: a script in the
:func:`~relaygate.mock_upstream.parse_faults` syntax (consumed one answer per upstream
request), optionally repeated, and an optional random error rate. Targets a scenario does
not name answer normally. Built-in scenarios are in :data:`BUILTIN_SCENARIOS`; a scenario
file is YAML::

    name: primary-flaps          # optional; default: the file name
    description: ...             # optional
    requests: 6                  # optional; default 5
    stream: false                # optional; default false
    targets:                     # key: index (0 = first target in config order), name or path
      0: "503,503,200"           # a fault script ...
      backup:                    # ... or the simulator's settings
        script: timeout
        loop: true               # repeat the script forever
        error_rate: 0.2          # after the script: fail this share of requests, at random
        error_status: 503
        latency_ms: 50           # added to every answer
        stream_chunks: 5         # content chunks per streamed answer

Backoff and Retry-After waits are not slept in full (each is cut to
:data:`SHORT_WAIT_S`) so a rehearsal takes seconds; the report shows the waits the gateway
decided on. Timeouts and simulated latencies are real. The request deadline is capped (10 s
by default) so a hanging upstream behind a target without ``request_timeout`` cannot stall
the rehearsal for the server's full deadline.

Requests are sent with httpx on the in-process transport rather than an SDK: the report
shows the gateway's answer as it is (status, headers, SSE events), unaltered by an SDK's own
retries, and the command needs no package beyond relaygate's dependencies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml
from prometheus_client import CollectorRegistry

from relaygate.config import ConfigError
from relaygate.config.compile import ConfigFile, compile_file, is_portkey_config, read_config_file
from relaygate.config.model import Target
from relaygate.config.schema import ConfigNode
from relaygate.config.server import (
    AuthSettings,
    ServerConfig,
    explain,
    load_server_config,
    read_document,
)
from relaygate.exchange import AttemptRecord, RequestContext
from relaygate.exporters.prometheus import GatewayMetrics
from relaygate.gateway import GatewayDeps
from relaygate.mock_upstream import Fault, MockSettings, create_mock_app, parse_faults
from relaygate.providers.client import default_upstream
from relaygate.providers.registry import default_registry
from relaygate.telemetry import Telemetry
from relaygate.transport import AsyncTransport

__all__ = [
    "BUILTIN_SCENARIOS",
    "DEFAULT_DEADLINE_MS",
    "DEFAULT_SCENARIO",
    "SHORT_WAIT_S",
    "MetricDelta",
    "RehearsalConfig",
    "Report",
    "RequestResult",
    "Scenario",
    "ScenarioError",
    "TargetFaults",
    "add_rehearse_arguments",
    "format_report",
    "load_rehearsal_config",
    "load_scenario",
    "metric_deltas",
    "metric_values",
    "rehearse",
    "run_rehearse",
    "scenario_from_dict",
]

SHORT_WAIT_S = 0.005
"""Longest real sleep of one backoff or Retry-After wait during a rehearsal (seconds)."""

DEFAULT_DEADLINE_MS = 10_000
"""Default cap on the request deadline during a rehearsal (milliseconds)."""

DEFAULT_SCENARIO = "primary-down"
"""The scenario run when ``--scenario`` is not given."""

DEFAULT_REQUESTS = 5
"""Requests a scenario file sends when it does not say."""

MAX_REQUESTS = 10_000
"""Upper bound of the number of requests of one rehearsal."""

_DESCRIPTION = (
    "Run a routing config against simulated upstreams with scripted faults, and report "
    "what happened per request and which metrics moved."
)
_HOST = "127.0.0.1"
_CLIENT_BASE_URL = "http://relaygate.rehearsal/v1"
_PLACEHOLDER_PREFIX = "rehearsal-placeholder-"
_UNSET_VARIABLE = re.compile(r"environment variable (?P<name>[A-Za-z_][A-Za-z0-9_]*) is not set")
_API_SUFFIX: Mapping[str, str] = {"azure-openai": "/openai"}
"""Path under a simulator that plays the provider's ``custom_host`` (default ``/v1``)."""


# --- scenarios ---------------------------------------------------------------------------


class ScenarioError(ValueError):
    """A scenario that cannot be run: unreadable, malformed, or naming no target of the config.

    The message names the offending field (``targets.primary.script: ...``).
    """


@dataclass(frozen=True)
class TargetFaults:
    """What one simulated upstream does, as :class:`~relaygate.mock_upstream.MockSettings`.

    ``spec`` is the fault script in :func:`~relaygate.mock_upstream.parse_faults` syntax,
    consumed one answer per upstream request; ``loop`` repeats it. Once the script is used up
    (or when there is none), an answer fails with ``error_status`` with probability
    ``error_rate`` (seeded per rehearsal) and succeeds otherwise. ``latency_ms`` is added to
    every answer; ``stream_chunks`` is the number of content chunks of a streamed answer.
    """

    spec: str = ""
    loop: bool = False
    error_rate: float = 0.0
    error_status: int = 503
    latency_ms: float = 0.0
    stream_chunks: int = 5

    @property
    def script(self) -> tuple[Fault, ...]:
        """The parsed fault script."""
        return parse_faults(self.spec)

    def settings(self, name: str, seed: int | None) -> MockSettings:
        """The simulator settings of a target labelled ``name``; ``ValueError`` if invalid."""
        return MockSettings(
            name=name,
            latency_ms=self.latency_ms,
            error_rate=self.error_rate,
            error_status=self.error_status,
            seed=seed,
            script=self.script,
            loop_script=self.loop,
            stream_chunks=self.stream_chunks,
        )

    @property
    def hangs(self) -> bool:
        """Whether the script makes the upstream hang (never answer)."""
        return any(fault.hang for fault in self.script)

    @property
    def cuts_streams(self) -> bool:
        """Whether the script cuts streamed answers (which only streamed requests notice)."""
        return any(fault.cut_after_chunks is not None for fault in self.script)

    def describe(self) -> str:
        """A one-line account of the faults, e.g. ``429@retry_after=1 x3, then healthy``."""
        items = [item.strip() for item in self.spec.split(",") if item.strip()]
        runs: list[tuple[str, int]] = []
        for item in items:
            if runs and runs[-1][0] == item:
                runs[-1] = (item, runs[-1][1] + 1)
            else:
                runs.append((item, 1))
        scripted = ", ".join(item if n == 1 else f"{item} x{n}" for item, n in runs)
        if self.error_rate > 0:
            after = f"{self.error_status} with probability {self.error_rate:g}, else healthy"
        else:
            after = "healthy"
        if not items:
            text = after
        elif self.loop:
            text = (
                f"{scripted} on every request"
                if len(runs) == 1 and runs[0][1] == 1
                else f"{scripted}, repeated"
            )
        else:
            text = f"{scripted}, then {after}"
        if self.latency_ms:
            text += f"; every answer +{self.latency_ms:g} ms"
        return text


@dataclass(frozen=True)
class Scenario:
    """A scripted rehearsal: faults per target and the requests to send.

    ``targets`` maps a target key (an ``int`` index in config order, or a target's name or
    path) to its faults; targets not named are healthy. ``stream`` makes every request a
    streamed one.
    """

    name: str
    description: str = ""
    requests: int = DEFAULT_REQUESTS
    stream: bool = False
    targets: Mapping[int | str, TargetFaults] = field(default_factory=dict)


_SETTINGS_PROBLEM = re.compile(r"MockSettings\.(?P<field>\w+) (?P<message>.*)", re.DOTALL)
_SCENARIO_KEYS = frozenset({"name", "description", "requests", "stream", "targets"})
_FAULT_KEYS = frozenset(
    {"script", "loop", "error_rate", "error_status", "latency_ms", "stream_chunks"}
)


def _number(value: Any, where: str, *, integer: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(f"{where}: must be {'an integer' if integer else 'a number'}")
    if integer and not isinstance(value, int):
        raise ScenarioError(f"{where}: must be an integer")
    if not math.isfinite(value):
        raise ScenarioError(f"{where}: must be a finite number")
    return value


def _target_faults(raw: Any, where: str) -> TargetFaults:
    if isinstance(raw, str):
        raw = {"script": raw}
    if not isinstance(raw, Mapping):
        raise ScenarioError(f"{where}: must be a fault script or a mapping of simulator settings")
    unknown = sorted(str(k) for k in raw if k not in _FAULT_KEYS)
    if unknown:
        raise ScenarioError(
            f"{where}.{unknown[0]}: unknown field; expected one of {sorted(_FAULT_KEYS)}"
        )
    spec = raw.get("script", "")
    if not isinstance(spec, str):
        raise ScenarioError(f"{where}.script: must be a string such as '503,503,200'")
    loop = raw.get("loop", False)
    if not isinstance(loop, bool):
        raise ScenarioError(f"{where}.loop: must be true or false")
    values: dict[str, Any] = {}
    for key, integer in (
        ("error_rate", False),
        ("error_status", True),
        ("latency_ms", False),
        ("stream_chunks", True),
    ):
        if key in raw:
            values[key] = _number(raw[key], f"{where}.{key}", integer=integer)
    try:
        parse_faults(spec)
    except ValueError as exc:
        raise ScenarioError(f"{where}.script: {exc}") from None
    faults = TargetFaults(spec=spec, loop=loop, **values)
    try:
        faults.settings("check", None)
    except ValueError as exc:
        found = _SETTINGS_PROBLEM.match(str(exc))
        problem = f"{found['field']}: {found['message']}" if found else f"(settings): {exc}"
        raise ScenarioError(f"{where}.{problem}") from None
    return faults


def _target_key(key: Any) -> int | str:
    if isinstance(key, bool):
        raise ScenarioError(f"targets: key {key!r} must be an index, a target name or a path")
    if isinstance(key, int):
        return key
    if isinstance(key, str) and key.strip():
        text = key.strip()
        return int(text) if text.isdigit() else text
    raise ScenarioError(f"targets: key {key!r} must be an index, a target name or a path")


def scenario_from_dict(data: Any, default_name: str = "scenario") -> Scenario:
    """Validate a scenario document (see the module docstring) and build the :class:`Scenario`.

    ``default_name`` is used when the document has no ``name``. Raises
    :class:`ScenarioError` naming the first bad field.
    """
    if not isinstance(data, Mapping):
        raise ScenarioError("(root): a scenario must be a mapping with a 'targets' field")
    unknown = sorted(str(k) for k in data if k not in _SCENARIO_KEYS)
    if unknown:
        raise ScenarioError(
            f"{unknown[0]}: unknown field; expected one of {sorted(_SCENARIO_KEYS)}"
        )
    name = data.get("name", default_name)
    description = data.get("description", "")
    if not isinstance(name, str) or not name.strip():
        raise ScenarioError("name: must be a non-empty string")
    if not isinstance(description, str):
        raise ScenarioError("description: must be a string")
    requests = _number(data.get("requests", DEFAULT_REQUESTS), "requests", integer=True)
    if not 1 <= requests <= MAX_REQUESTS:
        raise ScenarioError(f"requests: must be between 1 and {MAX_REQUESTS}")
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise ScenarioError("stream: must be true or false")
    raw_targets = data.get("targets", {})
    if raw_targets is None:
        raw_targets = {}
    if not isinstance(raw_targets, Mapping):
        raise ScenarioError("targets: must map target index/name/path to faults")
    targets: dict[int | str, TargetFaults] = {}
    for raw_key, raw_faults in raw_targets.items():
        key = _target_key(raw_key)
        targets[key] = _target_faults(raw_faults, f"targets.{key}")
    return Scenario(
        name=name.strip(),
        description=description.strip(),
        requests=requests,
        stream=stream,
        targets=targets,
    )


_BUILTIN_DOCUMENTS: tuple[dict[str, Any], ...] = (
    {
        "name": "primary-down",
        "description": "The first target answers 503 to every request.",
        "requests": 3,
        "targets": {0: {"script": "503", "loop": True}},
    },
    {
        "name": "rate-limited-primary",
        "description": "The first target answers 429 three times (Retry-After: 1 s), "
        "then hangs twice, then recovers.",
        "requests": 4,
        "targets": {0: "429@retry_after=1,429@retry_after=1,429@retry_after=1,timeout,timeout"},
    },
    {
        "name": "slow-primary",
        "description": "The first target never answers within its request_timeout: it hangs "
        "until the gateway gives up on the attempt.",
        "requests": 3,
        "targets": {0: {"script": "timeout", "loop": True}},
    },
    {
        "name": "stream-cut",
        "description": "Streamed requests. The first target cuts its stream after two chunks "
        "(the client already has bytes), then right after the headers (before any byte "
        "reached the client), then recovers.",
        "requests": 3,
        "stream": True,
        "targets": {0: "200@cut_after_chunks=2,200@cut_after_chunks=0"},
    },
    {
        "name": "flaky-primary",
        "description": "The first target fails half of its answers with 503, at random "
        "(the same --seed gives the same run).",
        "requests": 10,
        "targets": {0: {"error_rate": 0.5, "error_status": 503}},
    },
)

BUILTIN_SCENARIOS: Mapping[str, Scenario] = {
    doc["name"]: scenario_from_dict(doc) for doc in _BUILTIN_DOCUMENTS
}
"""The scenarios shipped with relaygate, by name; each names targets by index only."""


def load_scenario(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or the scenario in a YAML (or JSON) file.

    Raises :class:`ScenarioError` for an unknown name, an unreadable file or a bad document.
    """
    builtin = BUILTIN_SCENARIOS.get(name_or_path)
    if builtin is not None:
        return builtin
    path = Path(name_or_path)
    if not path.is_file():
        raise ScenarioError(
            f"unknown scenario {name_or_path!r}: not a built-in scenario "
            f"({', '.join(BUILTIN_SCENARIOS)}) nor a scenario file"
        )
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"cannot read scenario file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ScenarioError(f"{path}: invalid YAML{where}") from None
    try:
        return scenario_from_dict(document, default_name=path.stem)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from None


# --- the config under rehearsal ----------------------------------------------------------


@dataclass(frozen=True)
class RehearsalConfig:
    """The routing config a rehearsal runs, with the server settings around it.

    ``node`` is the routing config as written (``custom_host`` not yet replaced), ``prefix``
    its location in the file for error paths (``""`` for a Portkey config file,
    ``configs.<id>`` or ``default_config`` in a server config). ``placeholders`` names the
    unset environment variables the rehearsal replaced with placeholder values.
    """

    source: str
    config_id: str
    node: ConfigNode
    server: ServerConfig
    targets: tuple[Target, ...]
    prefix: str = ""
    placeholders: tuple[str, ...] = ()


def _load_server(path: Path) -> tuple[ServerConfig, tuple[str, ...]]:
    """Load a server config; unset ``${VAR}`` references get placeholder values."""
    try:
        return load_server_config(path), ()
    except ConfigError as exc:
        missing = tuple(
            dict.fromkeys(
                m["name"] for _, message in exc.errors if (m := _UNSET_VARIABLE.fullmatch(message))
            )
        )
        if not missing:
            raise
        env = {**os.environ, **{name: _PLACEHOLDER_PREFIX + name.lower() for name in missing}}
        try:
            return load_server_config(path, env=env), missing
        except ConfigError:
            raise exc from None


def _choose(server: ServerConfig, config_id: str | None) -> tuple[str, ConfigNode, str]:
    """``(id, node, error-path prefix)`` of the routing config to rehearse."""
    names = ", ".join(server.configs) or "none defined"
    if config_id is not None:
        node = server.configs.get(config_id)
        if node is None:
            raise ConfigError(
                [("--config-id", f"no config named '{config_id}' (configs: {names})")]
            )
        return config_id, node, f"configs.{config_id}"
    default = server.raw_default()
    if default is not None:
        chosen = server.default_id()
        inline = not isinstance(server.default_config, str)
        return chosen, default, "default_config" if inline else f"configs.{chosen}"
    if len(server.configs) == 1:
        only, node = next(iter(server.configs.items()))
        return only, node, f"configs.{only}"
    raise ConfigError(
        [
            (
                "default_config",
                f"not set: choose one of the named configs ({names}) with --config-id",
            )
        ]
    )


def load_rehearsal_config(path: str | Path, config_id: str | None = None) -> RehearsalConfig:
    """Read the config to rehearse from ``path``.

    A document whose top level has ``strategy``, ``targets`` or ``provider`` is a Portkey
    config (JSON or YAML; its id is the file name without extension); any other is a server
    config, of which the config named ``config_id`` is rehearsed, else ``default_config``,
    else its only named config. Raises :class:`ConfigError` with the path of every bad
    field, including targets whose provider relaygate does not know.
    """
    file = Path(path)
    placeholders: tuple[str, ...] = ()
    if is_portkey_config(read_document(file)):
        if config_id is not None:
            raise ConfigError(
                [("--config-id", "only applies to a server config; this file is a Portkey config")]
            )
        loaded = read_config_file(file)
    else:
        server, placeholders = _load_server(file)
        loaded = ConfigFile(server)
    compiled = compile_file(loaded, frozenset(default_registry().names))
    server = loaded.server
    if loaded.portkey:
        assert loaded.config_id is not None
        chosen, prefix = loaded.config_id, ""
        node = server.configs[chosen]
        routing = compiled.configs[chosen]
    else:
        chosen, node, prefix = _choose(server, config_id)
        found = compiled.default if prefix == "default_config" else compiled.configs[chosen]
        assert found is not None
        routing = found
    return RehearsalConfig(
        source=str(path),
        config_id=chosen,
        node=node,
        server=server,
        targets=routing.targets,
        prefix=prefix,
        placeholders=placeholders,
    )


def _with_hosts(node: ConfigNode, path: str, hosts: Mapping[str, str]) -> ConfigNode:
    """``node`` with each target's ``custom_host`` set to ``hosts[target path]``."""
    if node.is_strategy:
        children = [
            _with_hosts(child, f"{path}.targets[{i}]", hosts)
            for i, child in enumerate(node.targets or ())
        ]
        return node.model_copy(update={"targets": children})
    return node.model_copy(update={"custom_host": hosts[path]})


def _resolve_faults(scenario: Scenario, targets: Sequence[Target]) -> tuple[TargetFaults, ...]:
    """Faults per target (in config order) from the scenario's target keys."""
    listing = ", ".join(f"{i} {t.label}" for i, t in enumerate(targets))
    chosen: dict[int, int | str] = {}
    for key in scenario.targets:
        if isinstance(key, int):
            index = key if 0 <= key < len(targets) else None
        else:
            index = next(
                (i for i, t in enumerate(targets) if key in (t.name, t.path)),
                None,
            )
        if index is None:
            raise ScenarioError(
                f"targets.{key}: no target with this index, name or path "
                f"(the config's targets: {listing})"
            )
        if index in chosen:
            raise ScenarioError(f"targets.{key}: names the same target as targets.{chosen[index]}")
        chosen[index] = key
    return tuple(
        scenario.targets[chosen[i]] if i in chosen else TargetFaults() for i in range(len(targets))
    )


# --- running -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestResult:
    """What one rehearsal request got, as the client saw it, plus the gateway's attempts.

    ``route`` is the ``x-relaygate-route`` header (empty when no upstream was tried);
    ``served_by`` the path of the target that produced the answer (the last one tried when
    the request failed); ``waited_s`` the backoff and Retry-After waits the gateway decided
    on; ``error`` the error message of a non-2xx answer (or of a failure to get any answer).
    For streamed requests, ``chunks`` counts the data events received before the end,
    ``stream_error`` is the message of an error event (or a note when the stream ended
    without ``[DONE]``).
    """

    number: int
    status: int
    latency_s: float
    route: str = ""
    served_by: str | None = None
    attempts: tuple[AttemptRecord, ...] = ()
    waited_s: float = 0.0
    error: str | None = None
    stream: bool = False
    chunks: int = 0
    stream_error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the answer was 2xx and, for a stream, ended cleanly."""
        return 200 <= self.status < 300 and self.stream_error is None

    @property
    def exhausted(self) -> bool:
        """Whether every target tried failed (a non-2xx answer after upstream attempts)."""
        return not 200 <= self.status < 300 and bool(self.route)


@dataclass(frozen=True)
class MetricDelta:
    """How much one Prometheus sample changed during the rehearsal.

    ``family`` is the metric family name, ``kind`` its type (``counter``, ``gauge``,
    ``histogram``), ``sample`` the sample name (``..._total``, ``..._count``, ``..._sum``),
    ``labels`` its label pairs in the family's order, ``documentation`` the family's help.
    """

    family: str
    kind: str
    sample: str
    labels: tuple[tuple[str, str], ...]
    delta: float
    documentation: str = ""


@dataclass(frozen=True)
class Report:
    """Everything a rehearsal observed; :func:`format_report` prints it."""

    scenario: Scenario
    config: RehearsalConfig
    faults: tuple[TargetFaults, ...]
    requests: tuple[RequestResult, ...]
    stream: bool
    seed: int
    real_waits: bool
    deadline_ms: int
    configured_deadline_ms: int
    metrics: tuple[MetricDelta, ...]
    notes: tuple[str, ...] = ()
    internal_errors: tuple[str, ...] = ()
    telemetry_errors: int = 0


_MetricKey = tuple[str, str, str, tuple[tuple[str, str], ...]]
_KEPT_SUFFIXES = ("_total", "_count", "_sum")


def metric_values(
    registry: CollectorRegistry, prefix: str = "relaygate_"
) -> dict[_MetricKey, float]:
    """Current values of the samples of ``registry`` whose family starts with ``prefix``.

    Keys are ``(family, kind, sample, labels)``; histogram buckets and ``_created``
    timestamps are left out. Keys keep the registry's order.
    """
    values: dict[_MetricKey, float] = {}
    for family in registry.collect():
        if not family.name.startswith(prefix):
            continue
        for sample in family.samples:
            if sample.name != family.name and not sample.name.endswith(_KEPT_SUFFIXES):
                continue
            key = (family.name, family.type, sample.name, tuple(sample.labels.items()))
            values[key] = float(sample.value)
    return values


def metric_deltas(
    before: Mapping[_MetricKey, float],
    after: Mapping[_MetricKey, float],
    documentation: Mapping[str, str] | None = None,
) -> tuple[MetricDelta, ...]:
    """The samples whose value changed between two :func:`metric_values` readings.

    In the order of ``after``; a sample absent from ``before`` counts from zero.
    """
    docs = documentation or {}
    out: list[MetricDelta] = []
    for key, value in after.items():
        delta = value - before.get(key, 0.0)
        if delta == 0:
            continue
        family, kind, sample, labels = key
        out.append(MetricDelta(family, kind, sample, labels, delta, docs.get(family, "")))
    return tuple(out)


def _documentation(registry: CollectorRegistry) -> dict[str, str]:
    return {family.name: family.documentation for family in registry.collect()}


class _Simulators:
    """Fault simulators under uvicorn, each in its own thread on a free loopback port."""

    def __init__(self) -> None:
        self._running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(self, settings: MockSettings, timeout_s: float = 10.0) -> str:
        config = uvicorn.Config(
            create_mock_app(settings),
            host=_HOST,
            port=0,
            log_level="critical",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name=f"rehearse-{settings.name}", daemon=True)
        thread.start()
        self._running.append((server, thread))
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the fault simulator for {settings.name} did not start")
            time.sleep(0.005)
        port = server.servers[0].sockets[0].getsockname()[1]
        return f"http://{_HOST}:{port}"

    def stop(self) -> None:
        for server, _ in self._running:
            server.should_exit = True
        for _, thread in self._running:
            thread.join(timeout=10)
        self._running.clear()


class _LogSink:
    """The gateway's logger during a rehearsal: silent, but keeps internal errors."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def debug(self, event: str, **kw: Any) -> None:
        return None

    info = warning = debug

    def error(self, event: str, **kw: Any) -> None:
        self.errors.append(event)

    def exception(self, event: str, **kw: Any) -> None:
        exc = sys.exc_info()[1]
        detail = f": {type(exc).__name__}: {exc}" if exc is not None else ""
        self.errors.append(f"{event} (request id {kw.get('request_id', '?')}){detail}")


class _Waits:
    """The retry layer's sleep: cut to ``cap_s`` unless waits are real."""

    def __init__(self, cap_s: float | None) -> None:
        self._cap = cap_s

    async def __call__(self, seconds: float) -> None:
        await asyncio.sleep(seconds if self._cap is None else min(seconds, self._cap))


def _error_message(content: bytes) -> str:
    try:
        payload = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return content[:200].decode("utf-8", "replace")
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        return str(payload["error"].get("message", ""))
    return content[:200].decode("utf-8", "replace")


@dataclass
class _Drive:
    """Sends the rehearsal's requests through one in-process gateway."""

    client: httpx.AsyncClient
    contexts: dict[str, RequestContext]
    headers: dict[str, str]
    model: str
    stream: bool

    async def one(self, number: int) -> RequestResult:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": f"rehearsal request {number}"}],
        }
        if self.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        start = time.perf_counter()
        try:
            if self.stream:
                result = await self._streamed(number, body, start)
            else:
                response = await self.client.post(
                    "/chat/completions", json=body, headers=self.headers
                )
                error = None if response.is_success else _error_message(response.content)
                result = self._result(number, response, start, error=error)
        except Exception as exc:  # a gateway fault must not end the rehearsal
            return RequestResult(
                number=number,
                status=0,
                latency_s=time.perf_counter() - start,
                error=f"no answer: {type(exc).__name__}: {exc}",
                stream=self.stream,
            )
        return result

    async def _streamed(self, number: int, body: dict[str, Any], start: float) -> RequestResult:
        chunks = 0
        stream_error: str | None = None
        done = False
        async with self.client.stream(
            "POST", "/chat/completions", json=body, headers=self.headers
        ) as response:
            if not response.is_success:
                await response.aread()
                return self._result(number, response, start, error=_error_message(response.content))
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    continue
                try:
                    event = json.loads(data)
                except ValueError:
                    stream_error = stream_error or "a data event that is not JSON"
                    continue
                if isinstance(event, dict) and "error" in event:
                    error = event["error"]
                    message = error.get("message") if isinstance(error, dict) else error
                    stream_error = str(message)
                else:
                    chunks += 1
        if stream_error is None and not done:
            stream_error = "the stream ended without [DONE]"
        return self._result(number, response, start, chunks=chunks, stream_error=stream_error)

    def _result(
        self,
        number: int,
        response: httpx.Response,
        start: float,
        *,
        error: str | None = None,
        chunks: int = 0,
        stream_error: str | None = None,
    ) -> RequestResult:
        latency = time.perf_counter() - start
        ctx = self.contexts.get(response.headers.get("x-request-id", ""))
        attempts = tuple(ctx.attempts) if ctx is not None else ()
        return RequestResult(
            number=number,
            status=response.status_code,
            latency_s=latency,
            route=response.headers.get("x-relaygate-route", ""),
            served_by=response.headers.get("x-portkey-last-used-option-index"),
            attempts=attempts,
            waited_s=sum(a.backoff_s for a in attempts),
            error=error,
            stream=self.stream,
            chunks=chunks,
            stream_error=stream_error,
        )


def _notes(
    loaded: RehearsalConfig, faults: Sequence[TargetFaults], stream: bool, deadline_ms: int
) -> list[str]:
    notes: list[str] = []
    if loaded.placeholders:
        names = ", ".join(loaded.placeholders)
        notes.append(
            f"unset environment variables replaced by placeholder values: {names} "
            "(only the simulators see them)"
        )
    for target, target_faults in zip(loaded.targets, faults, strict=True):
        if target_faults.hangs and not target.request_timeout_ms:
            notes.append(
                f"{target.label} has no request_timeout: a hanging answer holds the request "
                f"until the request deadline ({_duration(deadline_ms / 1000)})"
            )
        if target_faults.cuts_streams and not stream:
            notes.append(
                f"{target.label}: cut_after_chunks only affects streamed requests (use --stream)"
            )
    return notes


async def _drive(
    server: ServerConfig,
    loaded: RehearsalConfig,
    count: int,
    stream: bool,
    seed: int,
    real_waits: bool,
    model: str,
    metadata: Mapping[str, Any] | None,
) -> tuple[list[RequestResult], tuple[MetricDelta, ...], list[str], int]:
    registry = CollectorRegistry()
    sink = _LogSink()
    telemetry = Telemetry(metrics=GatewayMetrics(registry), logger=sink, detail="off")
    contexts: dict[str, RequestContext] = {}

    def keep(ctx: RequestContext, status: int) -> None:
        contexts[ctx.request_id] = ctx

    telemetry.request_hooks.append(keep)
    # The production wire client, created before the first request so that its one-off
    # set-up cost is not charged to the first attempt's request_timeout.
    upstream = default_upstream()
    deps = GatewayDeps(
        upstream=upstream,
        telemetry=telemetry,
        sleep=_Waits(None if real_waits else SHORT_WAIT_S),
        rand=random.Random(seed).random,
    )
    # A rehearsal drives routing, not gateway auth (whose keys may be stored only as
    # hashes): the rehearsed gateway runs without it.
    server = server.model_copy(update={"auth": AuthSettings()})
    headers: dict[str, str] = {}
    if metadata is not None:
        headers["x-portkey-metadata"] = json.dumps(metadata)
    before = metric_values(registry)
    timeout = httpx.Timeout(server.limits.request_deadline_ms / 1000 + 60)
    results: list[RequestResult] = []
    try:
        async with httpx.AsyncClient(
            transport=AsyncTransport(server, deps), base_url=_CLIENT_BASE_URL, timeout=timeout
        ) as client:
            drive = _Drive(client, contexts, headers, model, stream)
            for number in range(1, count + 1):
                results.append(await drive.one(number))
    finally:
        await upstream.aclose()
    deltas = metric_deltas(before, metric_values(registry), _documentation(registry))
    return results, deltas, sink.errors, telemetry.errors


def rehearse(
    loaded: RehearsalConfig,
    scenario: Scenario,
    *,
    requests: int | None = None,
    stream: bool | None = None,
    seed: int = 0,
    real_waits: bool = False,
    deadline_ms: int = DEFAULT_DEADLINE_MS,
    model: str = "gpt-4o-mini",
    metadata: Mapping[str, Any] | None = None,
) -> Report:
    """Run ``scenario`` against ``loaded`` and return the :class:`Report`.

    ``requests`` and ``stream`` override the scenario's; ``seed`` seeds the gateway's random
    draws (jitter, loadbalance) and the simulators' error dice; ``real_waits`` sleeps
    backoff and Retry-After waits in full; the request deadline is the smaller of the
    server's and ``deadline_ms``. ``model`` and ``metadata`` (sent as
    ``x-portkey-metadata``) shape the requests. Blocking: runs its own event loop, and the
    simulators in threads. Raises :class:`ScenarioError` when the scenario names a target
    the config does not have.
    """
    faults = _resolve_faults(scenario, loaded.targets)
    count = requests if requests is not None else scenario.requests
    streamed = scenario.stream if stream is None else stream
    configured = loaded.server.limits.request_deadline_ms
    deadline = min(configured, deadline_ms)
    simulators = _Simulators()
    try:
        hosts: dict[str, str] = {}
        for index, (target, target_faults) in enumerate(zip(loaded.targets, faults, strict=True)):
            url = simulators.start(target_faults.settings(target.label, seed + index))
            hosts[target.path] = url + _API_SUFFIX.get(target.provider, "/v1")
        node = _with_hosts(loaded.node, "config", hosts)
        server = loaded.server.model_copy(
            update={
                "configs": {loaded.config_id: node},
                "default_config": loaded.config_id,
                "limits": loaded.server.limits.model_copy(update={"request_deadline_ms": deadline}),
            }
        )
        results, deltas, internal, telemetry_errors = asyncio.run(
            _drive(server, loaded, count, streamed, seed, real_waits, model, metadata)
        )
    finally:
        simulators.stop()
    return Report(
        scenario=scenario,
        config=loaded,
        faults=faults,
        requests=tuple(results),
        stream=streamed,
        seed=seed,
        real_waits=real_waits,
        deadline_ms=deadline,
        configured_deadline_ms=configured,
        metrics=deltas,
        notes=tuple(_notes(loaded, faults, streamed, deadline)),
        internal_errors=tuple(internal),
        telemetry_errors=telemetry_errors,
    )


# --- the printed report ------------------------------------------------------------------


class _Style:
    """ANSI styling, enabled only for terminals."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def good(self, text: str) -> str:
        return self._wrap("32", text)

    def bad(self, text: str) -> str:
        return self._wrap("31", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if float(seconds).is_integer() or seconds >= 100:
        return f"{seconds:.0f} s"
    return f"{seconds:.1f} s"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _retry_text(target: Target) -> str:
    retry = target.retry
    if retry.attempts == 0:
        text = "no retry"
    else:
        codes = ",".join(str(c) for c in sorted(retry.on_status_codes))
        text = f"retry {retry.attempts}x on {codes}"
        if retry.use_retry_after_header:
            text += " (honours Retry-After)"
    timeout = target.request_timeout_ms
    text += f", request_timeout {timeout} ms" if timeout else ", no request_timeout"
    return text


def _counts(counter: Mapping[str, int]) -> str:
    return ", ".join(f"{key} {n}" for key, n in counter.items())


def _table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        indent + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in rows
    ]


def _header(report: Report, style: _Style) -> list[str]:
    loaded = report.config
    scenario = report.scenario
    lines = [
        style.bold(
            f"relaygate rehearse: scenario '{scenario.name}' on {loaded.source} "
            f"(config '{loaded.config_id}')"
        )
    ]
    if scenario.description:
        lines += textwrap.wrap(
            scenario.description, width=96, initial_indent="  ", subsequent_indent="  "
        )
    kind = "streamed" if report.stream else "not streamed"
    deadline = f"request deadline {_duration(report.deadline_ms / 1000)}"
    if report.deadline_ms < report.configured_deadline_ms:
        configured = _duration(report.configured_deadline_ms / 1000)
        deadline += f" (rehearsal cap; otherwise {configured})"
    lines.append(
        f"  {_plural(len(report.requests), 'request')}, {kind}, seed {report.seed}, {deadline}"
    )
    if report.real_waits:
        lines.append("  Waits: backoff and Retry-After waits are slept in full.")
    else:
        lines.append(
            f"  Backoff and Retry-After waits are cut to {SHORT_WAIT_S * 1000:g} ms each so the "
            "rehearsal takes seconds;"
        )
        lines.append(
            "  'waited' shows what the gateway decided to wait. Timeouts and latencies are real."
        )
    lines += ["", style.bold("Targets (each answered by its own fault simulator)")]
    rows = [
        [f"[{i}]", t.label, t.path, t.provider, _retry_text(t)]
        for i, t in enumerate(loaded.targets)
    ]
    for line, faults in zip(_table(rows), report.faults, strict=True):
        lines.append(line)
        lines.append(f"        faults: {faults.describe()}")
    return lines


def _request_lines(report: Report, style: _Style) -> list[str]:
    labels = {t.path: t.label for t in report.config.targets}
    rows = [["#", "status", "served by", "latency", "waited", "route"]]
    extra: list[list[str]] = []
    for result in report.requests:
        if result.served_by and 200 <= result.status < 300:
            served = labels.get(result.served_by, result.served_by)
        elif result.served_by:
            served = f"- (last: {labels.get(result.served_by, result.served_by)})"
        else:
            served = "-"
        rows.append(
            [
                str(result.number),
                str(result.status) if result.status else "none",
                served,
                _duration(result.latency_s),
                _duration(result.waited_s) if result.waited_s else "-",
                result.route or "(no upstream attempt)",
            ]
        )
        notes: list[str] = []
        if result.stream and 200 <= result.status < 300:
            if result.stream_error is None:
                notes.append(f"stream: {_plural(result.chunks, 'chunk')}, complete")
            else:
                notes.append(
                    f"stream: {_plural(result.chunks, 'chunk')}, then stream error: "
                    f"{result.stream_error}"
                )
        if result.error:
            notes.append(f"error: {result.error[:200]}")
        extra.append(notes)
    table = _table(rows)
    lines = [style.bold("Requests"), table[0]]
    at = table[0].index("status")
    for result, line, notes in zip(report.requests, table[1:], extra, strict=True):
        status = str(result.status) if result.status else "none"
        painted = style.good(status) if result.ok else style.bad(status)
        lines.append(line[:at] + painted + line[at + len(status) :])
        lines += [f"      {note}" for note in notes]
    return lines


def _summary_lines(report: Report, style: _Style) -> list[str]:
    targets = report.config.targets
    labels = {t.path: t.label for t in targets}
    results = report.requests
    per_target: dict[str, Counter[str]] = {t.path: Counter() for t in targets}
    retries: Counter[tuple[str, str]] = Counter()
    fallbacks: Counter[tuple[str, str, str]] = Counter()
    timeouts: Counter[str] = Counter()
    for result in results:
        attempts = result.attempts
        for i, attempt in enumerate(attempts):
            path = attempt.target.path
            per_target.setdefault(path, Counter())[attempt.reason] += 1
            if attempt.reason == "timeout":
                timeouts[path] += 1
            if i + 1 < len(attempts):
                nxt = attempts[i + 1].target.path
                if nxt == path:
                    retries[(path, attempt.reason)] += 1
                else:
                    fallbacks[(path, nxt, attempt.reason)] += 1
    ok = sum(1 for r in results if r.ok)
    failed = sum(1 for r in results if not 200 <= r.status < 300)
    stream_errors = sum(1 for r in results if 200 <= r.status < 300 and r.stream_error)
    exhausted: Counter[str] = Counter(
        r.attempts[-1].reason if r.attempts else "unknown" for r in results if r.exhausted
    )
    refused = sum(1 for r in results if not 200 <= r.status < 300 and not r.route)
    lines = [style.bold("Summary")]
    head = f"  requests: {len(results)}: {ok} ok, {failed} failed"
    if report.stream:
        head += f", {stream_errors} with a stream error"
    if refused:
        head += f" ({refused} refused before any upstream attempt)"
    lines.append(head)
    lines.append("  attempts by target and outcome:")
    rows = []
    for path, counter in per_target.items():
        total = sum(counter.values())
        rows.append(
            [
                labels.get(path, path),
                path,
                _plural(total, "attempt"),
                _counts(counter) if counter else "not tried",
            ]
        )
    lines += _table(rows, indent="    ")
    total_retries = sum(retries.values())
    lines.append(
        f"  retries: {total_retries}"
        + (
            "  ("
            + "; ".join(f"{labels.get(p, p)} after {why}: {n}" for (p, why), n in retries.items())
            + ")"
            if retries
            else ""
        )
    )
    lines.append(
        f"  timeouts: {sum(timeouts.values())}"
        + (
            "  (" + "; ".join(f"{labels.get(p, p)}: {n}" for p, n in timeouts.items()) + ")"
            if timeouts
            else ""
        )
    )
    lines.append(
        f"  fallbacks: {sum(fallbacks.values())}"
        + (
            "  ("
            + "; ".join(
                f"{labels.get(a, a)} -> {labels.get(b, b)} on {why}: {n}"
                for (a, b, why), n in fallbacks.items()
            )
            + ")"
            if fallbacks
            else ""
        )
    )
    lines.append(
        f"  exhausted requests: {sum(exhausted.values())}"
        + ("  (last failure: " + _counts(exhausted) + ")" if exhausted else "")
    )
    return lines


def _number_text(value: float) -> str:
    return f"{value:+g}" if float(value).is_integer() else f"{value:+.3f}"


def _metric_lines(report: Report, style: _Style) -> list[str]:
    config_id = report.config.config_id
    lines = [
        style.bold("Metrics that moved")
        + f' (relaygate_* series; label config="{config_id}" not repeated)'
    ]
    if not report.real_waits and any(r.waited_s for r in report.requests):
        lines.append(
            "  (waits were cut short: the *_duration_seconds series show less time than in "
            "production,"
        )
        lines.append("  and the gateway overhead of a request that waited reads 0)")
    if not report.metrics:
        lines.append("  none")
        return lines
    families: dict[str, list[MetricDelta]] = {}
    for delta in report.metrics:
        families.setdefault(delta.family, []).append(delta)
    order = sorted(families, key=lambda name: families[name][0].kind == "histogram")
    for name in order:
        deltas = families[name]
        first = deltas[0]
        shown = name + "_total" if first.kind == "counter" else name
        doc = f"  {style.dim(first.documentation)}" if first.documentation else ""
        lines.append(f"  {shown}{doc}")
        rows: dict[tuple[tuple[str, str], ...], dict[str, float]] = {}
        for delta in deltas:
            labels = tuple(
                (k, v) for k, v in delta.labels if not (k == "config" and v == config_id)
            )
            suffix = delta.sample.removeprefix(name)
            rows.setdefault(labels, {})[suffix] = delta.delta
        table: list[list[str]] = []
        seconds = name.endswith("_seconds")
        for labels, values in rows.items():
            label_text = " ".join(f"{k}={v}" for k, v in labels) or "(no labels)"
            if first.kind == "histogram":
                total = values.get("_sum", 0.0)
                if not seconds:
                    total_text = _number_text(total)
                elif abs(total) < 0.01:
                    total_text = f"{total:+.2g} s"
                else:
                    total_text = f"{total:+.3f} s"
                value = f"count {_number_text(values.get('_count', 0.0))}, sum {total_text}"
            else:
                value = _number_text(sum(values.values()))
            table.append([label_text, value])
        lines += _table(table, indent="    ")
    return lines


def format_report(report: Report, color: bool = False) -> str:
    """The plain-text report of a rehearsal; ``color`` adds ANSI colours (for terminals)."""
    style = _Style(color)
    lines = _header(report, style)
    if report.notes:
        lines += ["", style.bold("Notes")] + [f"  - {note}" for note in report.notes]
    lines += ["", *_request_lines(report, style), "", *_summary_lines(report, style)]
    if report.internal_errors or report.telemetry_errors:
        lines.append(style.bad("  gateway problems:"))
        lines += [f"    internal error: {error}" for error in report.internal_errors]
        if report.telemetry_errors:
            lines.append(f"    telemetry errors swallowed: {report.telemetry_errors}")
    lines += ["", *_metric_lines(report, style)]
    return "\n".join(lines) + "\n"


# --- command line ------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 1 <= value <= MAX_REQUESTS:
        raise argparse.ArgumentTypeError(f"expected an integer in 1..{MAX_REQUESTS}, got {text!r}")
    return value


def _deadline(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected milliseconds, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected milliseconds >= 1, got {text!r}")
    return value


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
        type=_positive_int,
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
        type=_deadline,
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


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="relaygate rehearse")
    add_rehearse_arguments(parser)
    return run_rehearse(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(_main())
