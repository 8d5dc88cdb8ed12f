"""The status page in a real headless Chromium, fed by real traffic through the gateway.

The gateway is the real ASGI app (``create_app``) with the status routes added and the board
registered as a request hook, served by uvicorn on loopback; its upstreams are fault
simulators. Chromium is driven over the Chrome DevTools Protocol (a WebSocket; the
``websockets`` package). The tests that open a page carry the ``chromium`` marker; without
Chromium they fail with the install hint.

``RELAYGATE_SCREENSHOT=1`` saves a screenshot of the page after a fallback to
``docs/status-page.png``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from websockets.sync.client import ClientConnection, connect

from relaygate.providers.client import HttpxUpstream
from relaygate.status import StatusBoard
from relaygate.status.page import CONTENT_SECURITY_POLICY, PAGE_TITLE
from relaygate.telemetry import Telemetry
from tests import inprocess
from tests.conftest import MockFactory
from tests.servers import RunningServer, serve_in_thread
from tests.tools import require_tool

INSTALL_HINT = (
    "headless Chromium is needed for the status page tests and was not found: "
    "run `scripts/ensure-chromium.sh` as root (Debian: apt-get install chromium chromium-driver)"
    ", or point RELAYGATE_CHROMIUM at a Chromium binary"
)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-proxy-server",
    "--hide-scrollbars",
    "--window-size=1280,900",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)
WAIT_S = 30.0
"""Upper bound of every wait (browser start, page updates); generous for a loaded machine."""

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "status-page.png"
MESSAGES = [{"role": "user", "content": "hello"}]

# Reads what a person sees on the page into plain data.
READ_PAGE = """(() => {
  const text = (root, sel) => {
    const node = root.querySelector(sel);
    return node ? node.textContent : null;
  };
  const all = (root, sel) => Array.from(root.querySelectorAll(sel));
  const box = document.querySelector("#last-fallback .last-fallback");
  return {
    title: document.title,
    heading: text(document, "header h1"),
    connection: document.getElementById("conn").className,
    configs: all(document, "section.config").map(s => ({
      id: s.dataset.config,
      shown_id: text(s, ".config-id"),
      health: text(s, "h2 .health"),
      targets: all(s, "tr.target").map(r => ({
        path: r.dataset.target,
        label: text(r, ".t-label"),
        health: text(r, ".t-health"),
        attempts: Number(text(r, ".t-attempts")),
        success: text(r, ".t-success"),
      })),
      fallbacks: all(s, "tr.fallback").map(r => ({
        from: text(r, ".f-from"),
        to: text(r, ".f-to"),
        count: Number(text(r, ".f-count")),
        reason: text(r, ".f-reason"),
      })),
    })),
    last_fallback: box && {
      config: text(box, ".lf-config"),
      request_id: text(box, ".lf-request-id"),
      route: text(box, ".lf-route"),
      hops: all(box, ".lf-from").map((n, i) => [
        n.textContent,
        box.querySelectorAll(".lf-to")[i].textContent,
        box.querySelectorAll(".lf-reason")[i].textContent,
      ]),
    },
    images: document.images.length,
  };
})()"""


# -- Chromium over the DevTools Protocol ----------------------------------------------------


class PageError(AssertionError):
    """The page did not reach the expected state, or the browser refused a command."""


class Tab:
    """One browser tab driven over its DevTools WebSocket, opened on first use.

    ``problems`` collects script exceptions and error-level log entries (a blocked script or
    request, a failed fetch) reported by the page.
    """

    def __init__(self, browser: Chromium) -> None:
        self._browser = browser
        self._opened = ExitStack()
        self._ws: ClientConnection | None = None
        self._next_id = 0
        self.problems: list[str] = []

    def close(self) -> None:
        """Close the tab if it was opened."""
        self._opened.close()

    def _connection(self) -> ClientConnection:
        if self._ws is None:
            self._ws = self._opened.enter_context(self._browser.open_tab())
            self.call("Runtime.enable")
            self.call("Log.enable")
        return self._ws

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result; events met meanwhile are inspected."""
        ws = self._connection()
        self._next_id += 1
        msg_id = self._next_id
        ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + WAIT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PageError(f"no answer to {method} within {WAIT_S}s")
            message = json.loads(ws.recv(timeout=remaining))
            if message.get("id") == msg_id:
                if "error" in message:
                    raise PageError(f"{method} failed: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self._note(message)

    def _note(self, event: dict[str, Any]) -> None:
        method = event.get("method")
        params = event.get("params", {})
        if method == "Runtime.exceptionThrown":
            self.problems.append(f"exception: {params['exceptionDetails']}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.problems.append(f"log: {params['entry']['text']}")
        elif method == "Runtime.consoleAPICalled" and params["type"] == "error":
            self.problems.append(f"console: {params['args']}")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise PageError(f"script error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def goto(self, url: str) -> None:
        """Navigate and wait until the document has loaded."""
        self.call("Page.navigate", url=url)
        self.wait_until(
            lambda: self.evaluate(f"location.href === {json.dumps(url)} && document.readyState"),
            lambda state: state == "complete",
            f"load {url}",
        )

    def wait_until(self, read: Callable[[], Any], ok: Callable[[Any], bool], what: str) -> Any:
        """Poll ``read()`` until ``ok`` accepts its value; fail with the last value seen."""
        deadline = time.monotonic() + WAIT_S
        value = read()
        while not ok(value):
            if time.monotonic() > deadline:
                raise PageError(
                    f"page did not {what} within {WAIT_S}s; last seen: {value!r}; "
                    f"page problems: {self.problems}"
                )
            time.sleep(0.05)
            value = read()
        return value

    def read(self) -> dict[str, Any]:
        """What the page shows, as data (see ``READ_PAGE``)."""
        state: dict[str, Any] = self.evaluate(READ_PAGE)
        return state

    def wait_for_page(self, ok: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """Poll what the page shows until ``ok`` accepts it."""
        state: dict[str, Any] = self.wait_until(self.read, ok, what)
        return state

    def screenshot(self, path: Path) -> None:
        """Save a PNG of the whole page."""
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=1280,
            height=max(height, 600),
            deviceScaleFactor=1,
            mobile=False,
        )
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))


class Chromium:
    """A headless Chromium started on first use; each :meth:`open_tab` is a fresh tab."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._profile: tempfile.TemporaryDirectory[str] | None = None
        self._port = 0

    def _start(self) -> None:
        binary = os.environ.get("RELAYGATE_CHROMIUM") or next(
            (found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None
        )
        usable = binary if binary and os.access(binary, os.X_OK) else None
        binary = require_tool("chromium", usable, INSTALL_HINT)
        # Chromium's helper processes may still be writing the profile while the browser
        # exits: the whole process group is ended first, and a file appearing during the
        # removal does not fail the tests that already passed.
        self._profile = tempfile.TemporaryDirectory(
            prefix="relaygate-chromium-", ignore_cleanup_errors=True
        )
        profile = Path(self._profile.name)
        log = (profile / "chromium.log").open("wb")
        self._proc = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + WAIT_S
        while not (port_file.exists() and port_file.read_text().strip()):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                output = (profile / "chromium.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"Chromium did not start ({binary}):\n{output}\n{INSTALL_HINT}")
            time.sleep(0.05)
        self._port = int(port_file.read_text().split()[0])

    @contextlib.contextmanager
    def open_tab(self) -> Iterator[ClientConnection]:
        """A new tab's DevTools connection (starting the browser if needed); the tab is
        closed when the block ends. Fails the test with the install hint without Chromium."""
        if self._proc is None:
            self._start()
        devtools = f"http://127.0.0.1:{self._port}"
        target = httpx.put(f"{devtools}/json/new?about:blank", timeout=WAIT_S).json()
        try:
            with connect(target["webSocketDebuggerUrl"], max_size=None, open_timeout=WAIT_S) as ws:
                yield ws
        finally:
            httpx.get(f"{devtools}/json/close/{target['id']}", timeout=WAIT_S)

    def stop(self) -> None:
        """End the browser and remove its profile."""
        if self._proc is not None:
            group = self._proc.pid
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)
            try:
                self._proc.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        if self._profile is not None:
            self._profile.cleanup()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    """One headless Chromium for the module, started by the first test that opens a tab."""
    browser = Chromium()
    yield browser
    browser.stop()


@pytest.fixture
def tab(chromium: Chromium) -> Iterator[Tab]:
    """A fresh browser tab, opened by the test's first use (so a missing browser fails the
    test itself, with the install hint)."""
    opened = Tab(chromium)
    yield opened
    opened.close()


# -- the gateway under test -----------------------------------------------------------------


def mock_target(server: RunningServer, name: str) -> dict[str, Any]:
    """A config target calling a fault simulator as an OpenAI-compatible provider."""
    return {
        "name": name,
        "provider": "openai",
        "api_key": f"sk-{name}",
        "custom_host": f"{server.url}/v1",
    }


def gateway_app(config: dict[str, Any], telemetry: Telemetry) -> Starlette:
    """relaygate's app, whose factory serves the status page at ``/status``.

    The upstream client is a plain httpx one: the in-thread server runs no lifespan, so
    nothing would close the default client's aiohttp session.
    """
    upstream = HttpxUpstream(httpx.AsyncClient(timeout=None))
    app = inprocess.gateway_app(config, telemetry, upstream)
    assert isinstance(app.state.status, StatusBoard)
    return app


def server_config(
    mock_upstream: MockFactory, primary: str = "primary", backup: str = "backup"
) -> dict[str, Any]:
    """``prod`` falls back from an always-503 upstream to a healthy one; ``steady`` only
    uses the healthy one."""
    failing = mock_upstream(name="failing", error_rate=1.0, error_status=503)
    healthy = mock_upstream(name="healthy")
    return {
        "configs": {
            "prod": {
                "strategy": {"mode": "fallback"},
                "targets": [mock_target(failing, primary), mock_target(healthy, backup)],
            },
            "steady": mock_target(healthy, "steady-backend"),
        },
        "default_config": "prod",
        "telemetry": {"logs": {"level": "warning", "format": "json"}},
    }


@pytest.fixture
def gateway(mock_upstream: MockFactory, telemetry: Telemetry) -> Iterator[RunningServer]:
    """The gateway with its status page, on loopback."""
    app = gateway_app(server_config(mock_upstream), telemetry)
    with serve_in_thread(app) as server:
        yield server


def chat(base_url: str, config_id: str) -> httpx.Response:
    """One chat completion through the gateway with the named config; it must succeed."""
    response = httpx.post(
        f"{base_url}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
        headers={"x-portkey-config": config_id},
        timeout=WAIT_S,
    )
    assert response.status_code == 200, response.text
    return response


def config_shown(state: dict[str, Any], config_id: str) -> dict[str, Any]:
    """The card of ``config_id`` (an empty dict until it is rendered)."""
    cards = [c for c in state["configs"] if c["id"] == config_id]
    return cards[0] if cards else {}


def attempts_shown(state: dict[str, Any], config_id: str) -> dict[str, int]:
    """Attempt counts per target label of one config card."""
    return {t["label"]: t["attempts"] for t in config_shown(state, config_id).get("targets", [])}


# -- the page in the browser ----------------------------------------------------------------


@pytest.mark.chromium
def test_page_shows_its_title_and_every_target_of_each_known_config(
    gateway: RunningServer, tab: Tab
) -> None:
    tab.goto(f"{gateway.url}/status")
    state = tab.wait_for_page(lambda s: len(s["configs"]) == 2, "render both configs")
    assert (state["title"], state["heading"]) == (PAGE_TITLE, PAGE_TITLE)
    assert [(c["id"], c["health"]) for c in state["configs"]] == [
        ("prod", "idle"),
        ("steady", "idle"),
    ]
    assert [(t["label"], t["health"], t["attempts"]) for t in state["configs"][0]["targets"]] == [
        ("primary", "idle", 0),
        ("backup", "idle", 0),
    ]
    assert attempts_shown(state, "steady") == {"steady-backend": 0}
    assert state["last_fallback"] is None


@pytest.mark.chromium
def test_page_runs_under_its_content_security_policy_without_script_errors(
    gateway: RunningServer, tab: Tab
) -> None:
    tab.goto(f"{gateway.url}/status")
    tab.wait_for_page(lambda s: s["connection"] == "conn live", "connect")
    chat(gateway.url, "steady")
    tab.wait_for_page(lambda s: attempts_shown(s, "steady") == {"steady-backend": 1}, "update")
    assert tab.problems == []


@pytest.mark.chromium
def test_page_counts_go_up_as_requests_finish_without_a_reload(
    gateway: RunningServer, tab: Tab
) -> None:
    tab.goto(f"{gateway.url}/status")
    tab.wait_for_page(lambda s: attempts_shown(s, "steady") == {"steady-backend": 0}, "render")
    tab.evaluate("window.loadedOnce = true")
    for _ in range(3):
        chat(gateway.url, "steady")
    state = tab.wait_for_page(
        lambda s: attempts_shown(s, "steady") == {"steady-backend": 3}, "count three attempts"
    )
    steady = config_shown(state, "steady")
    assert (steady["health"], steady["targets"][0]["success"]) == ("healthy", "100%")
    assert tab.evaluate("window.loadedOnce") is True


@pytest.mark.chromium
def test_page_shows_a_fallback_that_just_happened_with_its_reason(
    gateway: RunningServer, tab: Tab
) -> None:
    tab.goto(f"{gateway.url}/status")
    tab.wait_for_page(lambda s: len(s["configs"]) == 2, "render")
    response = chat(gateway.url, "prod")
    state = tab.wait_for_page(lambda s: s["last_fallback"] is not None, "show the fallback")
    prod = config_shown(state, "prod")
    assert prod["fallbacks"] == [
        {"from": "primary", "to": "backup", "count": 1, "reason": "status_5xx"}
    ]
    assert state["last_fallback"] == {
        "config": "prod",
        "request_id": response.headers["x-request-id"],
        "route": response.headers["x-relaygate-route"],
        "hops": [["primary", "backup", "status_5xx"]],
    }
    assert [(t["label"], t["health"], t["success"]) for t in prod["targets"]] == [
        ("primary", "failing", "0%"),
        ("backup", "healthy", "100%"),
    ]
    assert prod["health"] == "degraded"
    if os.environ.get("RELAYGATE_SCREENSHOT") == "1":
        for _ in range(2):
            chat(gateway.url, "prod")
        for _ in range(5):
            chat(gateway.url, "steady")
        tab.wait_for_page(
            lambda s: (
                attempts_shown(s, "steady") == {"steady-backend": 5}
                and attempts_shown(s, "prod") == {"primary": 3, "backup": 3}
            ),
            "count the extra requests",
        )
        tab.screenshot(SCREENSHOT)
        assert SCREENSHOT.read_bytes().startswith(b"\x89PNG")


@pytest.mark.chromium
def test_page_shows_target_names_and_config_ids_as_text_never_as_markup(
    mock_upstream: MockFactory, telemetry: Telemetry, tab: Tab
) -> None:
    evil = "<img src=x onerror=\"document.title='owned'\">"
    config = server_config(mock_upstream, primary=evil, backup="<b>bold</b>")
    config["configs"]["<i>ids</i>"] = config["configs"].pop("steady")
    with serve_in_thread(gateway_app(config, telemetry)) as server:
        tab.goto(f"{server.url}/status")
        tab.wait_for_page(lambda s: len(s["configs"]) == 2, "render")
        chat(server.url, "prod")
        state = tab.wait_for_page(lambda s: s["last_fallback"] is not None, "show the fallback")
    assert [t["label"] for t in config_shown(state, "prod")["targets"]] == [evil, "<b>bold</b>"]
    assert config_shown(state, "<i>ids</i>")["shown_id"] == "<i>ids</i>"
    assert state["last_fallback"]["hops"] == [[evil, "<b>bold</b>", "status_5xx"]]
    assert (state["title"], state["images"]) == (PAGE_TITLE, 0)
    assert tab.evaluate("document.querySelectorAll('main b, main i').length") == 0


@pytest.mark.chromium
def test_page_under_a_mount_prefix_polls_the_json_beside_it(
    mock_upstream: MockFactory, telemetry: Telemetry, tab: Tab
) -> None:
    inner = gateway_app(server_config(mock_upstream), telemetry)
    host = Starlette(routes=[Mount("/llm", app=inner)])
    with serve_in_thread(host) as server:
        tab.goto(f"{server.url}/llm/status")
        tab.wait_for_page(lambda s: len(s["configs"]) == 2, "render under /llm")
        chat(f"{server.url}/llm", "steady")
        state = tab.wait_for_page(
            lambda s: attempts_shown(s, "steady") == {"steady-backend": 1}, "update under /llm"
        )
    assert state["connection"] == "conn live"


@pytest.mark.chromium
def test_page_says_it_is_stale_when_the_gateway_stops_answering(
    mock_upstream: MockFactory, telemetry: Telemetry, tab: Tab
) -> None:
    with ExitStack() as running:
        server = running.enter_context(
            serve_in_thread(gateway_app(server_config(mock_upstream), telemetry))
        )
        tab.goto(f"{server.url}/status")
        tab.wait_for_page(lambda s: s["connection"] == "conn live", "go live")
    state = tab.wait_for_page(lambda s: s["connection"] == "conn stale", "go stale")
    assert len(state["configs"]) == 2
    assert "last update" in tab.evaluate("document.getElementById('conn').textContent")


# -- the routes over HTTP -------------------------------------------------------------------


def test_status_json_is_the_board_snapshot_of_the_known_configs(gateway: RunningServer) -> None:
    chat(gateway.url, "prod")
    response = httpx.get(f"{gateway.url}/status.json", timeout=WAIT_S)
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    data = response.json()
    assert [c["id"] for c in data["configs"]] == ["prod", "steady"]
    prod = data["configs"][0]
    assert [(t["label"], t["attempts"]) for t in prod["targets"]] == [
        ("primary", 1),
        ("backup", 1),
    ]
    assert data["last_fallback"]["route"] == "config.targets[0]:503>config.targets[1]:200"


def test_status_page_allows_only_its_own_inline_code_and_origin(gateway: RunningServer) -> None:
    response = httpx.get(f"{gateway.url}/status", timeout=WAIT_S)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    policy = dict(part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["connect-src"] == "'self'"
    assert policy["script-src"].startswith("'sha256-")
    assert re.findall(r'(?:src|href|action)="([^"]*)"', response.text) == ["data:,"]
