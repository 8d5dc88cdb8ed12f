"""The printed report of a rehearsal."""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Mapping, Sequence

from relaygate.config.model import Target
from relaygate.exporters import semconv as sc
from relaygate.rehearse.driver import SHORT_WAIT_S
from relaygate.rehearse.results import MetricDelta, Report, _duration


class _Style:
    """ANSI styling, enabled only for terminals."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def good(self, text: str) -> str:
        return self._wrap("32", text)

    def bad(self, text: str) -> str:
        return self._wrap("31", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _retry_text(target: Target) -> str:
    retry = target.retry
    if retry.attempts == 0:
        text = "no retry"
    else:
        codes = ",".join(str(c) for c in sorted(retry.on_status_codes))
        text = f"retry {retry.attempts}x on {codes}"
        if retry.use_retry_after_header:
            text += " (honours Retry-After)"
    timeout = target.request_timeout_ms
    text += f", request_timeout {timeout} ms" if timeout else ", no request_timeout"
    for name, ms in (
        ("first_token_timeout", target.first_token_timeout_ms),
        ("stream_idle_timeout", target.stream_idle_timeout_ms),
    ):
        if ms:
            text += f", {name} {ms} ms"
    return text


def _counts(counter: Mapping[str, int]) -> str:
    return ", ".join(f"{key} {n}" for key, n in counter.items())


def _table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        indent + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in rows
    ]


def _header(report: Report, style: _Style) -> list[str]:
    loaded = report.config
    scenario = report.scenario
    lines = [
        style.bold(
            f"relaygate rehearse: scenario '{scenario.name}' on {loaded.source} "
            f"(config '{loaded.config_id}')"
        )
    ]
    if scenario.description:
        lines += textwrap.wrap(
            scenario.description, width=96, initial_indent="  ", subsequent_indent="  "
        )
    kind = "streamed" if report.stream else "not streamed"
    deadline = f"request deadline {_duration(report.deadline_ms / 1000)}"
    if report.deadline_ms < report.configured_deadline_ms:
        configured = _duration(report.configured_deadline_ms / 1000)
        deadline += f" (rehearsal cap; otherwise {configured})"
    lines.append(
        f"  {_plural(len(report.requests), 'request')}, {kind}, seed {report.seed}, {deadline}"
    )
    if report.real_waits:
        lines.append("  Waits: backoff and Retry-After waits are slept in full.")
    else:
        lines.append(
            f"  Backoff and Retry-After waits are cut to {SHORT_WAIT_S * 1000:g} ms each so the "
            "rehearsal takes seconds;"
        )
        lines.append(
            "  'waited' shows what the gateway decided to wait. Timeouts and latencies are real."
        )
    lines += ["", style.bold("Targets (each answered by its own fault simulator)")]
    rows = [
        [f"[{i}]", t.label, t.path, t.provider, _retry_text(t)]
        for i, t in enumerate(loaded.targets)
    ]
    for line, faults in zip(_table(rows), report.faults, strict=True):
        lines.append(line)
        lines.append(f"        faults: {faults.describe()}")
    return lines


def _request_lines(report: Report, style: _Style) -> list[str]:
    labels = {t.path: t.label for t in report.config.targets}
    rows = [["#", "status", "served by", "latency", "waited", "route"]]
    extra: list[list[str]] = []
    for result in report.requests:
        if result.served_by and 200 <= result.status < 300:
            served = labels.get(result.served_by, result.served_by)
        elif result.served_by:
            served = f"- (last: {labels.get(result.served_by, result.served_by)})"
        else:
            served = "-"
        rows.append(
            [
                str(result.number),
                str(result.status) if result.status else "none",
                served,
                _duration(result.latency_s),
                _duration(result.waited_s) if result.waited_s else "-",
                result.route or "(no upstream attempt)",
            ]
        )
        notes: list[str] = []
        if result.stream and 200 <= result.status < 300:
            if result.stream_error is None:
                notes.append(f"stream: {_plural(result.chunks, 'chunk')}, complete")
            else:
                notes.append(
                    f"stream: {_plural(result.chunks, 'chunk')}, then stream error: "
                    f"{result.stream_error}"
                )
        if result.error:
            notes.append(f"error: {result.error[:200]}")
        extra.append(notes)
    table = _table(rows)
    lines = [style.bold("Requests"), table[0]]
    at = table[0].index("status")
    for result, line, notes in zip(report.requests, table[1:], extra, strict=True):
        status = str(result.status) if result.status else "none"
        painted = style.good(status) if result.ok else style.bad(status)
        lines.append(line[:at] + painted + line[at + len(status) :])
        lines += [f"      {note}" for note in notes]
    return lines


def _counted(report: Report, family: str, keys: Sequence[str]) -> Counter[tuple[str, ...]]:
    """How much the counter ``family`` rose during the rehearsal, by the values of the
    labels ``keys`` (in the metrics' own label values: a target's name, else its path)."""
    counts: Counter[tuple[str, ...]] = Counter()
    for delta in report.metrics:
        if delta.family == family and delta.kind == "counter" and delta.sample.endswith("_total"):
            labels = dict(delta.labels)
            counts[tuple(labels.get(key, "") for key in keys)] += int(delta.delta)
    return counts


def _summary_lines(report: Report, style: _Style) -> list[str]:
    targets = report.config.targets
    labels = {t.path: t.label for t in targets}
    results = report.requests
    per_target: dict[str, Counter[str]] = {t.path: Counter() for t in targets}
    for result in results:
        for attempt in result.attempts:
            per_target.setdefault(attempt.target.path, Counter())[attempt.reason] += 1
    # Retries, timeouts and fallbacks are read from the same records as the metrics
    # section below (the gateway's own counters), so the two cannot disagree.
    retries = _counted(report, sc.M_RETRIES, ("target", "reason"))
    timeouts = _counted(report, sc.M_TIMEOUTS, ("target",))
    fallbacks = _counted(report, sc.M_FALLBACKS, ("from_target", "to_target", "reason"))
    ok = sum(1 for r in results if r.ok)
    failed = sum(1 for r in results if not 200 <= r.status < 300)
    stream_errors = sum(1 for r in results if 200 <= r.status < 300 and r.stream_error)
    exhausted: Counter[str] = Counter(
        r.attempts[-1].reason if r.attempts else "unknown" for r in results if r.exhausted
    )
    refused = sum(1 for r in results if not 200 <= r.status < 300 and not r.route)
    lines = [style.bold("Summary")]
    head = f"  requests: {len(results)}: {ok} ok, {failed} failed"
    if report.stream:
        head += f", {stream_errors} with a stream error"
    if refused:
        head += f" ({refused} refused before any upstream attempt)"
    lines.append(head)
    lines.append("  attempts by target and outcome:")
    rows = []
    for path, counter in per_target.items():
        skipped = counter.pop("circuit_open", 0)
        total = sum(counter.values())
        outcomes = _counts(counter) if counter else "not tried"
        if skipped:
            outcomes += f"; skipped (circuit open) {skipped}"
        rows.append([labels.get(path, path), path, _plural(total, "attempt"), outcomes])
    lines += _table(rows, indent="    ")
    total_retries = sum(retries.values())
    lines.append(
        f"  retries: {total_retries}"
        + (
            "  (" + "; ".join(f"{p} after {why}: {n}" for (p, why), n in retries.items()) + ")"
            if retries
            else ""
        )
    )
    lines.append(
        f"  timeouts: {sum(timeouts.values())}"
        + ("  (" + "; ".join(f"{p}: {n}" for (p,), n in timeouts.items()) + ")" if timeouts else "")
    )
    lines.append(
        f"  fallbacks: {sum(fallbacks.values())}"
        + (
            "  ("
            + "; ".join(f"{a} -> {b} on {why}: {n}" for (a, b, why), n in fallbacks.items())
            + ")"
            if fallbacks
            else ""
        )
    )
    lines.append(
        f"  exhausted requests: {sum(exhausted.values())}"
        + ("  (last failure: " + _counts(exhausted) + ")" if exhausted else "")
    )
    return lines


def _number_text(value: float) -> str:
    return f"{value:+g}" if float(value).is_integer() else f"{value:+.3f}"


def _metric_lines(report: Report, style: _Style) -> list[str]:
    config_id = report.config.config_id
    lines = [
        style.bold("Metrics that moved")
        + f' (relaygate_* series; label config="{config_id}" not repeated)'
    ]
    if not report.real_waits and any(r.waited_s for r in report.requests):
        lines.append(
            "  (waits were cut short: the *_duration_seconds series show less time than in "
            "production,"
        )
        lines.append("  and the gateway overhead of a request that waited reads 0)")
    if not report.metrics:
        lines.append("  none")
        return lines
    families: dict[str, list[MetricDelta]] = {}
    for delta in report.metrics:
        families.setdefault(delta.family, []).append(delta)
    order = sorted(families, key=lambda name: families[name][0].kind == "histogram")
    for name in order:
        deltas = families[name]
        first = deltas[0]
        shown = name + "_total" if first.kind == "counter" else name
        doc = f"  {style.dim(first.documentation)}" if first.documentation else ""
        lines.append(f"  {shown}{doc}")
        rows: dict[tuple[tuple[str, str], ...], dict[str, float]] = {}
        for delta in deltas:
            labels = tuple(
                (k, v) for k, v in delta.labels if not (k == "config" and v == config_id)
            )
            suffix = delta.sample.removeprefix(name)
            rows.setdefault(labels, {})[suffix] = delta.delta
        table: list[list[str]] = []
        seconds = name.endswith("_seconds")
        for labels, values in rows.items():
            label_text = " ".join(f"{k}={v}" for k, v in labels) or "(no labels)"
            if first.kind == "histogram":
                total = values.get("_sum", 0.0)
                if not seconds:
                    total_text = _number_text(total)
                elif abs(total) < 0.01:
                    total_text = f"{total:+.2g} s"
                else:
                    total_text = f"{total:+.3f} s"
                value = f"count {_number_text(values.get('_count', 0.0))}, sum {total_text}"
            else:
                value = _number_text(sum(values.values()))
            table.append([label_text, value])
        lines += _table(table, indent="    ")
    return lines


_CIRCUIT_NOTES = {
    "open": "skipped until its cooldown ends",
    "half_open": "a probe is let through",
    "closed": "the probe succeeded: traffic is back",
}


def _circuit_lines(report: Report, style: _Style) -> list[str]:
    """The circuit breakers' transitions, at scenario time."""
    clock = "scenario time" if report.scenario.interval_ms else "since the start"
    rows = [["t", "request", "target", "change", ""]]
    for event in report.circuits:
        rows.append(
            [
                _duration(event.at_s),
                f"#{event.request}",
                ", ".join(event.targets) or "-",
                f"{event.from_state} -> {event.to_state}",
                _CIRCUIT_NOTES.get(event.to_state, ""),
            ]
        )
    return [style.bold(f"Circuit breakers ({clock})"), *_table(rows)]


def format_report(report: Report, color: bool = False) -> str:
    """The plain-text report of a rehearsal; ``color`` adds ANSI colours (for terminals)."""
    style = _Style(color)
    lines = _header(report, style)
    if report.notes:
        lines += ["", style.bold("Notes")] + [f"  - {note}" for note in report.notes]
    lines += ["", *_request_lines(report, style)]
    if report.circuits:
        lines += ["", *_circuit_lines(report, style)]
    lines += ["", *_summary_lines(report, style)]
    if report.internal_errors or report.telemetry_errors:
        lines.append(style.bad("  gateway problems:"))
        lines += [f"    internal error: {error}" for error in report.internal_errors]
        if report.telemetry_errors:
            lines.append(f"    telemetry errors swallowed: {report.telemetry_errors}")
    lines += ["", *_metric_lines(report, style)]
    return "\n".join(lines) + "\n"
