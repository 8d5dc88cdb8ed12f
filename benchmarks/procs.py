"""Processes of a benchmark run: start, wait until ready, measure, stop.

Every process is started in its own session (so stopping its process group also stops its
workers), optionally pinned to CPU cores with ``taskset``, and its pid is appended to
``<run dir>/pids`` so ``run.sh``'s exit trap can stop it even if the harness itself dies.
CPU time is read from each live process's CPU-time clock (``clock_gettime`` on the
process's clock id, nanoseconds) and resident memory from ``/proc``, for a process and all
its descendants. ``/proc/<pid>/stat`` counts CPU in clock ticks (10 ms here): a figure
taken over 20,000 streamed chunks moved in steps of 0.5 µs per chunk, coarser than a
1.1x goal at 4 µs; it is the fallback where the clock cannot be read.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
"""Kernel clock ticks per second (the unit of ``/proc/<pid>/stat`` CPU times)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; everything after its ')' is split.
    return raw[raw.rindex(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    tree = [pid]
    index = 0
    while index < len(tree):
        tree += children.get(tree[index], [])
        index += 1
    return tree


def python_env(tree: Path, **extra: str) -> dict[str, str]:
    """The environment for a benchmark's Python process: this one's without ``OTEL_*``
    variables (only the generated configs decide), ``PYTHONPATH`` at the code ``tree``, plus
    ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = str(tree)
    env.update(extra)
    return env


def process_cpu_clock(pid: int) -> int:
    """The clock id of process ``pid``'s CPU time, as ``clock_getcpuclockid(3)`` makes it
    (Linux: the process-wide scheduler clock, every thread's time, exited ones included)."""
    return ((~pid) << 3) | 2


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants (and reaped children):
    each live process's CPU-time clock, its reaped children's ticks from ``/proc``; a
    process whose clock cannot be read is counted in ticks as a whole."""
    seconds = 0.0
    ticks = 0
    for member in descendants(pid):
        fields = _stat_fields(member)
        if fields is None:
            continue
        # fields[11..14] are utime, stime, cutime, cstime (stat fields 14-17).
        try:
            seconds += time.clock_gettime(process_cpu_clock(member))
        except OSError:  # gone meanwhile, or not ours to read
            ticks += int(fields[11]) + int(fields[12])
        ticks += int(fields[13]) + int(fields[14])
    return seconds + ticks / CLK_TCK


def tree_rss_bytes(pid: int) -> int:
    """Sum of ``VmRSS`` over ``pid`` and its live descendants."""
    total = 0
    for member in descendants(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
                break
    return total


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Whether a GET of ``url`` answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


@dataclass
class Service:
    """One started process (and its process group)."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    cores: str | None = None
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        """The started process's pid (the root of its tree)."""
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by the process tree."""
        return tree_cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        """Resident memory of the process tree now."""
        return tree_rss_bytes(self.pid)

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc.poll() is None

    def wait_ready(self, check: Callable[[], bool], timeout_s: float = 60.0) -> None:
        """Poll ``check`` until it holds; raise with the log's tail if the process dies or
        ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            if check():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout_s:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the process's output."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL it if it has not exited after ``grace_s``."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


class Processes:
    """Starts services for one run and stops all of them at the end (in reverse order)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.services: list[Service] = []
        self._pid_file = run_dir / "pids"

    def start(
        self,
        name: str,
        argv: Sequence[str],
        port: int,
        cores: str | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Service:
        """Start ``argv`` (pinned to ``cores`` if given) with output to ``<run dir>/<name>.log``."""
        log = self.run_dir / f"{name}.log"
        command = ["taskset", "-c", cores, *argv] if cores else list(argv)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        with self._pid_file.open("a") as pids:
            pids.write(f"{proc.pid}\n")
        service = Service(name=name, port=port, proc=proc, log=log, cores=cores)
        self.services.append(service)
        return service

    def stop(self, service: Service) -> None:
        """Stop one service now."""
        service.stop()
        if service in self.services:
            self.services.remove(service)

    def stop_all(self) -> None:
        """Stop every service still running, most recently started first."""
        for service in reversed(self.services):
            with contextlib.suppress(Exception):
                service.stop()
        self.services.clear()


@dataclass
class ServiceGroup:
    """Several started processes measured as one system (replicas behind one load): CPU
    time and resident memory are their sums, and it is alive while all of them are."""

    name: str
    members: list[Service]

    @property
    def port(self) -> int:
        """The first member's port."""
        return self.members[0].port

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by every member's process tree."""
        return sum(member.cpu_seconds() for member in self.members)

    def rss_bytes(self) -> int:
        """Resident memory of every member's process tree now."""
        return sum(member.rss_bytes() for member in self.members)

    def alive(self) -> bool:
        """Whether every member is still running."""
        return all(member.alive() for member in self.members)


Measured = Service | ServiceGroup
"""What a load run brackets with CPU and memory readings: one process tree or a group."""
