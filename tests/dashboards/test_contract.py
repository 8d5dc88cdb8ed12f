"""The dashboard and the rules agree with the metric contract, and the dashboard is well formed.

The contract is what ``GatewayMetrics`` registers (names from ``relaygate.exporters.semconv``):
every series a panel or rule reads must be one the exporter produces, every label a query
filters on must be one that series carries, and every exported family is either shown or
listed in ``NOT_SHOWN`` with a reason.
"""

from __future__ import annotations

import re
from itertools import combinations
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from relaygate.exporters.prometheus import GatewayMetrics
from tests.dashboards.dashboard_files import (
    DASHBOARD_JSON,
    ROOT,
    alert_rules,
    load_dashboard,
    load_generator,
    load_yaml,
    metric_names,
    panel_queries,
    recording_rules,
    selectors,
)

generate = load_generator()

TEMPLATE_VARIABLES = ("config", "target", "provider", "model")


def _families() -> dict[str, tuple[str, frozenset[str]]]:
    """Exported family name -> (type, label names), read from a fresh registry's exposition."""
    metrics = GatewayMetrics(CollectorRegistry())
    text = generate_latest(metrics.registry).decode()
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.MULTILINE))
    labels = {family.name: frozenset(family.labelnames) for family in metrics.collector.families}
    families: dict[str, tuple[str, frozenset[str]]] = {}
    for exposed, kind in types.items():
        if kind == "gauge" and exposed.removesuffix("_created") in labels and exposed not in labels:
            continue  # the text format's ``_created`` companion of a counter without labels
        family = exposed.removesuffix("_total") if kind == "counter" else exposed
        families[family] = (kind, labels[family])
    return families


FAMILIES = _families()


def _series() -> dict[str, tuple[str, frozenset[str]]]:
    """Series name in the exposition -> (family, labels it carries)."""
    out: dict[str, tuple[str, frozenset[str]]] = {}
    for family, (kind, labels) in FAMILIES.items():
        if kind == "counter":
            out[f"{family}_total"] = (family, labels)
        elif kind == "histogram":
            out[f"{family}_bucket"] = (family, labels | {"le"})
            out[f"{family}_sum"] = (family, labels)
            out[f"{family}_count"] = (family, labels)
        else:
            out[family] = (family, labels)
    return out


SERIES = _series()
RECORDED = {rule["record"] for rule in recording_rules()}
DASHBOARD = load_dashboard()
QUERIES = panel_queries(DASHBOARD)
RULE_EXPRS = [
    (rule.get("record") or rule["alert"], rule["expr"])
    for rule in recording_rules() + alert_rules()
]
ALL_EXPRS = [(f"panel {q.panel!r} {q.ref}", q.expr) for q in QUERIES] + [
    (f"rule {name}", expr) for name, expr in RULE_EXPRS
]
_VARIABLE_QUERY = re.compile(r"^label_values\((\w+)(\{[^}]*\})?,\s*(\w+)\)$")


def test_the_exporter_registers_every_family_semconv_names() -> None:
    """Reading the exposition finds the families the exporter defines (the test's premise)."""
    assert {"relaygate_requests", "relaygate_fallbacks", "relaygate_upstream_attempts"} <= set(
        FAMILIES
    )
    assert SERIES["relaygate_requests_total"][0] == "relaygate_requests"
    assert "le" in SERIES["relaygate_upstream_duration_seconds_bucket"][1]


@pytest.mark.parametrize(("where", "expr"), ALL_EXPRS, ids=[w for w, _ in ALL_EXPRS])
def test_every_series_a_query_reads_is_exported_or_recorded(where: str, expr: str) -> None:
    """A panel or rule that names a series the gateway does not export would show nothing."""
    names = metric_names(expr)
    assert names, f"{where}: no metric found in {expr!r}"
    unknown = {n for n in names if n not in SERIES and n not in RECORDED}
    assert not unknown, f"{where} reads series relaygate does not export: {sorted(unknown)}"


