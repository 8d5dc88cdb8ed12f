"""Reloading the server config without a restart: SIGHUP, or the config file changing.

A reload reads the file again and compiles it through the same path as ``relaygate serve``
(:func:`~relaygate.config.compile.compile_server`, then a whole new
:class:`~relaygate.gateway.Gateway`). Only when that succeeds is the new gateway swapped
into the :class:`GatewayRef` every request reads once, when it starts: requests in flight
finish on the gateway they started with, new ones get the new one. A file that does not
read, parse or compile is refused with one log line naming every problem, and the running
config stays. What outlives configs is handed from each gateway to the next, so a reload
keeps it: telemetry (metrics, tracer, the status board's hooks), the upstream connection
pool (the first gateway's, closed by it at shutdown) and the
:class:`~relaygate.load.LoadBoard`, keyed by upstream endpoint, so its numbers carry over
for every target the reload did not change.

Settings read when the process starts stay until a restart: ``listen``, ``telemetry``,
``shutdown``, ``reload``, ``auth.admin_keys`` and the connection-level limits
(``limits.header_timeout_ms``, ``limits.max_header_bytes``, ``limits.max_connections``); a
reload that changes them says so in its log line.

The file is watched by polling its size, modification time and inode every
``reload.watch_interval_ms`` (one ``stat`` call), and its content hash when they change; a
change is applied once the file has stayed the same for one more interval, so a file being
written is not read half-way. Polling rather than inotify (``watchfiles``): one ``stat`` a
second costs nothing, and it also sees a Kubernetes ConfigMap update (a symlink swapped
under the file's directory) and files on network filesystems, where inotify events on the
file itself do not arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from pathlib import Path

from relaygate.config import ConfigError
from relaygate.config.compile import compile_server, read_config_file
from relaygate.config.server import ServerConfig
from relaygate.errors import GatewayError
from relaygate.gateway import Gateway

RESTART_ONLY = ("listen", "telemetry", "shutdown", "reload")
"""Server-config sections a reload does not apply (they take effect at a restart)."""

RESTART_ONLY_LIMITS = ("header_timeout_ms", "max_header_bytes", "max_connections")
"""``limits`` fields the connection layer reads once, at start."""

MAX_LOGGED_PROBLEMS = 10
"""Most problems a refused reload's log line lists (then ``(+N more)``)."""


class GatewayRef:
    """The gateway serving new requests. A request reads :attr:`current` once, when it
    starts, and keeps that gateway to the end; a reload replaces it in one assignment."""

    __slots__ = ("current", "generation", "hash")

    def __init__(self, gateway: Gateway, file_hash: str = "") -> None:
        self.current = gateway
        self.generation = 0
        """Reloads applied since the process started."""
        self.hash = file_hash
        """SHA-256 (first 12 hex digits) of the config file the current gateway was built
        from; empty when it was not built from a file."""


def file_hash(data: bytes) -> str:
    """The short content hash reported for a config file."""
    return hashlib.sha256(data).hexdigest()[:12]


def _one_line(exc: ConfigError) -> str:
    problems = [f"{path}: {message}" for path, message in exc.errors]
    shown = "; ".join(problems[:MAX_LOGGED_PROBLEMS])
    more = len(problems) - MAX_LOGGED_PROBLEMS
    return f"{shown}; (+{more} more)" if more > 0 else shown


def restart_only_changes(old: ServerConfig, new: ServerConfig) -> list[str]:
    """The settings that differ between ``old`` and ``new`` but only apply at a restart."""
    changed = [name for name in RESTART_ONLY if getattr(old, name) != getattr(new, name)]
    changed += [
        f"limits.{name}"
        for name in RESTART_ONLY_LIMITS
        if getattr(old.limits, name) != getattr(new.limits, name)
    ]
    if old.auth.admin_keys != new.auth.admin_keys:
        changed.append("auth.admin_keys")
    # The state backend (Redis, the in-process store) is built once and kept across reloads.
    if old.state.redis != new.state.redis:
        changed.append("state.redis")
    if old.state.cache.max_entries != new.state.cache.max_entries:
        changed.append("state.cache.max_entries")
    if old.state.counters != new.state.counters:
        changed.append("state.counters.max_entries")
    return changed


@dataclass(frozen=True)
class Outcome:
    """What one reload did: ``ok``, and the one-line ``detail`` it was logged with."""

    ok: bool
    detail: str


