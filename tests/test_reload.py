"""The reloader on its own: swap on success, refusal that keeps the old gateway, what only a
restart applies, and the file watch's change detection."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from relaygate.app import create_app
from relaygate.config.server import parse_server_config
from relaygate.exporters.prometheus import GatewayMetrics
from relaygate.gateway import GatewayDeps
from relaygate.reload import Reloader, restart_only_changes
from relaygate.telemetry import Telemetry


def config(host: str, **extra: Any) -> dict[str, Any]:
    return {
        "configs": {"prod": {"provider": "openai", "api_key": "sk-x", "custom_host": host}},
        "default_config": "prod",
        **extra,
    }


def app_on(path: Path) -> Any:
    telemetry = Telemetry(metrics=GatewayMetrics(CollectorRegistry()))
    return create_app(path, GatewayDeps(telemetry=telemetry), reload_from=path)


def metric(app: Any, name: str, labels: dict[str, str] | None = None) -> float | None:
    value: float | None = app.state.gateway.telemetry.metrics.registry.get_sample_value(
        name, labels or {}
    )
    return value


def test_a_valid_file_swaps_in_a_new_gateway_sharing_what_outlives_configs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "relaygate.yaml"
    path.write_text(yaml.safe_dump(config("http://a.test/v1")))
    app = app_on(path)
    first = app.state.gateway
    path.write_text(yaml.safe_dump(config("http://b.test/v1")))
    reloader: Reloader = app.state.reloader
    with capture_logs() as logs:
        outcome = reloader.reload("api")
    assert outcome.ok
    new = app.state.gateway
    assert new is not first
    assert new.configs.known_configs()[0].targets[0].custom_host == "http://b.test/v1"
    assert new.telemetry is first.telemetry
    assert new.loads is first.loads
    # Circuit breaker state is the gateway's, kept per endpoint: it survives the reload,
    # and only the new gateway reports transitions.
    assert new.circuits is first.circuits
    assert first.circuits._listeners == [new._circuit_listener]
    assert new.upstream() is first.upstream()
    assert [entry["event"] for entry in logs] == ["config_reloaded"]
    assert logs[0]["generation"] == 1
    assert metric(app, "relaygate_config_reloads_total", {"result": "ok"}) == 1
    assert metric(app, "relaygate_config_generation") == 1


def test_an_invalid_file_is_refused_in_one_line_and_the_gateway_stays(tmp_path: Path) -> None:
    path = tmp_path / "relaygate.yaml"
    path.write_text(yaml.safe_dump(config("http://a.test/v1")))
    app = app_on(path)
    first = app.state.gateway
    broken = config("http://a.test/v1")
    broken["configs"]["prod"]["provider"] = "opnai"
    broken["limits"] = {"max_body_bytes": -1}
    path.write_text(yaml.safe_dump(broken))
    with capture_logs() as logs:
        outcome = app.state.reloader.reload("sighup")
    assert not outcome.ok
    assert app.state.gateway is first
    assert [entry["event"] for entry in logs] == ["config_reload_refused"]
    error = logs[0]["error"]
    assert "\n" not in error
    assert "limits.max_body_bytes" in error
    assert metric(app, "relaygate_config_reloads_total", {"result": "refused"}) == 1


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "relaygate.yaml"
    path.write_text(yaml.safe_dump(config("http://a.test/v1")))
    app = app_on(path)
    path.unlink()
    with capture_logs() as logs:
        assert not app.state.reloader.reload("file").ok
    assert logs[0]["event"] == "config_reload_refused"


def test_settings_read_at_start_are_named_when_a_reload_changes_them() -> None:
    old = parse_server_config(config("http://a.test/v1"))
    new = parse_server_config(
        config(
            "http://b.test/v1",
            listen={"port": 9999},
            limits={"max_connections": 10, "max_body_bytes": 100},
        )
    )
    assert restart_only_changes(old, new) == ["listen", "limits.max_connections"]
    assert restart_only_changes(old, old) == []


def test_the_watch_reports_a_change_once_the_file_has_stayed_the_same(tmp_path: Path) -> None:
    path = tmp_path / "relaygate.yaml"
    path.write_text(yaml.safe_dump(config("http://a.test/v1")))
    reloader: Reloader = app_on(path).state.reloader
    assert not reloader.changed()
    path.write_text(yaml.safe_dump(config("http://b.test/v1/")))
    os.utime(path, ns=(1, 1))
    assert not reloader.changed()  # seen changing: wait one more look
    assert reloader.changed()  # the same as last time: settled
    assert not reloader.changed()
