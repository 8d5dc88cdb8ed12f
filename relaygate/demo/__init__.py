"""``relaygate demo``: the gateway on the bundled demo config, with its two simulated upstreams.

Starts a fault simulator that always answers 503 on 127.0.0.1:9101 and a healthy one on
127.0.0.1:9102 (in background threads), then serves the gateway on 127.0.0.1:8787 with
``demo.yaml``, so every request visibly falls back from the first target to the second.
"""

from __future__ import annotations

import threading
from importlib import resources
from pathlib import Path
from typing import Any

import uvicorn

from relaygate.app import create_app
from relaygate.config.server import load_server_config
from relaygate.exporters.logging import configure_logging
from relaygate.mock import MockSettings, create_mock_app
from relaygate.serving import uvicorn_options

DEMO_CONFIG = Path(str(resources.files("relaygate.demo").joinpath("demo.yaml")))
"""The bundled demo server config."""

CURL = """\
Try it:
  curl -s -i http://127.0.0.1:8787/v1/chat/completions \\
    -H 'content-type: application/json' \\
    -d '{"model": "any", "messages": [{"role": "user", "content": "hello"}]}'

Watch the headers: x-relaygate-route tells the story (503s, then 200 from the backup),
x-portkey-last-used-option-index names the target that answered.
Status page: http://127.0.0.1:8787/status   Metrics: http://127.0.0.1:8787/metrics
Stop: Ctrl-C
"""


def _background(app: Any, port: int) -> None:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    threading.Thread(target=uvicorn.Server(config).run, daemon=True).start()


def run_demo(port: int = 8787) -> None:
    """Run the demo until interrupted."""
    _background(create_mock_app(MockSettings(name="flaky-primary", error_rate=1.0)), 9101)
    _background(create_mock_app(MockSettings(name="healthy-backup")), 9102)
    server = load_server_config(DEMO_CONFIG)
    configure_logging(server.telemetry.logs.level, server.telemetry.logs.format)
    print(f"relaygate demo on http://127.0.0.1:{port}\n\n{CURL}", flush=True)
    uvicorn.run(create_app(server), host="127.0.0.1", port=port, **uvicorn_options(server))
