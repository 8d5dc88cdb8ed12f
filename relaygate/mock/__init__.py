"""A fake OpenAI-compatible upstream LLM provider with scriptable faults.

relaygate's demo, end-to-end tests and benchmarks run this app as a real local
HTTP server, and users run it to rehearse fallback and retry configurations
("what does my gateway do when the primary answers 503, 429, garbage, or
hangs?").

Behaviour per request, in order:

1. The request is recorded (see ``GET /_mock/requests``) and counted.
2. ``MockSettings.api_key`` is enforced (401 on mismatch).
3. The JSON body is parsed and checked (400 on malformed input).
4. A :class:`Fault` is chosen: the ``x-mock-fault`` header if present, else the
   next script step, else the ``error_rate`` dice roll.  Steps 2-3 failing does
   not consume a script step or a dice roll.
5. ``MockSettings.latency_ms + Fault.latency_ms`` elapses, then the fault is
   answered (hang, garbage, error, or a normal/streamed success).

Waiting (latency, hangs) stops early when the client disconnects, so a hanging
request never keeps a server from shutting down once its client gave up.
"""

from __future__ import annotations

from relaygate.mock.app import create_mock_app
from relaygate.mock.cli import add_mock_arguments, serve_mock, settings_from_args
from relaygate.mock.faults import Fault, MockSettings, parse_faults

__all__ = [
    "Fault",
    "MockSettings",
    "add_mock_arguments",
    "create_mock_app",
    "parse_faults",
    "serve_mock",
    "settings_from_args",
]
