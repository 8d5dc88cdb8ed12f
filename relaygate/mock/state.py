"""Per-app state of the mock upstream: script position, counters and recorded requests."""

from __future__ import annotations

import random
from collections import Counter, deque
from typing import Any

import orjson
from starlette.requests import Request

from relaygate.mock.faults import Fault, MockSettings

_RECORDED_LIMIT = 100


class _MockState:
    """Script position, counters and recorded requests of one app instance.

    Mutations happen synchronously between awaits, so concurrent asyncio
    requests on one event loop never see a half-updated state.
    """

    def __init__(self, settings: MockSettings) -> None:
        self.settings = settings
        self.script: tuple[Fault, ...] = settings.script
        self.loop_script = settings.loop_script
        self.position = 0
        self.rng = random.Random(settings.seed)
        self.requests = 0
        self.by_status: Counter[str] = Counter()
        self.recorded: deque[dict[str, Any]] = deque(maxlen=_RECORDED_LIMIT)
        self.sequence = 0

    def reset(self) -> None:
        self.position = 0
        self.rng = random.Random(self.settings.seed)
        self.requests = 0
        self.by_status.clear()
        self.recorded.clear()

    def set_script(self, script: tuple[Fault, ...], loop: bool) -> None:
        self.script = script
        self.loop_script = loop
        self.position = 0

    def next_fault(self) -> Fault:
        if self.position < len(self.script):
            fault = self.script[self.position]
            self.position += 1
            return fault
        if self.loop_script and self.script:
            fault = self.script[self.position % len(self.script)]
            self.position += 1
            return fault
        if self.rng.random() < self.settings.error_rate:
            return Fault(status=self.settings.error_status)
        return Fault()

    def next_id(self, prefix: str) -> str:
        self.sequence += 1
        return f"{prefix}-mock{self.sequence:06d}"

    def record(self, request: Request, body: object) -> None:
        headers: dict[str, str] = {}
        for raw_name, raw_value in request.headers.raw:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.requests += 1
        self.recorded.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "headers": headers,
                "body": body,
            }
        )

    def count(self, key: str) -> None:
        self.by_status[key] += 1


_NOT_JSON = object()


def _parse_body(raw: bytes) -> object:
    """Parsed JSON body, ``None`` for an empty body, ``_NOT_JSON`` if malformed."""
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _NOT_JSON
