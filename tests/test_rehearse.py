"""``relaygate rehearse``: scripted faults against a user's config, and the printed report.

Each rehearsal really runs: fault simulators on loopback, the gateway in-process, the report
as printed. Built-in scenario reports are produced once per module and read by several tests.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter

from relaygate.rehearse import (
    BUILTIN_SCENARIOS,
    ScenarioError,
    TargetFaults,
    add_rehearse_arguments,
    format_report,
    load_rehearsal_config,
    load_scenario,
    metric_deltas,
    metric_values,
    rehearse,
    run_rehearse,
    scenario_from_dict,
)

TIMEOUT_MS = 1000
"""The primary's request_timeout where a scenario needs one: far above a healthy loopback
answer, even on a busy machine."""

TIMED = frozenset({"rate-limited-primary", "slow-primary"})
"""Built-in scenarios rehearsed with ``TIMEOUT_MS`` set on the primary."""

REQUESTS = {"slow-primary": 2}
"""Fewer requests than the scenario's default where each one waits out a timeout."""

FALLBACK_CONFIG: dict[str, Any] = {
    "strategy": {"mode": "fallback"},
    "targets": [
        {
            "name": "primary",
            "provider": "openai",
            "api_key": "sk-primary",
            "override_params": {"model": "gpt-4o-mini"},
            "retry": {"attempts": 2, "use_retry_after_header": True},
        },
        {
            "name": "backup",
            "provider": "together-ai",
            "api_key": "sk-backup",
            "override_params": {"model": "llama-3-8b"},
        },
    ],
}

SERVER_CONFIG = """\
default_config: prod
configs:
  prod:
    strategy: {mode: fallback}
    targets:
      - {name: main, provider: openai, override_params: {model: gpt-4o}}
      - {name: spare, provider: groq, override_params: {model: llama3}}
  canary:
    strategy: {mode: fallback}
    targets:
      - {name: canary-main, provider: openai, retry: {attempts: 1}}
      - {name: canary-spare, provider: mistral-ai}
providers:
  openai: {api_key: "${REHEARSE_TEST_UNSET_OPENAI_KEY}"}
auth: {api_keys: [gw-secret]}
"""


# --- helpers -------------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    """``argv`` parsed as the ``relaygate rehearse`` command line."""
    parser = argparse.ArgumentParser(prog="relaygate rehearse")
    add_rehearse_arguments(parser)
    return parser.parse_args(argv)


def section(report: str, title: str) -> list[str]:
    """The lines of one report section (from its title to the next blank line)."""
    lines = report.splitlines()
    start = lines.index(next(line for line in lines if line.startswith(title)))
    out: list[str] = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        out.append(line)
    return out


def request_rows(report: str) -> list[list[str]]:
    """The cells of each request line (number first, route story last)."""
    rows = section(report, "Requests")[1:]
    return [row.split() for row in rows if row.split()[0].isdigit()]


def routes(report: str) -> list[str]:
    """The route story of each request, in order."""
    return [row[-1] for row in request_rows(report)]


def summary(report: str, key: str) -> str:
    """The text after ``key:`` on its summary line."""
    for line in section(report, "Summary"):
        if line.strip().startswith(f"{key}:"):
            return line.strip()[len(key) + 1 :].strip()
    raise AssertionError(f"no summary line {key!r} in:\n{report}")


def metric_rows(report: str, family: str) -> dict[str, str]:
    """``labels -> value`` rows printed under ``family`` in "Metrics that moved"."""
    lines = report.split("Metrics that moved", 1)[1].splitlines()[1:]
    rows: dict[str, str] = {}
    inside = False
    for line in lines:
        if line.startswith("  ") and not line.startswith("    "):
            inside = line.split()[0] == family
        elif inside and line.strip():
            labels, _, value = line.strip().rpartition("  ")
            rows[labels.strip()] = value.strip()
    return rows


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``FALLBACK_CONFIG`` as a Portkey config file."""
    path = tmp_path_factory.mktemp("rehearse") / "fallback.json"
    path.write_text(json.dumps(FALLBACK_CONFIG))
    return path


@pytest.fixture(scope="module")
def timed_config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``FALLBACK_CONFIG`` with ``request_timeout: TIMEOUT_MS`` on the primary."""
    config = json.loads(json.dumps(FALLBACK_CONFIG))
    config["targets"][0]["request_timeout"] = TIMEOUT_MS
    path = tmp_path_factory.mktemp("rehearse") / "fallback.json"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def builtin(config_file: Path, timed_config_file: Path) -> Callable[[str], str]:
    """The printed report of a built-in scenario on the fallback config (run once)."""
    cache: dict[str, str] = {}

    def run(name: str) -> str:
        if name not in cache:
            loaded = load_rehearsal_config(timed_config_file if name in TIMED else config_file)
            scenario = BUILTIN_SCENARIOS[name]
            cache[name] = format_report(rehearse(loaded, scenario, requests=REQUESTS.get(name)))
        return cache[name]

    return run


