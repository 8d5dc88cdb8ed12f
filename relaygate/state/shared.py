"""Redis in front of a local fallback: shared state that never fails a request.

:class:`SharedState` runs each batch on the remote backend. When that raises (Redis down,
refusing, timing out), the batch is answered by the process's own
:class:`~relaygate.state.backend.MemoryBackend` instead, and for ``retry_interval_s`` every
batch goes straight to the local one, so an outage costs one failed round trip per interval,
not one per request. The first batch after the interval tries the remote backend again; when
it answers, the state is shared again (what was counted locally meanwhile stays local).

While the remote backend is down, limits are counted per process (each replica and worker
admits up to the whole limit) and cached answers are per process. Every failed round trip
counts in ``relaygate_state_backend_errors_total``; ``relaygate_state_backend_up`` is 1
while the remote backend answers; a ``state_backend_down`` warning is logged at most once
per ``log_interval_s`` (a backend that flaps does not flood the log), and
``state_backend_recovered`` once when it answers again after a logged one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from relaygate.state.backend import MemoryBackend, Op, Result, StateBackend
from relaygate.telemetry import Telemetry

__all__ = ["SharedState"]


class SharedState:
    """A :class:`~relaygate.state.backend.StateBackend` that prefers ``remote`` and falls
    back to ``local`` (see the module docstring). ``clock`` is monotonic seconds."""

    def __init__(
        self,
        remote: StateBackend,
        local: MemoryBackend,
        telemetry: Telemetry,
        *,
        retry_interval_s: float = 1.0,
        log_interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.remote = remote
        self.local = local
        self._tel = telemetry
        self._retry_s = retry_interval_s
        self._log_s = log_interval_s
        self._clock = clock
        self._down_until = 0.0
        self._logged_at: float | None = None
        self._down_logged = False
        self.up = True
        """Whether the last remote round trip succeeded."""
        self.shared = remote.shared
        telemetry.guard(telemetry.metrics.state_up.set, 1)

    async def run(self, ops: Sequence[Op]) -> list[Result]:
        """Run ``ops`` remotely, or locally while the remote backend is down."""
        now = self._clock()
        if not self.up and now < self._down_until:
            return self.local.run_now(ops)
        try:
            results = await self.remote.run(ops)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any remote failure: answer locally, never fail
            self._failed(now, exc)
            return self.local.run_now(ops)
        if not self.up:
            self._recovered()
        return results

    def _failed(self, started: float, exc: Exception) -> None:
        """A round trip sent at ``started`` failed. Requests that shared it (sent before
        the backend was known down) fail together and count once."""
        if not self.up and started < self._down_until:
            return
        tel = self._tel
        now = self._clock()
        tel.guard(tel.metrics.state_errors.inc)
        self._down_until = now + self._retry_s
        if self.up:
            self.up = False
            tel.guard(tel.metrics.state_up.set, 0)
        if self._logged_at is None or now - self._logged_at >= self._log_s:
            self._logged_at = now
            self._down_logged = True
            tel.guard(
                tel.logger.warning,
                "state_backend_down",
                error=type(exc).__name__,
                fallback="local state: limits and cache are per process until it returns",
                retry_interval_s=self._retry_s,
            )

    def _recovered(self) -> None:
        tel = self._tel
        self.up = True
        tel.guard(tel.metrics.state_up.set, 1)
        if self._down_logged:
            self._down_logged = False
            tel.guard(tel.logger.warning, "state_backend_recovered")

    async def aclose(self) -> None:
        """Close the remote backend's connections."""
        await self.remote.aclose()
