"""The stream scenarios' harness (benchmarks/streams.py) runs end to end and writes results.

A seconds-long ``--quick`` run with tiny sizes drives every code path (the stamped upstream,
the load generator, relaygate and the floor, the report); the assertions are about the shape
and the correctness of what it wrote, never about timings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.stream_load import MIX, mix_sequence
from benchmarks.stream_upstream import parse_stream_path

REPO = Path(__file__).resolve().parent.parent


def test_mix_sequence_keeps_the_issue_proportions() -> None:
    kinds = Counter(mix_sequence(2000))
    assert kinds == {kind: share * 100 for kind, share in MIX}
    assert dict(kinds) == {"stream": 1600, "retry": 200, "fallback": 100, "client_error": 100}


@pytest.mark.parametrize(
    ("path", "parsed"),
    [
        (b"/s/600/50/v1/chat/completions", (600, 0.05)),
        (b"/s/1000/0/v1/chat/completions", (1000, 0.0)),
        (b"/fast/v1/chat/completions", None),
        (b"/s/x/50/v1", None),
    ],
)
def test_stream_paths_name_count_and_interval(path: bytes, parsed: object) -> None:
    assert parse_stream_path(path) == parsed


@pytest.mark.gateway_process
def test_quick_run_writes_well_formed_results(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "benchmarks.streams", "--quick", "--no-pin", "--no-readme"]
    argv += ["--results-dir", str(tmp_path), "--run-dir", str(tmp_path / "run")]
    argv += ["--counts", "4", "--duration", "2.5", "--long-chunks", "50", "--long-repeats", "2"]
    argv += ["--mix-rate", "20", "--mix-seconds", "1"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    results = json.loads((tmp_path / "streams-quick.json").read_text())
    markdown = (tmp_path / "streams-quick.md").read_text()
    assert all(check["ok"] for check in results["verification"]), results["verification"]

    open_rows = {row["system"]: row for row in results["open_streams"]}
    assert set(open_rows) == {"direct", "relaygate", "floor"}
    for row in open_rows.values():
        assert "failed" not in row
        assert row["errors"] == {}
        assert row["chunks_received"] == row["chunks_expected"] == 4 * 50
        assert row["delay_samples"] > 0
    for name in ("relaygate", "floor"):
        assert open_rows[name]["rss_open_mib"] > 0
        assert open_rows[name]["cpu_us_per_chunk"] is not None

    long_rows = {row["system"]: row for row in results["long_streams"]}
    assert set(long_rows) == {"direct", "relaygate", "floor"}
    assert all(row["chunks_received"] == 2 * 50 for row in long_rows.values())

    mixed = {row["system"]: row for row in results["mixed"]}
    assert set(mixed) == {"direct", "relaygate", "floor"}
    relaygate = mixed["relaygate"]["kinds"]
    assert sum(kind["sent"] for kind in relaygate.values()) == 20
    for kind in ("stream", "retry", "fallback"):
        assert relaygate[kind]["ok"] == relaygate[kind]["sent"], relaygate[kind]
    assert set(relaygate["client_error"]["status"]) <= {"4xx"}

    assert results["goals"]
    assert all(goal["verdict"] in ("MET", "MISSED") for goal in results["goals"])
    for heading in ("#### Goals", "#### Many open streams", "#### Long streams", "#### Mixed"):
        assert heading in markdown