def write(tmp_path: Path, name: str, text: str) -> Path:
    """Write ``text`` (dedented) to ``tmp_path / name``."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# --- primary-down ----------------------------------------------------------------------------


def test_primary_down_retries_the_primary_then_falls_back_on_every_request(
    builtin: Callable[[str], str],
) -> None:
    """The server's default circuit breaker opens after five failed attempts in a row, which
    ends the second request's retries; the third skips the primary."""
    report = builtin("primary-down")
    expected = [
        "config.targets[0]:503,503,503>config.targets[1]:200",
        "config.targets[0]:503,503>config.targets[1]:200",
        "config.targets[0]:open>config.targets[1]:200",
    ]
    assert routes(report) == expected, report


def test_primary_down_names_the_backup_as_the_target_that_served_each_request(
    builtin: Callable[[str], str],
) -> None:
    assert [row[1:3] for row in request_rows(builtin("primary-down"))] == [["200", "backup"]] * 3


def test_primary_down_summary_counts_attempts_retries_and_fallbacks(
    builtin: Callable[[str], str],
) -> None:
    report = builtin("primary-down")
    attempts = section(report, "  attempts by target and outcome")
    assert [line.split() for line in attempts[:2]] == [
        [
            "primary",
            "config.targets[0]",
            "5",
            "attempts",
            "status_5xx",
            "5;",
            "skipped",
            "(circuit",
            "open)",
            "1",
        ],
        ["backup", "config.targets[1]", "3", "attempts", "ok", "3"],
    ]
    assert summary(report, "retries") == "3  (primary after status_5xx: 3)"
    assert summary(report, "fallbacks") == (
        "3  (primary -> backup on status_5xx: 2; primary -> backup on circuit_open: 1)"
    )
    assert summary(report, "exhausted requests") == "0"


def test_primary_down_lists_the_fallback_and_retry_series_that_moved(
    builtin: Callable[[str], str],
) -> None:
    report = builtin("primary-down")
    assert metric_rows(report, "relaygate_fallbacks_total") == {
        "from_target=primary to_target=backup reason=status_5xx": "+2",
        "from_target=primary to_target=backup reason=circuit_open": "+1",
    }
    assert metric_rows(report, "relaygate_retries_total") == {
        "target=primary provider=openai model=gpt-4o-mini reason=status_5xx": "+3"
    }
    assert metric_rows(report, "relaygate_requests_total") == {
        "operation=chat status_class=2xx outcome=ok": "+3"
    }


def test_metrics_that_did_not_move_are_not_listed(builtin: Callable[[str], str]) -> None:
    report = builtin("primary-down")
    moved = report.split("Metrics that moved", 1)[1]
    assert "relaygate_timeouts_total" not in moved
    assert "relaygate_exhausted_requests_total" not in moved
    assert "relaygate_requests_in_flight" not in moved


# --- rate-limited-primary ----------------------------------------------------------------------


def test_rate_limited_primary_routes_follow_the_scripted_429s_then_timeouts_then_recovery(
    builtin: Callable[[str], str],
) -> None:
    report = builtin("rate-limited-primary")
    assert routes(report) == [
        "config.targets[0]:429,429,429>config.targets[1]:200",
        "config.targets[0]:timeout>config.targets[1]:200",
        "config.targets[0]:timeout>config.targets[1]:200",
        "config.targets[0]:200",
    ], report


def test_rate_limited_primary_shows_the_retry_after_waits_the_gateway_decided_on(
    builtin: Callable[[str], str],
) -> None:
    rows = request_rows(builtin("rate-limited-primary"))
    # Two retries, each after the upstream's Retry-After: 1 -> the gateway waited 2 s in all.
    assert rows[0][-3:-1] == ["2", "s"]
    assert "waits are cut to 5 ms" in builtin("rate-limited-primary")