@pytest.mark.parametrize(("where", "expr"), ALL_EXPRS, ids=[w for w, _ in ALL_EXPRS])
def test_every_label_a_query_filters_on_exists_on_its_series(where: str, expr: str) -> None:
    """A matcher on a label the series lacks silently matches nothing (or everything)."""
    for metric, matchers in selectors(expr):
        if metric in RECORDED:
            continue
        labels = SERIES[metric][1]
        extra = set(matchers) - labels
        assert not extra, f"{where}: {metric} has no label(s) {sorted(extra)}"


def test_every_exported_family_is_shown_or_listed_as_not_shown() -> None:
    """A family nobody can see is a metric nobody will notice breaking."""
    shown = {SERIES[n][0] for q in QUERIES for n in metric_names(q.expr) if n in SERIES}
    missing = set(FAMILIES) - shown - set(generate.NOT_SHOWN)
    assert not missing, f"families in no panel and not in NOT_SHOWN: {sorted(missing)}"


def test_not_shown_lists_only_real_families_that_no_panel_shows_with_a_reason() -> None:
    """``NOT_SHOWN`` stays honest: no stale names, no family both shown and excused."""
    shown = {SERIES[n][0] for q in QUERIES for n in metric_names(q.expr) if n in SERIES}
    for family, reason in generate.NOT_SHOWN.items():
        assert family in FAMILIES, f"NOT_SHOWN names {family}, which is not exported"
        assert family not in shown, f"{family} is in NOT_SHOWN but a panel shows it"
        assert len(reason) > 20, f"NOT_SHOWN[{family}] needs a reason"


def test_committed_dashboard_files_equal_the_generator_output() -> None:
    """The JSON in the repository is exactly what ``dashboards/generate.py`` writes."""
    for path, text in generate.outputs().items():
        assert path.exists(), f"{path.relative_to(ROOT)} missing: run dashboards/generate.py"
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.relative_to(ROOT)} is stale: run .venv/bin/python dashboards/generate.py"
        )


def test_generator_check_mode_reports_up_to_date_files() -> None:
    """``generate.py --check`` exits 0 when the committed files are current."""
    assert generate.main(["--check"]) == 0


def test_dashboard_asks_for_a_prometheus_datasource_on_import() -> None:
    """Importing the JSON prompts for the ``DS_PROMETHEUS`` input and lists what it needs."""
    inputs = DASHBOARD["__inputs"]
    assert [(i["name"], i["type"], i["pluginId"]) for i in inputs] == [
        ("DS_PROMETHEUS", "datasource", "prometheus")
    ]
    required = {(r["type"], r["id"]) for r in DASHBOARD["__requires"]}
    panel_types = {p["type"] for p in DASHBOARD["panels"] if p["type"] != "row"}
    assert {("grafana", "grafana"), ("datasource", "prometheus")} <= required
    assert {("panel", kind) for kind in panel_types} <= required
    assert DASHBOARD["id"] is None
    assert 36 <= DASHBOARD["schemaVersion"] <= 41
    assert DASHBOARD["uid"] and DASHBOARD["title"]


