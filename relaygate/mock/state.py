"""Per-app state of the mock upstream: script position, counters and recorded requests."""

from __future__ import annotations

import random
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request

from relaygate.mock.faults import Fault, MockSettings

_RECORDED_LIMIT = 100


class _MockState:
    """Script position, counters and recorded requests of one app instance.

    Mutations happen synchronously between awaits, so concurrent asyncio
    requests on one event loop never see a half-updated state. ``clock`` (seconds,
    monotonic) times the windows of ``Fault.for_ms`` steps.
    """

    def __init__(self, settings: MockSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.window_start: float | None = None
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
        self.window_start = None
        self.rng = random.Random(self.settings.seed)
        self.requests = 0
        self.by_status.clear()
        self.recorded.clear()

    def set_script(self, script: tuple[Fault, ...], loop: bool) -> None:
        self.script = script
        self.loop_script = loop
        self.position = 0
        self.window_start = None

    def _step(self) -> Fault | None:
        """The script step at the current position (``None``: the script is used up)."""
        if self.position < len(self.script):
            return self.script[self.position]
        if self.loop_script and self.script:
            return self.script[self.position % len(self.script)]
        return None

    def _skip_whole_cycles(self) -> None:
        """Of a looping script of timed steps only, skip the whole cycles that passed
        since the current window began, so a long quiet spell costs no walk through them."""
        start = self.window_start
        if start is None or not self.loop_script or not self.script:
            return
        windows = [fault.for_ms for fault in self.script]
        if any(ms is None for ms in windows):
            return
        cycle = sum(ms for ms in windows if ms is not None) / 1000
        passed = self.clock() - start
        if passed > cycle:
            self.window_start = start + (passed // cycle) * cycle

    def next_fault(self) -> Fault:
        """The fault answering the next request: the script's, then ``error_rate``'s.

        A step with ``for_ms`` answers every request within its window; once the window
        is over the next step's window starts where it ended (so the script follows the
        clock, also across steps no request fell into).
        """
        self._skip_whole_cycles()
        while (fault := self._step()) is not None:
            if fault.for_ms is None:
                self.position += 1
                self.window_start = None
                return fault
            now = self.clock()
            start = now if self.window_start is None else self.window_start
            end = start + fault.for_ms / 1000
            if now < end:
                self.window_start = start
                return fault
            self.position += 1
            self.window_start = end
        if self.rng.random() < self.settings.error_rate:
            return Fault(status=self.settings.error_status)
        return Fault()

    def next_id(self, prefix: str) -> str:
        self.sequence += 1
        return f"{prefix}-mock{self.sequence:06d}"

    def record(self, request: Request, body: object) -> None:
        headers: dict[str, str] = {}
        path = request.url.path
        raw_headers = request.headers.raw
        original = request.scope.get("relaygate.mock.original")
        if original is not None:  # a request translated from another wire format
            path, raw_headers, body = original
        for raw_name, raw_value in raw_headers:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.requests += 1
        self.recorded.append(
            {
                "method": request.method,
                "path": path,
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