def test_rate_limited_primary_counts_the_timeouts_of_the_primary(
    builtin: Callable[[str], str],
) -> None:
    report = builtin("rate-limited-primary")
    assert summary(report, "timeouts") == "2  (primary: 2)"
    assert metric_rows(report, "relaygate_timeouts_total") == {
        "target=primary provider=openai model=gpt-4o-mini": "+2"
    }


# --- slow-primary ------------------------------------------------------------------------------


def test_slow_primary_times_out_and_falls_back_on_each_request(
    builtin: Callable[[str], str],
) -> None:
    report = builtin("slow-primary")
    assert routes(report) == ["config.targets[0]:timeout>config.targets[1]:200"] * 2, report
    assert summary(report, "fallbacks") == "2  (primary -> backup on timeout: 2)"


# --- stream-cut --------------------------------------------------------------------------------


def test_stream_cut_midway_is_recovered_by_the_retries_of_the_primary(
    builtin: Callable[[str], str],
) -> None:
    report = builtin("stream-cut")
    lines = section(report, "Requests")
    first = lines.index(next(line for line in lines if line.split()[0] == "1"))
    # Cut after two chunks, then before the first byte, then a whole answer whose text
    # repeats the three characters already sent: the client gets the rest.
    story = "config.targets[0]:stream_error,stream_error,200(recovered@3 chars)"
    assert lines[first].endswith(f" {story}"), report
    assert lines[first + 1].strip() == "stream: 8 chunks, complete"
    assert summary(report, "requests") == "3: 3 ok, 0 failed, 0 with a stream error"
    assert summary(report, "retries") == "2  (primary after stream_error: 2)"
    assert routes(report)[1:] == ["config.targets[0]:200"] * 2, report


# --- the command -------------------------------------------------------------------------------


