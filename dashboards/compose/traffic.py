"""Demo traffic for the compose setup: a steady trickle of chat requests through relaygate.

Sends ``TRAFFIC_RPS`` requests per second (default 3) to ``RELAYGATE_URL`` for
``TRAFFIC_SECONDS`` seconds (default 3600), then exits. Every fifth request streams (with
usage), and one in four uses the ``retrying`` config, so every dashboard panel has data.
"""

from __future__ import annotations

import os
import time

import httpx

URL = os.environ.get("RELAYGATE_URL", "http://relaygate:8787").rstrip("/")
RPS = float(os.environ.get("TRAFFIC_RPS", "3"))
SECONDS = float(os.environ.get("TRAFFIC_SECONDS", "3600"))


def main() -> None:
    """Send the demo requests until the time is up."""
    deadline = time.monotonic() + SECONDS
    with httpx.Client(base_url=URL, timeout=30) as client:
        while not _ready(client):
            if time.monotonic() > deadline:
                return
            time.sleep(1)
        sent = 0
        while time.monotonic() < deadline:
            stream = sent % 5 == 0
            config = "retrying" if sent % 4 == 3 else "fallback"
            body = {
                "model": "demo",
                "messages": [{"role": "user", "content": f"hello #{sent}"}],
                "stream": stream,
            }
            if stream:
                body["stream_options"] = {"include_usage": True}
            try:
                with client.stream(
                    "POST",
                    "/v1/chat/completions",
                    json=body,
                    headers={"x-portkey-config": config},
                ) as response:
                    response.read()
            except httpx.HTTPError as exc:
                print(f"traffic: {exc!r}", flush=True)
            sent += 1
            time.sleep(1 / RPS)
    print(f"traffic: sent {sent} requests", flush=True)


def _ready(client: httpx.Client) -> bool:
    try:
        return client.get("/health").status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
