"""The README's metric table is the exporter's contract, name for name and label for label."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from relaygate.exporters.prometheus import GatewayMetrics

README = Path(__file__).resolve().parent.parent / "README.md"


def documented() -> dict[str, tuple[str, tuple[str, ...]]]:
    text = README.read_text()
    table = text.split("<!-- metrics-table:start -->")[1].split("<!-- metrics-table:end -->")[0]
    rows: dict[str, tuple[str, tuple[str, ...]]] = {}
    for line in table.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        labels = tuple(x.strip() for x in cells[2].split(",") if x.strip())
        rows[cells[0].strip("`")] = (cells[1], labels)
    return rows


def exported() -> dict[str, tuple[str, tuple[str, ...]]]:
    metrics = GatewayMetrics(CollectorRegistry())
    rows: dict[str, tuple[str, tuple[str, ...]]] = {}
    for family in metrics.collector.families:
        name = family.name + ("_total" if family.type == "counter" else "")
        rows[name] = (family.type, tuple(family.labelnames))
    return rows


def test_every_exported_metric_is_documented_with_its_type_and_labels() -> None:
    assert documented() == exported()