def test_the_command_prints_the_report_and_exits_0(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = run_rehearse(parse([str(config_file), "--requests", "1"]))
    out = capsys.readouterr().out
    assert status == 0
    assert out.startswith(f"relaygate rehearse: scenario 'primary-down' on {config_file}")
    assert routes(out) == ["config.targets[0]:503,503,503>config.targets[1]:200"]
    assert "\x1b[" not in out


def test_requests_that_fail_on_every_target_are_reported_exhausted_and_the_run_exits_0(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = write(
        tmp_path,
        "all-down.yaml",
        """\
        requests: 2
        targets:
          primary: {script: "503", loop: true}
          1: {script: "500", loop: true}
        """,
    )
    status = run_rehearse(parse([str(config_file), "--scenario", str(scenario)]))
    out = capsys.readouterr().out
    assert status == 0
    assert [row[1:5] for row in request_rows(out)] == [["500", "-", "(last:", "backup)"]] * 2
    assert summary(out, "exhausted requests") == "2  (last failure: status_5xx 2)"
    assert "error: mock backup: simulated 500" in out
    assert metric_rows(out, "relaygate_exhausted_requests_total") == {"reason=status_5xx": "+2"}


def test_a_scenario_file_scripts_targets_by_name_and_requests_override_its_count(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = write(
        tmp_path,
        "flap.yaml",
        """\
        name: flapping
        requests: 9
        targets:
          primary: "502,200,503"
        """,
    )
    run_rehearse(parse([str(config_file), "--scenario", str(scenario), "--requests", "2"]))
    out = capsys.readouterr().out
    assert "scenario 'flapping'" in out
    assert routes(out) == ["config.targets[0]:502,200", "config.targets[0]:503,200"]


def test_the_same_seed_gives_the_same_random_faults(config_file: Path) -> None:
    loaded = load_rehearsal_config(config_file)
    flaky = BUILTIN_SCENARIOS["flaky-primary"]
    first = rehearse(loaded, flaky, requests=6, seed=7)
    second = rehearse(loaded, flaky, requests=6, seed=7)
    assert [r.route for r in first.requests] == [r.route for r in second.requests]
    assert any("503" in r.route for r in first.requests)


def test_a_server_config_rehearses_the_named_config_given_by_config_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REHEARSE_TEST_UNSET_OPENAI_KEY", raising=False)
    config = write(tmp_path, "server.yaml", SERVER_CONFIG)
    status = run_rehearse(parse([str(config), "--config-id", "canary", "--requests", "1"]))
    out = capsys.readouterr().out
    assert status == 0
    assert "(config 'canary')" in out
    assert routes(out) == ["config.targets[0]:503,503>config.targets[1]:200"]
    assert "from_target=canary-main to_target=canary-spare reason=status_5xx" in out


def test_unset_environment_variables_of_a_server_config_get_placeholders_and_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REHEARSE_TEST_UNSET_OPENAI_KEY", raising=False)
    config = write(tmp_path, "server.yaml", SERVER_CONFIG)
    status = run_rehearse(parse([str(config), "--requests", "1"]))
    out = capsys.readouterr().out
    assert status == 0
    assert "(config 'prod')" in out
    assert "placeholder values: REHEARSE_TEST_UNSET_OPENAI_KEY" in out


# --- refusals -----------------------------------------------------------------------------------


def test_an_invalid_config_exits_2_naming_the_path_of_the_bad_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = json.loads(json.dumps(FALLBACK_CONFIG))
    bad["targets"][0]["retry"]["attempts"] = 99
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    status = run_rehearse(parse([str(path)]))
    captured = capsys.readouterr()
    assert status == 2
    assert "targets[0].retry.attempts: must be <= 10" in captured.err
    assert captured.out == ""


def test_an_invalid_server_config_exits_2_naming_the_path_inside_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        "server.yaml",
        """\
        default_config:
          strategy: {mode: fallback}
          targets:
            - {provider: openai}
            - {provider: openai, request_timeout: -5}
        """,
    )
    assert run_rehearse(parse([str(path)])) == 2
    assert "default_config.targets[1].request_timeout: must be > 0" in capsys.readouterr().err


def test_a_target_with_a_provider_relaygate_does_not_know_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "unknown.json"
    config = {
        "strategy": {"mode": "fallback"},
        "targets": [{"provider": "openai"}, {"provider": "acme-llm"}],
    }
    path.write_text(json.dumps(config))
    assert run_rehearse(parse([str(path)])) == 2
    assert "\n  targets[1].provider: unknown provider 'acme-llm'" in capsys.readouterr().err


def test_an_unknown_config_id_exits_2_listing_the_named_configs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REHEARSE_TEST_UNSET_OPENAI_KEY", "sk-test")
    config = write(tmp_path, "server.yaml", SERVER_CONFIG)
    assert run_rehearse(parse([str(config), "--config-id", "nope"])) == 2
    assert "no config named 'nope' (configs: prod, canary)" in capsys.readouterr().err


def test_an_unknown_scenario_exits_2_listing_the_built_in_ones(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_rehearse(parse([str(config_file), "--scenario", "meteor-strike"])) == 2
    err = capsys.readouterr().err
    assert "unknown scenario 'meteor-strike'" in err
    assert all(name in err for name in BUILTIN_SCENARIOS)


def test_a_scenario_naming_a_target_the_config_lacks_exits_2(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = write(tmp_path, "s.yaml", 'targets: {tertiary: "503"}\n')
    assert run_rehearse(parse([str(config_file), "--scenario", str(scenario)])) == 2
    err = capsys.readouterr().err
    assert "targets.tertiary: no target with this index, name or path" in err
    assert "0 primary, 1 backup" in err


def test_a_bad_fault_script_in_a_scenario_file_exits_2_naming_the_item(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = write(tmp_path, "s.yaml", 'targets: {primary: "503,teapot"}\n')
    assert run_rehearse(parse([str(config_file), "--scenario", str(scenario)])) == 2
    assert "targets.primary.script: fault #2 ('teapot')" in capsys.readouterr().err


# --- scenarios as data ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("faults", "text"),
    [
        (TargetFaults(), "healthy"),
        (TargetFaults(spec="503", loop=True), "503 on every request"),
        (TargetFaults(spec="503,200", loop=True), "503, 200, repeated"),
        (
            TargetFaults(spec="429@retry_after=1,429@retry_after=1,timeout"),
            "429@retry_after=1 x2, timeout, then healthy",
        ),
        (TargetFaults(error_rate=0.25), "503 with probability 0.25, else healthy"),
        (TargetFaults(spec="502", latency_ms=40), "502, then healthy; every answer +40 ms"),
    ],
)
def test_a_targets_faults_are_described_in_one_line(faults: TargetFaults, text: str) -> None:
    assert faults.describe() == text


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"targets": {0: "503"}, "requets": 3}, "requets: unknown field"),
        ({"requests": 0}, "requests: must be between 1 and"),
        ({"stream": "yes"}, "stream: must be true or false"),
        ({"targets": {0: {"script": "503", "error_rate": 2}}}, "targets.0.error_rate: must be"),
        ({"targets": {0: {"retries": 1}}}, "targets.0.retries: unknown field"),
        ({"targets": ["503"]}, "targets: must map"),
    ],
)
def test_a_malformed_scenario_is_refused_naming_the_field(
    document: dict[str, Any], message: str
) -> None:
    with pytest.raises(ScenarioError, match=message):
        scenario_from_dict(document)


