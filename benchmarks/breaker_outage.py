"""The circuit breaker under a scripted outage: a minute-long primary outage, with and without.

A request every 4 s (scenario time) goes to a ``fallback`` config whose primary retries twice
(three calls per request) before the backup; the primary answers 503 to everything for 60 s,
then recovers. The run is ``relaygate rehearse --scenario primary-outage`` (real fault
simulators on loopback, the real pipeline; only scenario time is compressed, so the minute
takes a second or two), once with the server's default circuit breaker and once with
``breaker: {enabled: false}``. It prints both reports' outage summaries
(:mod:`relaygate.rehearse.outage`), the breaker run's full report, and checks what a breaker
must achieve: the primary sees a handful of attempts while it is down, every request is
answered by the backup, and traffic returns to the primary within one cooldown (30 s) of the
recovery. Exit status 1 if a check fails.

Run: ``python -m benchmarks.breaker_outage [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from relaygate.rehearse.driver import rehearse
from relaygate.rehearse.outage import OutageSummary, outage_summary
from relaygate.rehearse.report import format_report
from relaygate.rehearse.scenario import BUILTIN_SCENARIOS
from relaygate.rehearse.target import load_rehearsal_config

COOLDOWN_S = 30.0
"""The default breaker's cooldown: traffic must return within one of it."""

HANDFUL = 8
"""Most upstream attempts the dead primary may get during the outage with the breaker."""

CONFIG: dict[str, Any] = {
    "strategy": {"mode": "fallback"},
    "targets": [
        {
            "name": "primary",
            "provider": "openai",
            "api_key": "sk-primary",
            "override_params": {"model": "gpt-4o-mini"},
            "retry": {"attempts": 2},
        },
        {
            "name": "backup",
            "provider": "openai",
            "api_key": "sk-backup",
            "override_params": {"model": "gpt-4o-mini"},
        },
    ],
}


def run(breaker: bool) -> tuple[OutageSummary, str]:
    """Rehearse the outage with the default breaker on or off: its summary and report."""
    server = {"configs": {"outage": CONFIG}, "default_config": "outage"}
    if not breaker:
        server["breaker"] = {"enabled": False}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "outage.json"
        path.write_text(json.dumps(server))
        report = rehearse(load_rehearsal_config(path), BUILTIN_SCENARIOS["primary-outage"])
    return outage_summary(report), format_report(report)


def checks(summary: OutageSummary) -> list[tuple[str, bool]]:
    """The acceptance checks of the breaker run."""
    after = summary.back_after_s
    return [
        (
            f"primary attempts while down <= {HANDFUL}",
            summary.attempts_while_down <= HANDFUL,
        ),
        (
            "every request while down answered by the backup",
            summary.rescued == summary.requests_while_down,
        ),
        (
            f"traffic back within one cooldown ({COOLDOWN_S:g} s) of the recovery",
            after is not None and after <= COOLDOWN_S,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    """Run both rehearsals, print the summaries and the checks; 1 if a check fails."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="also write the output to this file")
    args = parser.parse_args(argv)
    with_breaker, report = run(True)
    without, _ = run(False)
    lines = ["# Primary outage, 60 s, a request every 4 s (scenario time)", ""]
    lines += ["## With the default circuit breaker", *with_breaker.lines(), ""]
    lines += ["## Without a circuit breaker (breaker: {enabled: false})", *without.lines(), ""]
    results = checks(with_breaker)
    lines += ["## Checks", *(f"{'ok  ' if ok else 'FAIL'} {name}" for name, ok in results), ""]
    lines += ["## The breaker run's rehearsal report", "", report]
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0 if all(ok for _, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
