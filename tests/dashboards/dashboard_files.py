"""The files under ``dashboards/`` as data, and a small PromQL reader for the contract tests.

The PromQL reader is deliberately simple: it knows the shapes the dashboards and rules use
(selectors with matchers, range selectors, ``by``/``on`` clauses, function calls) and finds
the metric names and matcher labels in them.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
"""The repository root."""

DASHBOARDS = ROOT / "dashboards"
RULES = DASHBOARDS / "rules"
RECORDING_RULES = RULES / "relaygate-recording.yml"
ALERT_RULES = RULES / "relaygate-alerts.yml"
RULE_FILES = (RECORDING_RULES, ALERT_RULES)
RULE_TESTS = tuple(sorted((RULES / "tests").glob("*.yml")))
DASHBOARD_JSON = DASHBOARDS / "relaygate.json"
README = DASHBOARDS / "README.md"
INSTALL_HINT = "run scripts/ensure-prometheus.sh"


def require_binary(name: str) -> str:
    """The path of a Prometheus binary; fails the test (never skips) when it is missing or
    the test lacks the ``promtool`` marker."""
    return require_tool("promtool", shutil.which(name), f"{name} not installed: {INSTALL_HINT}")


def load_generator() -> ModuleType:
    """``dashboards/generate.py`` imported as a module."""
    name = "relaygate_dashboard_generate"
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(name, DASHBOARDS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def load_dashboard(path: Path = DASHBOARD_JSON) -> dict[str, Any]:
    """A committed dashboard JSON file."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def load_yaml(path: Path) -> Any:
    """A YAML file's content."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class PanelQuery:
    """One query of one dashboard panel."""

    panel: str
    ref: str
    expr: str


def panel_queries(dashboard: dict[str, Any]) -> list[PanelQuery]:
    """Every query of every panel, in dashboard order."""
    out: list[PanelQuery] = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            out.append(PanelQuery(panel["title"], target["refId"], target["expr"]))
    return out


def rules(path: Path) -> list[dict[str, Any]]:
    """Every rule (recording or alerting) of a rule file, in file order."""
    return [rule for group in load_yaml(path)["groups"] for rule in group["rules"]]


def recording_rules() -> list[dict[str, Any]]:
    """The recording rules."""
    return [rule for rule in rules(RECORDING_RULES) if "record" in rule]


def alert_rules() -> list[dict[str, Any]]:
    """The alerting rules (an alert with several severities appears once per rule)."""
    return [rule for rule in rules(ALERT_RULES) if "alert" in rule]


# -- PromQL reading -------------------------------------------------------------------------
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SELECTOR = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*\"((?:[^\"\\]|\\.)*)\"")
_CLAUSE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
    | {"offset", "bool", "inf", "nan"}
)


def metric_names(expr: str) -> set[str]:
    """Metric and recorded-series names an expression reads."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _CLAUSE.sub(" ", text)
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def selectors(expr: str) -> list[tuple[str, dict[str, str]]]:
    """``(metric, {label: value})`` for every selector with matchers in ``expr``."""
    out: list[tuple[str, dict[str, str]]] = []
    for match in _SELECTOR.finditer(expr):
        matchers = {m.group(1): m.group(3) for m in _MATCHER.finditer(match.group(2))}
        out.append((match.group(1), matchers))
    return out


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading (lower case, punctuation dropped)."""
    slug = heading.strip().lower()
    slug = re.sub(r"[^\w\- ]", "", slug)
    return slug.replace(" ", "-")


def readme_anchors() -> set[str]:
    """Anchors of every heading of ``dashboards/README.md``."""
    anchors: set[str] = set()
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            anchors.add(github_anchor(line.lstrip("#")))
    return anchors