class Reloader:
    """Reloads ``path`` into ``ref`` (see the module docstring).

    ``providers`` are the provider names configs may use (the registry's); ``on_swap`` is
    called with each new gateway after it is swapped in (the app points ``app.state.gateway``
    at it).
    """

    def __init__(
        self,
        path: Path,
        ref: GatewayRef,
        providers: Collection[str],
        on_swap: Callable[[Gateway], None] | None = None,
    ) -> None:
        self._path = path
        self._ref = ref
        self._providers = providers
        self._on_swap = on_swap
        self._root = ref.current
        self._stat: tuple[int, int, int] | None = self._stat_now()
        self._pending: tuple[int, int, int] | None = None
        self._task: asyncio.Task[None] | None = None
        self._signalled = False

    @property
    def path(self) -> Path:
        """The config file reloaded."""
        return self._path

    def _stat_now(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self._path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def reload(self, source: str) -> Outcome:
        """Read, compile and swap in the config file now; ``source`` (``sighup``, ``file``,
        ``api``) names the trigger in the log line. Never raises."""
        tel = self._root.telemetry
        current = self._ref.current
        try:
            data = self._path.read_bytes()
            # Either kind of file serve accepts (a Portkey config under --portkey-config),
            # parsed from the bytes just read, so the hash names what was compiled.
            server = read_config_file(self._path, text=data.decode("utf-8", "replace")).server
            compile_server(server, self._providers)
            deps = replace(
                current.deps,
                telemetry=current.telemetry,
                upstream=self._root.upstream(),
                loads=current.loads,
                circuits=current.circuits,
            )
            gateway = Gateway(server, deps)
        except ConfigError as exc:
            return self._refused(source, _one_line(exc))
        except GatewayError as exc:
            return self._refused(source, exc.message)
        except OSError as exc:
            return self._refused(source, f"cannot read {self._path}: {exc.strerror or exc}")
        except Exception as exc:  # a reload must never take the server down
            return self._refused(source, f"{type(exc).__name__} while loading the config")
        digest = file_hash(data)
        later = restart_only_changes(current.server, server)
        ref = self._ref
        ref.current = gateway
        current.detach()
        ref.generation += 1
        ref.hash = digest
        if self._on_swap is not None:
            self._on_swap(gateway)
        metrics = tel.metrics
        tel.guard(lambda: metrics.config_reloads.labels("ok").inc())
        tel.guard(metrics.config_generation.set, ref.generation)
        detail = f"generation {ref.generation}, hash {digest}"
        if later:
            detail += f"; applied at the next restart only: {', '.join(later)}"
        tel.guard(
            tel.logger.info,
            "config_reloaded",
            source=source,
            path=str(self._path),
            generation=ref.generation,
            hash=digest,
            configs=gateway.configs.config_ids(),
            restart_needed=later,
        )
        return Outcome(True, detail)

    def _refused(self, source: str, why: str) -> Outcome:
        tel = self._root.telemetry
        tel.guard(lambda: tel.metrics.config_reloads.labels("refused").inc())
        tel.guard(
            tel.logger.error,
            "config_reload_refused",
            source=source,
            path=str(self._path),
            error=why,
            kept_generation=self._ref.generation,
            kept_hash=self._ref.hash,
        )
        return Outcome(False, why)

    def changed(self) -> bool:
        """Whether the file's stat changed since last seen, and then stayed the same for one
        check (a file still being written waits one more interval); records what it saw."""
        seen = self._stat_now()
        if seen == self._stat:
            if self._pending is not None and self._pending == seen:
                self._pending = None
                return True
            return False
        self._stat = seen
        self._pending = seen
        return False

    async def watch(self, interval_s: float) -> None:
        """Poll the file every ``interval_s``; reload when its content hash changed."""
        while True:
            await asyncio.sleep(interval_s)
            if not self.changed():
                continue
            try:
                digest = file_hash(self._path.read_bytes())
            except OSError:
                digest = ""
            if digest != self._ref.hash:
                self.reload("file")

    def start(self, interval_s: float) -> None:
        """Start the file watch (unless ``interval_s`` is 0) and, on the main thread of a
        Unix process, reload on SIGHUP. Call from the running event loop."""
        loop = asyncio.get_running_loop()
        if interval_s > 0:
            self._task = loop.create_task(self.watch(interval_s))
        if hasattr(signal, "SIGHUP") and threading.current_thread() is threading.main_thread():
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signal.SIGHUP, self.reload, "sighup")
                self._signalled = True

    async def stop(self) -> None:
        """Stop watching and restore SIGHUP's default."""
        if self._signalled:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._signalled = False
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