def _all_datasources(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        found.append((f"panel {panel['title']!r}", panel["datasource"]))
        for target in panel["targets"]:
            found.append((f"panel {panel['title']!r} {target['refId']}", target["datasource"]))
    for variable in dashboard["templating"]["list"]:
        found.append((f"variable {variable['name']}", variable["datasource"]))
    return found


def test_every_panel_query_and_variable_uses_the_imported_datasource() -> None:
    """Everything reads from ``${DS_PROMETHEUS}``, so the import prompt binds the whole board."""
    for where, datasource in _all_datasources(DASHBOARD):
        assert datasource == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, where


def test_provisioned_dashboard_has_the_same_panels_bound_to_the_provisioned_datasource() -> None:
    """The compose copy differs only in its data source and the import-only fields."""
    provisioned = load_dashboard(generate.PROVISIONED_OUTPUT)
    assert "__inputs" not in provisioned and "__requires" not in provisioned
    for where, datasource in _all_datasources(provisioned):
        assert datasource == {"type": "prometheus", "uid": "prometheus"}, where
    datasources = load_yaml(ROOT / "dashboards/provisioning/datasources/prometheus.yaml")
    assert [d["uid"] for d in datasources["datasources"]] == ["prometheus"]
    assert [q.expr for q in panel_queries(provisioned)] == [q.expr for q in QUERIES]


def test_panel_ids_are_unique() -> None:
    """Grafana keys panel state by id; duplicates make panels overwrite each other."""
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    assert all(isinstance(i, int) and i > 0 for i in ids)


def test_panels_fit_the_grid_without_overlapping() -> None:
    """Every panel lies within the 24-column grid and no two panels cover the same cell."""
    boxes = []
    for panel in DASHBOARD["panels"]:
        pos = panel["gridPos"]
        assert set(pos) == {"h", "w", "x", "y"}, panel["title"]
        assert all(isinstance(v, int) and v >= 0 for v in pos.values()), panel["title"]
        assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        boxes.append((panel["title"], pos))
    for (a, p), (b, q) in combinations(boxes, 2):
        apart = (
            p["x"] + p["w"] <= q["x"]
            or q["x"] + q["w"] <= p["x"]
            or p["y"] + p["h"] <= q["y"]
            or q["y"] + q["h"] <= p["y"]
        )
        assert apart, f"panels {a!r} and {b!r} overlap"


def test_every_panel_says_what_it_shows() -> None:
    """Each panel (rows included) carries a description a reader can act on."""
    for panel in DASHBOARD["panels"]:
        description = panel.get("description", "")
        assert isinstance(description, str) and description.strip(), panel["title"]
        if panel["type"] != "row":
            assert len(description) >= 120, f"{panel['title']!r}: description too thin"
            assert panel["targets"], f"{panel['title']!r} has no query"


def test_template_variables_are_multi_value_label_queries_with_all() -> None:
    """``config``, ``target``, ``provider``, ``model``: label_values of an existing label."""
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert tuple(variables) == TEMPLATE_VARIABLES
    for name, variable in variables.items():
        assert variable["type"] == "query"
        assert variable["multi"] is True and variable["includeAll"] is True
        assert variable["allValue"] == ".*"
        match = _VARIABLE_QUERY.match(variable["query"])
        assert match, f"variable {name}: {variable['query']!r} is not label_values(...)"
        metric, _, label = match.groups()
        assert label == name
        assert metric in SERIES and label in SERIES[metric][1], variable["query"]


def test_every_query_filters_by_each_template_variable_its_series_carries() -> None:
    """Choosing a config (or target, provider, model) above narrows every panel that can be."""
    for query in QUERIES:
        for metric, matchers in selectors(query.expr):
            for variable in TEMPLATE_VARIABLES:
                if variable in SERIES[metric][1]:
                    assert matchers.get(variable) == f"${variable}", (
                        f"panel {query.panel!r} {query.ref}: {metric} lacks "
                        f'{variable}=~"${variable}"'
                    )


def test_every_rate_in_a_panel_uses_the_rate_interval() -> None:
    """Panels follow Grafana's step and scrape interval instead of a fixed window."""
    for query in QUERIES:
        for window in re.findall(r"\[([^\]]+)\]", query.expr):
            assert window in ("$__rate_interval", "$__range"), (
                f"panel {query.panel!r} {query.ref}: fixed window [{window}]"
            )


def test_dashboard_json_is_the_committed_import_file() -> None:
    """The generator writes the import file where the README says it is."""
    assert generate.IMPORT_OUTPUT == DASHBOARD_JSON
