"""A real Prometheus server for the dashboard tests: start it, query it, wait on it.

``run_prometheus`` scrapes one or more running ``relaygate serve`` processes, each as its own
target (its own ``instance`` label, as Kubernetes pod discovery gives each pod), and loads
the recording and alerting rules of ``dashboards/rules/``.
"""

from __future__ import annotations

import contextlib
import math
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.dashboards.dashboard_files import RULE_FILES, require_binary
from tests.servers import RunningServer, free_port, stop_process

WINDOW = "5m"
"""What ``$__rate_interval`` and ``$__range`` become in the queries: wider than the whole run."""

WAIT_S = 60.0
"""Upper bound for Prometheus to start, scrape the final state and evaluate the rules."""


@dataclass
class Prometheus:
    """A running Prometheus server and a way to query it."""

    url: str
    log: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The result vector of an instant query (raises on an API error)."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert body.get("status") == "success", f"{expr}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def scalar(self, expr: str) -> float | None:
        """The single value of a one-series query, or ``None`` while it has no data."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def get(self, path: str) -> Any:
        """A JSON API answer's ``data``."""
        body = httpx.get(f"{self.url}{path}", timeout=10).json()
        assert body.get("status") == "success", f"{path}: {body}"
        return body["data"]

    def samples(self, expr: str) -> list[tuple[float, float]]:
        """``(timestamp, value)`` pairs of a one-series range query such as ``x[1m]``."""
        result = self.query(expr)
        if len(result) != 1:
            return []
        return [(float(ts), float(value)) for ts, value in result[0]["values"]]

    def poll(self, check: Callable[[], bool]) -> None:
        """Poll ``check`` until it holds or ``WAIT_S`` passes; the caller asserts afterwards."""
        deadline = time.monotonic() + WAIT_S
        while not check() and time.monotonic() < deadline:
            time.sleep(0.25)

    def wait_for(self, what: str, check: Callable[[], bool]) -> None:
        """Poll ``check`` until it holds; fail with the server log after ``WAIT_S``."""
        deadline = time.monotonic() + WAIT_S
        while not check():
            if time.monotonic() > deadline:
                log = self.log.read_text(errors="replace")[-3000:]
                pytest.fail(f"Prometheus: timed out waiting for {what}\n{log}")
            time.sleep(0.25)


@contextlib.contextmanager
def run_prometheus(tmp: Path, *gateways: RunningServer) -> Iterator[Prometheus]:
    """Start the ``prometheus`` binary on a free loopback port until the block ends, scraping
    each of ``gateways`` on its own (one ``instance`` each) every second and evaluating
    relaygate's recording and alerting rules every second."""
    binary = require_binary("prometheus")
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in RULE_FILES],
        "scrape_configs": [
            {
                "job_name": "relaygate",
                "static_configs": [{"targets": [f"127.0.0.1:{g.port}" for g in gateways]}],
            }
        ],
    }
    config_path = tmp / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    log = tmp / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp,
        )
    server = Prometheus(f"http://127.0.0.1:{port}", log)
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                return httpx.get(f"{server.url}/-/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        server.wait_for("readiness", ready)
        yield server
    finally:
        stop_process(proc, timeout=15)


def substitute(expr: str) -> str:
    """A panel query with Grafana's variables replaced as *All* and a fixed window would."""
    expr = re.sub(r"\$(config|target|provider|model)\b", ".*", expr)
    return expr.replace("$__rate_interval", WINDOW).replace("$__range", WINDOW)


def has_finite_value(result: list[dict[str, Any]]) -> bool:
    """Whether any series of an instant-query result has a finite value."""
    return any(math.isfinite(float(series["value"][1])) for series in result)
