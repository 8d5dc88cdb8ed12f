"""``relaygate rehearse``: run a routing config against scripted upstream faults and report.

A rehearsal takes a user's routing config (a Portkey-format config file, or a server config
file and one of its configs), starts one fault simulator (:mod:`relaygate.mock`)
per target on a free loopback port, points every target's ``custom_host`` at its simulator
and keeps everything else of the config (strategy, retry, timeouts, weights, conditions,
override params, provider defaults, client auth). It then sends a number of chat requests,
one after the other, through the gateway in-process (:class:`relaygate.AsyncTransport`,
the same pipeline as the server) and prints what happened: one line per request (status,
served-by target, route story, latency) and a summary (attempts per target by outcome,
retries, timeouts, fallbacks, exhausted requests, and the ``relaygate_*`` Prometheus series
that moved).

A :class:`Scenario` says which faults each simulated upstream produces: a script in the
:func:`~relaygate.mock.parse_faults` syntax (consumed one answer per upstream
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

from relaygate.rehearse.cli import add_rehearse_arguments, run_rehearse
from relaygate.rehearse.driver import DEFAULT_DEADLINE_MS, SHORT_WAIT_S, rehearse
from relaygate.rehearse.report import format_report
from relaygate.rehearse.results import (
    MetricDelta,
    Report,
    RequestResult,
    metric_deltas,
    metric_values,
)
from relaygate.rehearse.scenario import (
    BUILTIN_SCENARIOS,
    DEFAULT_SCENARIO,
    Scenario,
    ScenarioError,
    TargetFaults,
    load_scenario,
    scenario_from_dict,
)
from relaygate.rehearse.target import RehearsalConfig, load_rehearsal_config

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