def test_every_built_in_scenario_is_found_by_name() -> None:
    assert {name: load_scenario(name) for name in BUILTIN_SCENARIOS} == dict(BUILTIN_SCENARIOS)


def test_metric_deltas_keep_only_samples_that_changed() -> None:
    registry = CollectorRegistry()
    hits = Counter("relaygate_hits", "Hits.", ("target",), registry=registry)
    other = Counter("unrelated_hits", "Not relaygate's.", registry=registry)
    hits.labels("a").inc()
    before = metric_values(registry)
    hits.labels("a").inc(2)
    hits.labels("b")
    other.inc()
    deltas = metric_deltas(before, metric_values(registry))
    assert [(d.sample, d.labels, d.delta) for d in deltas] == [
        ("relaygate_hits_total", (("target", "a"),), 2.0)
    ]


# --- a fresh gateway's first request --------------------------------------------------------

_COLD_START = """
import asyncio, sys, threading, time


class SlowDisk:
    \"\"\"Makes importing the wire client's transport module take 2 s, as on a cold disk.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name == "aiohttp":
            time.sleep(2)
        return None


sys.meta_path.insert(0, SlowDisk())

import httpx, uvicorn
from relaygate.mock import create_mock_app
from relaygate.transport import AsyncTransport

server = uvicorn.Server(uvicorn.Config(create_mock_app(), host="127.0.0.1", port=0,
                                       log_level="critical", lifespan="off"))
serving = threading.Thread(target=server.run, daemon=True)
serving.start()
deadline = time.monotonic() + 20
while not server.started and time.monotonic() < deadline:
    time.sleep(0.01)
port = server.servers[0].sockets[0].getsockname()[1]
config = {"default_config": {"provider": "openai", "request_timeout": 1000,
                             "custom_host": f"http://127.0.0.1:{port}/v1"}}


async def main() -> None:
    async with httpx.AsyncClient(transport=AsyncTransport(config),
                                 base_url="http://relaygate/v1", timeout=30) as client:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        answer = await client.post("/chat/completions", json=body)
        print("route:", answer.headers.get("x-relaygate-route"))

asyncio.run(main())
# Stop the server and wait for its thread: an interpreter that finalises under a running
# event loop thread may crash on the way out.
server.should_exit = True
serving.join(timeout=20)
"""


def test_the_first_request_of_a_fresh_gateway_is_not_charged_for_loading_the_wire_client() -> None:
    """A fresh process's first attempt must not spend its request_timeout on gateway set-up.

    The wire client's modules load slowly here (2 s, as on a cold or busy machine) and the
    upstream answers at once: the client must see the upstream's 200 within the target's
    1000 ms request_timeout, not a timeout.
    """
    done = subprocess.run(
        [sys.executable, "-c", _COLD_START],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    route = [line for line in done.stdout.splitlines() if line.startswith("route: ")]
    assert route == ["route: config:200"], done.stdout[-2000:]


# --- the summary and the metrics agree -----------------------------------------------------------


def _metric_total(out: str, family: str) -> int:
    return sum(int(value.lstrip("+")) for value in metric_rows(out, family).values())


def test_a_deadline_spent_on_the_primary_is_no_fallback_in_the_summary_or_the_metrics(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = write(
        tmp_path,
        "hangs.yaml",
        """\
        requests: 1
        targets:
          primary: {script: "timeout", loop: true}
        """,
    )
    argv = [str(config_file), "--scenario", str(scenario), "--deadline-ms", "300"]
    assert run_rehearse(parse(argv)) == 0
    out = capsys.readouterr().out
    assert routes(out) == ["config.targets[0]:deadline"]
    assert summary(out, "fallbacks") == "0"
    assert metric_rows(out, "relaygate_fallbacks_total") == {}


@pytest.mark.parametrize("name", ["primary-down", "rate-limited-primary"])
def test_the_summary_counts_what_the_metrics_count(
    builtin: Callable[[str], str], name: str
) -> None:
    out = builtin(name)
    for key, family in (
        ("fallbacks", "relaygate_fallbacks_total"),
        ("retries", "relaygate_retries_total"),
        ("timeouts", "relaygate_timeouts_total"),
    ):
        assert int(summary(out, key).split()[0]) == _metric_total(out, family), key
