"""Fixtures of the end-to-end modules: fault-simulator upstreams shared by a module.

A module names its upstreams in ``MOCK_NAMES`` (``("alpha", "beta")`` when it names none);
every test that uses them starts with no script, no counters and no recorded requests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.helpers_e2e import Mocks, running_mocks

DEFAULT_MOCK_NAMES = ("alpha", "beta")


@pytest.fixture(scope="module")
def mocks(request: pytest.FixtureRequest) -> Iterator[Mocks]:
    """The module's fault-simulator upstreams, keyed by name (``MOCK_NAMES`` of the module)."""
    names = getattr(request.module, "MOCK_NAMES", DEFAULT_MOCK_NAMES)
    with running_mocks(*names) as running:
        yield running


@pytest.fixture(autouse=True)
def _clean_mocks(request: pytest.FixtureRequest) -> None:
    """Clear the module's upstreams before each test that uses them."""
    if "mocks" in request.fixturenames:
        for mock in request.getfixturevalue("mocks").values():
            mock.clear()
