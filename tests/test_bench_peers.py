"""The peers' harness pieces (benchmarks/peers.py) that can be checked without the peers.

Portkey's gateway answers 500 to every streamed request unless its upstream event-stream
responses carry mutable headers; the preloaded shim gives them that. It is checked under Node
itself (skipped where Node is not installed) against a loopback server: after the shim, an
event-stream response's headers take Portkey's header update, other responses are untouched.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks.peers import PORTKEY_STREAM_SHIM, portkey_argv

NODE = shutil.which("node")

PROBE = r"""
const http = require("node:http");
const server = http.createServer((req, res) => {
  const type = req.url === "/sse" ? "text/event-stream" : "application/json";
  res.writeHead(200, { "content-type": type });
  res.end(req.url === "/sse" ? "data: [DONE]\n\n" : "{}");
});
server.listen(0, "127.0.0.1", async () => {
  const base = `http://127.0.0.1:${server.address().port}`;
  const out = {};
  for (const path of ["/sse", "/json"]) {
    const res = await fetch(base + path);
    try {
      res.headers.append("x-portkey-retry-attempt-count", "0");
      out[path] = { appended: true, body: await res.text() };
    } catch (err) {
      out[path] = { appended: false, error: String(err), body: await res.text() };
    }
  }
  console.log(JSON.stringify(out));
  server.close();
});
"""


def probe(preload: bool) -> dict[str, dict[str, object]]:
    assert NODE is not None
    argv = [NODE, *(["-r", str(PORTKEY_STREAM_SHIM)] if preload else []), "-e", PROBE]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    result: dict[str, dict[str, object]] = json.loads(done.stdout)
    return result


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_stream_shim_makes_event_stream_headers_mutable() -> None:
    without = probe(preload=False)
    assert without["/sse"]["appended"] is False  # what makes Portkey answer 500
    shimmed = probe(preload=True)
    assert shimmed["/sse"] == {"appended": True, "body": "data: [DONE]\n\n"}
    assert shimmed["/json"]["appended"] is False  # other responses are left as fetch made them
    assert shimmed["/json"]["body"] == "{}"


def test_portkey_is_started_with_the_shim_preloaded() -> None:
    argv = portkey_argv(Path("/peers/start-server.js"), 8123)
    assert argv[:3] == ["node", "-r", str(PORTKEY_STREAM_SHIM)]
    assert argv[3:] == ["/peers/start-server.js", "--port=8123", "--headless"]
    assert PORTKEY_STREAM_SHIM.is_file()
