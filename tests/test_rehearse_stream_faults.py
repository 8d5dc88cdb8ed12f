"""The built-in rehearsals of slow first tokens, stalls, content refusals and a flapping
primary, run against a fallback config with and without the streaming deadlines."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from relaygate.rehearse import BUILTIN_SCENARIOS, format_report, load_rehearsal_config, rehearse
from tests.test_rehearse import request_rows, routes, section, summary

DEADLINE_MS = 500
"""The primary's first-token and stream-idle timeouts where the config sets them."""


def fallback_config(recover_streams: bool = True, **primary: Any) -> dict[str, Any]:
    """A primary (with ``primary`` settings) falling back to a backup."""
    return {
        "strategy": {"mode": "fallback", "recover_streams": recover_streams},
        "targets": [
            {"name": "primary", "provider": "openai", "api_key": "sk-p", **primary},
            {"name": "backup", "provider": "openai", "api_key": "sk-b"},
        ],
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., str]:
    """The printed report of a built-in scenario on a fallback config whose primary has the
    given settings (each distinct run once)."""
    directory = tmp_path_factory.mktemp("rehearse-streams")
    cache: dict[str, str] = {}

    def report(
        scenario: str, *, requests: int | None = None, recover_streams: bool = True, **primary: Any
    ) -> str:
        key = json.dumps([scenario, requests, recover_streams, primary], sort_keys=True)
        if key not in cache:
            path = directory / f"config-{len(cache)}.json"
            path.write_text(json.dumps(fallback_config(recover_streams, **primary)))
            run = rehearse(
                load_rehearsal_config(path),
                BUILTIN_SCENARIOS[scenario],
                requests=requests,
                deadline_ms=1000,
            )
            cache[key] = format_report(run)
        return cache[key]

    return report


def test_a_slow_first_token_falls_back_under_first_token_timeout(
    run: Callable[..., str],
) -> None:
    report = run("slow-first-token", first_token_timeout=DEADLINE_MS)
    assert routes(report) == ["config.targets[0]:timeout>config.targets[1]:200"] * 3
    assert [row[2] for row in request_rows(report)] == ["backup"] * 3
    assert "first_token_timeout 500 ms" in "\n".join(section(report, "Targets"))


def test_without_first_token_timeout_the_report_says_the_late_token_is_waited_for(
    run: Callable[..., str],
) -> None:
    report = run("slow-first-token", requests=1)
    assert routes(report) == ["config.targets[0]:200"]
    assert "primary has no first_token_timeout: a late first token is waited for" in report


def test_a_stall_midway_is_counted_as_stream_idle_and_recovered_by_the_backup(
    run: Callable[..., str],
) -> None:
    report = run("stall-midway", stream_idle_timeout=DEADLINE_MS)
    assert summary(report, "requests") == "2: 2 ok, 0 failed, 0 with a stream error"
    assert [row[2] for row in request_rows(report)] == ["backup"] * 2
    story = "config.targets[0]:stream_idle>config.targets[1]:200(recovered@"
    assert sum(story in line for line in section(report, "Requests")) == 2
    assert "stream_idle 2" in "\n".join(section(report, "Summary"))
    assert "reason=stream_idle  +2" in report


def test_a_stall_midway_without_recovery_ends_each_stream_with_an_error(
    run: Callable[..., str],
) -> None:
    report = run("stall-midway", stream_idle_timeout=DEADLINE_MS, recover_streams=False)
    assert summary(report, "requests") == "2: 0 ok, 0 failed, 2 with a stream error"
    lines = section(report, "Requests")
    assert sum("3 chunks, then stream error" in line for line in lines) == 2
    assert "no data from upstream for 0.5s" in "\n".join(lines)
    assert "reason=stream_idle  +2" in report


def test_without_an_idle_bound_the_report_says_a_stall_is_held(run: Callable[..., str]) -> None:
    report = run("stall-midway", requests=1)
    assert "primary has no stream_idle_timeout or request_timeout" in report
    assert summary(report, "requests") == "1: 0 ok, 0 failed, 1 with a stream error"


def test_a_content_filter_refusal_is_a_400_from_the_primary(run: Callable[..., str]) -> None:
    report = run("content-filter")
    assert all(route.startswith("config.targets[0]:400") for route in routes(report))


def test_a_flapping_primary_fails_every_other_answer(run: Callable[..., str]) -> None:
    report = run("flapping-primary", retry={"attempts": 1})
    assert routes(report) == ["config.targets[0]:503,200"] * 6


def test_streaming_faults_on_plain_requests_get_a_note(tmp_path: Path) -> None:
    path = tmp_path / "fallback.json"
    path.write_text(json.dumps(fallback_config()))
    report = format_report(
        rehearse(
            load_rehearsal_config(path),
            BUILTIN_SCENARIOS["stall-midway"],
            requests=1,
            stream=False,
        )
    )
    assert "stall_after_chunks only affects streamed requests (use --stream)" in report
