"""``relaygate demo``: the gateway on the bundled demo config, with its two simulated upstreams.

Starts a fault simulator that always answers 503 on 127.0.0.1:9101 and a healthy one on
127.0.0.1:9102 (in background threads), then serves the gateway on 127.0.0.1:8787 with
``demo.yaml``, so every request visibly falls back from the first target to the second.
"""

from __future__ import annotations

import socket
import sys
import threading
from importlib import resources
from pathlib import Path
from typing import Any

import uvicorn

from relaygate.app import create_app
from relaygate.config.server import ServerConfig, parse_document, server_config_from_document
from relaygate.exporters.logging import configure_logging
from relaygate.mock import MockSettings, create_mock_app
from relaygate.serving import PortInUse, bind_listener, run_on_socket, uvicorn_options

UPSTREAM_PORTS = (9101, 9102)
"""The demo's simulated upstreams' default ports: always 503, and healthy (``demo.yaml``
points at them)."""

DEMO_CONFIG = Path(str(resources.files("relaygate.demo").joinpath("demo.yaml")))
"""The bundled demo server config."""

CURL = """\
Try it:
  curl -s -i http://127.0.0.1:{port}/v1/chat/completions \\
    -H 'content-type: application/json' \\
    -d '{"model": "any", "messages": [{"role": "user", "content": "hello"}]}'

Watch the headers: x-relaygate-route tells the story (503s, then 200 from the backup),
x-portkey-last-used-option-index names the target that answered.
Status page: http://127.0.0.1:{port}/status   Metrics: http://127.0.0.1:{port}/metrics
Stop: Ctrl-C
"""


def curl_text(port: int) -> str:
    """What the demo prints to try it, for the gateway on ``port``."""
    return CURL.replace("{port}", str(port))


def _background(app: Any, sock: socket.socket) -> None:
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()


def demo_config(upstream_ports: tuple[int, int] = UPSTREAM_PORTS) -> ServerConfig:
    """The bundled demo config, its two targets pointed at ``upstream_ports``."""
    text = DEMO_CONFIG.read_text(encoding="utf-8")
    for default, chosen in zip(UPSTREAM_PORTS, upstream_ports, strict=True):
        text = text.replace(f"127.0.0.1:{default}/", f"127.0.0.1:{chosen}/")
    return server_config_from_document(parse_document(text, DEMO_CONFIG))


def run_demo(port: int = 8787, upstream_ports: tuple[int, int] = UPSTREAM_PORTS) -> int:
    """Run the demo until interrupted; returns the exit status.

    Every port is bound before anything is announced: a port in use is one line on
    stderr naming it and the option that moves it, and exit status 2.
    """
    socks: list[socket.socket] = []
    try:
        for upstream_port in upstream_ports:
            hint = (
                "is another relaygate demo running? --upstream-ports A,B moves the demo's "
                "simulated upstreams"
            )
            socks.append(bind_listener("127.0.0.1", upstream_port, hint=hint))
        socks.append(bind_listener("127.0.0.1", port))
    except PortInUse as exc:
        for sock in socks:
            sock.close()
        print(f"relaygate demo: {exc}", file=sys.stderr)
        return 2
    flaky, healthy, gateway = socks
    _background(create_mock_app(MockSettings(name="flaky-primary", error_rate=1.0)), flaky)
    _background(create_mock_app(MockSettings(name="healthy-backup")), healthy)
    server = demo_config(upstream_ports)
    configure_logging(server.telemetry.logs.level, server.telemetry.logs.format)
    print(f"relaygate demo on http://127.0.0.1:{port}\n\n{curl_text(port)}", flush=True)
    started = run_on_socket(create_app(server), gateway, **uvicorn_options(server))
    return 0 if started else 3
