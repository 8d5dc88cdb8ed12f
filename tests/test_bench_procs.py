"""The benchmark harness's process helpers: the CPU reading
(:func:`benchmarks.procs.tree_cpu_seconds`) and the environment benchmark processes run in
(:func:`benchmarks.procs.python_env`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.procs import CLK_TCK, python_env, tree_cpu_seconds

SPIN = """
import sys, time
while time.process_time() < {seconds}:
    pass
print("spun", flush=True)
sys.stdin.read()
"""


def _spinning(seconds: float) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", SPIN.format(seconds=seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline() == "spun\n"
    return child


def test_a_live_process_cpu_is_read_finer_than_a_clock_tick() -> None:
    child = _spinning(0.123)
    try:
        spent = tree_cpu_seconds(child.pid)
    finally:
        child.communicate("")
    # The child's own clock said 0.123 s before it stopped spinning; interpreter start-up
    # adds a little. Ticks would give a multiple of 1/CLK_TCK.
    assert 0.123 <= spent < 0.5
    assert abs(spent * CLK_TCK - round(spent * CLK_TCK)) > 1e-6


def test_descendants_are_counted() -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys\n"
            f"child = subprocess.Popen([sys.executable, '-c', {SPIN.format(seconds=0.2)!r}],"
            " stdout=sys.stdout, stdin=sys.stdin)\n"
            "child.wait()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline() == "spun\n"
        assert tree_cpu_seconds(parent.pid) >= 0.2
    finally:
        parent.communicate("")


def test_a_benchmark_process_runs_the_given_tree_and_ignores_the_callers_otel_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("RELAYGATE_KEPT", "yes")
    env = python_env(Path("/tmp/tree"), RELAYGATE_CONFIG="/tmp/c.json")
    assert not [name for name in env if name.startswith("OTEL_")]
    assert env["PYTHONPATH"] == "/tmp/tree"
    assert env["RELAYGATE_CONFIG"] == "/tmp/c.json"
    assert env["RELAYGATE_KEPT"] == "yes"
