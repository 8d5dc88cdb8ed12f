"""The compose setup hangs together: files exist, services find each other, configs are valid.

Docker is not needed: the compose file, the Grafana provisioning and the relaygate config are
read as data and checked against each other.
"""

from __future__ import annotations

from typing import Any

from relaygate.config.server import load_server_config
from tests.dashboards.dashboard_files import DASHBOARDS, ROOT, load_generator, load_yaml

COMPOSE = load_yaml(DASHBOARDS / "compose.yaml")
SERVICES: dict[str, Any] = COMPOSE["services"]


def _flag(service: str, name: str) -> str:
    """The value of ``--name=value`` in a service's command."""
    command = SERVICES[service]["command"]
    values = [str(arg).split("=", 1)[1] for arg in command if str(arg).startswith(f"--{name}=")]
    assert len(values) == 1, f"{service}: --{name} given {len(values)} times"
    return values[0]


def _mounts(service: str) -> dict[str, str]:
    """Container path -> host path (relative to ``dashboards/``) of a service's bind mounts."""
    out: dict[str, str] = {}
    for volume in SERVICES[service].get("volumes", []):
        host, container, *_ = volume.split(":")
        out[container] = host
    return out


def test_compose_runs_prometheus_grafana_relaygate_two_simulators_and_traffic() -> None:
    """The services the README promises are all there."""
    assert set(SERVICES) == {
        "mock-primary",
        "mock-backup",
        "relaygate",
        "traffic",
        "prometheus",
        "grafana",
    }
    for mock in ("mock-primary", "mock-backup"):
        assert SERVICES[mock]["command"][0] == "mock-upstream"
    assert SERVICES["relaygate"]["command"][0] == "serve"


def test_every_bind_mount_and_the_build_files_exist() -> None:
    """Nothing compose mounts or builds from is missing from the repository."""
    for name in SERVICES:
        for container, host in _mounts(name).items():
            assert (DASHBOARDS / host).exists(), f"{name}: {host} (for {container}) missing"
    build = SERVICES["relaygate"]["build"]
    context = (DASHBOARDS / build["context"]).resolve()
    assert context == ROOT
    dockerfile = context / build["dockerfile"]
    assert dockerfile == ROOT / "Dockerfile"  # the one image definition (tests/deploy)
    assert (context / ".dockerignore").is_file()


def test_relaygate_config_is_valid_and_targets_the_simulators() -> None:
    """The gateway's config loads, and its targets are the simulators at their ports."""
    host_path = _mounts("relaygate")[_flag("relaygate", "config")]
    server = load_server_config(DASHBOARDS / host_path)
    compiled = server.compiled_configs()
    hosts = {t.custom_host for config in compiled.values() for t in config.targets}
    simulators = {
        f"http://{mock}:{_flag(mock, 'port')}/v1" for mock in ("mock-primary", "mock-backup")
    }
    assert hosts == simulators
    assert server.default_id() in compiled


def test_prometheus_scrapes_the_relaygate_service_and_loads_the_rules() -> None:
    """The compose Prometheus config points at the relaygate service's port and rule files."""
    mounts = _mounts("prometheus")
    config = load_yaml(DASHBOARDS / mounts["/etc/prometheus/prometheus.yml"])
    targets = [
        t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    ]
    assert targets == [f"relaygate:{_flag('relaygate', 'port')}"]
    assert mounts["/etc/prometheus/rules"] == "./rules"
    assert all(path.startswith("rules/") for path in config["rule_files"])


def test_grafana_provisions_the_generated_dashboard_and_the_prometheus_datasource() -> None:
    """The provider's folder is where the generated dashboard is mounted, on the right source."""
    mounts = _mounts("grafana")
    provider_dir = DASHBOARDS / mounts["/etc/grafana/provisioning/dashboards"]
    providers = [p for f in sorted(provider_dir.glob("*.yaml")) for p in load_yaml(f)["providers"]]
    assert len(providers) == 1
    dashboard_dir = providers[0]["options"]["path"]
    generate = load_generator()
    assert (DASHBOARDS / mounts[dashboard_dir]).resolve() == generate.PROVISIONED_OUTPUT.parent
    datasource_dir = DASHBOARDS / mounts["/etc/grafana/provisioning/datasources"]
    (datasource,) = load_yaml(datasource_dir / "prometheus.yaml")["datasources"]
    assert datasource["uid"] == generate.PROVISIONED_DATASOURCE_UID
    assert datasource["url"] == "http://prometheus:9090"
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboard_dir}/{generate.PROVISIONED_OUTPUT.name}"
