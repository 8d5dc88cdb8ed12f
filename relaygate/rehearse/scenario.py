"""Rehearsal scenarios: which faults each simulated upstream produces, the built-in
scenarios, and scenario files.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from relaygate.mock import Fault, MockSettings, parse_faults

DEFAULT_SCENARIO = "primary-down"
"""The scenario run when ``--scenario`` is not given."""


DEFAULT_REQUESTS = 5
"""Requests a scenario file sends when it does not say."""


MAX_REQUESTS = 10_000
"""Upper bound of the number of requests of one rehearsal."""


class ScenarioError(ValueError):
    """A scenario that cannot be run: unreadable, malformed, or naming no target of the config.

    The message names the offending field (``targets.primary.script: ...``).
    """


@dataclass(frozen=True)
class TargetFaults:
    """What one simulated upstream does, as :class:`~relaygate.mock.MockSettings`.

    ``spec`` is the fault script in :func:`~relaygate.mock.parse_faults` syntax,
    consumed one answer per upstream request; ``loop`` repeats it. Once the script is used up
    (or when there is none), an answer fails with ``error_status`` with probability
    ``error_rate`` (seeded per rehearsal) and succeeds otherwise. ``latency_ms`` is added to
    every answer; ``stream_chunks`` is the number of content chunks of a streamed answer.
    ``recover_at_ms``: from this scenario time on (see ``Scenario.interval_ms``) the script
    is dropped and the upstream recovers.
    """

    spec: str = ""
    loop: bool = False
    error_rate: float = 0.0
    error_status: int = 503
    latency_ms: float = 0.0
    stream_chunks: int = 5
    recover_at_ms: float | None = None

    @property
    def script(self) -> tuple[Fault, ...]:
        """The parsed fault script."""
        return parse_faults(self.spec)

    def settings(self, name: str, seed: int | None, hang_s: float = 3600.0) -> MockSettings:
        """The simulator settings of a target labelled ``name``; ``ValueError`` if invalid.

        ``hang_s`` bounds how long a hang or a stalled stream of the simulator lasts.
        """
        return MockSettings(
            name=name,
            latency_ms=self.latency_ms,
            error_rate=self.error_rate,
            error_status=self.error_status,
            seed=seed,
            script=self.script,
            loop_script=self.loop,
            stream_chunks=self.stream_chunks,
            hang_s=hang_s,
        )

    @property
    def hangs(self) -> bool:
        """Whether the script makes the upstream hang (never answer)."""
        return any(fault.hang for fault in self.script)

    @property
    def cuts_streams(self) -> bool:
        """Whether the script cuts streamed answers (which only streamed requests notice)."""
        return any(fault.cut_after_chunks is not None for fault in self.script)

    @property
    def delays_first_token(self) -> bool:
        """Whether the script sends a stream's first token late (streamed requests only)."""
        return any(fault.first_token_delay_ms > 0 for fault in self.script)

    @property
    def stalls_streams(self) -> bool:
        """Whether the script stalls streamed answers (streamed requests only)."""
        return any(fault.stall_after_chunks is not None for fault in self.script)

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
        if self.recover_at_ms is not None:
            text += f"; healthy from t={self.recover_at_ms / 1000:g} s"
        return text


@dataclass(frozen=True)
class Scenario:
    """A scripted rehearsal: faults per target and the requests to send.

    ``targets`` maps a target key (an ``int`` index in config order, or a target's name or
    path) to its faults; targets not named are healthy. ``stream`` makes every request a
    streamed one. ``interval_ms`` is the scenario time between two requests: request ``n``
    is sent at ``t = (n - 1) * interval_ms``, the clock circuit breakers and
    ``recover_at_ms`` run on (requests are still sent one after the other at once, so a
    minute-long outage rehearses in seconds); 0 leaves the breakers on the real clock.
    """

    name: str
    description: str = ""
    requests: int = DEFAULT_REQUESTS
    stream: bool = False
    targets: Mapping[int | str, TargetFaults] = field(default_factory=dict)
    interval_ms: float = 0.0


_SETTINGS_PROBLEM = re.compile(r"MockSettings\.(?P<field>\w+) (?P<message>.*)", re.DOTALL)
_SCENARIO_KEYS = frozenset({"name", "description", "requests", "stream", "targets", "interval_ms"})
_FAULT_KEYS = frozenset(
    {"script", "loop", "error_rate", "error_status", "latency_ms", "stream_chunks", "recover_at_ms"}
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
        ("recover_at_ms", False),
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
    interval = _number(data.get("interval_ms", 0), "interval_ms")
    if interval < 0:
        raise ScenarioError("interval_ms: must be >= 0")
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
        interval_ms=interval,
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
        "reached the client), then recovers: its retries continue the first answer.",
        "requests": 3,
        "stream": True,
        "targets": {0: "200@cut_after_chunks=2,200@cut_after_chunks=0"},
    },
    {
        "name": "slow-first-token",
        "description": "Streamed requests. The first target sends its headers and its "
        "opening chunk at once, but its first token 2 s later: a first_token_timeout below "
        "that cuts the attempt before anything reached the client, and fallback answers.",
        "requests": 3,
        "stream": True,
        "targets": {0: {"script": "200@first_token_delay_ms=2000", "loop": True}},
    },
    {
        "name": "stall-midway",
        "description": "Streamed requests. The first target sends three chunks (the client "
        "already has bytes), then nothing, keeping the connection open: stream_idle_timeout "
        "(else request_timeout) ends its stream (reason stream_idle). With recover_streams (on "
        "by default for fallback) the next target takes over once it has repeated the "
        "delivered text; without, the client gets an error event.",
        "requests": 2,
        "stream": True,
        "targets": {0: {"script": "200@stall_after_chunks=3", "loop": True}},
    },
    {
        "name": "content-filter",
        "description": "The first target refuses every request with a 400 whose error code "
        "is content_filter, as a provider's content-safety system does.",
        "requests": 3,
        "targets": {0: {"script": "content_filter", "loop": True}},
    },
    {
        "name": "flapping-primary",
        "description": "The first target flaps: it fails every other answer with 503 and "
        "answers the rest.",
        "requests": 6,
        "targets": {0: {"script": "503,200", "loop": True}},
    },
    {
        "name": "primary-outage",
        "description": "A request every 4 s of scenario time; the first target answers 503 "
        "to everything for the first 60 s, then recovers. Its circuit breaker opens, lets a "
        "probe through after each cooldown, and closes on the first probe after the "
        "recovery.",
        "requests": 25,
        "interval_ms": 4000,
        "targets": {0: {"script": "503", "loop": True, "recover_at_ms": 60_000}},
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
