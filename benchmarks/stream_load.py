"""A lean asyncio load generator for the stream scenarios: open streams, long streams, a mix.

Raw asyncio protocols (uvloop), one TCP connection per open stream (kept alive and reused by
the mixed load), HTTP/1.1 with ``content-length`` and ``chunked`` answers decoded. Every chunk
the upstream (:mod:`benchmarks.stream_upstream`) sends carries its send time; on arrival the
client records the chunk's **delivery delay** (arrival minus send, ``CLOCK_MONOTONIC``
nanoseconds, the same clock in both processes) and its **gap** since the stream's previous
chunk. The delay through a gateway minus the delay straight from the upstream, at the same
load, is the latency the gateway adds to each chunk.

Nothing here reads a clock other than ``time.monotonic_ns`` and ``loop.time``; percentiles
are by nearest rank.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, cast

from benchmarks.stream_upstream import STAMP_MARK

_MARK_LEN: Final = len(STAMP_MARK)
_HEADER_END: Final = b"\r\n\r\n"


@dataclass(frozen=True)
class Req:
    """One kind of request: where, with which headers and body (``@U@`` in the body is
    replaced by a number unique to each request)."""

    port: int
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    chunks: int = 0
    """Chunks a complete answer carries (0: not a stream)."""

    def wire(self, unique: int = 0) -> bytes:
        """The request as bytes on the wire."""
        body = self.body.replace(b"@U@", str(unique).encode()) if b"@U@" in self.body else self.body
        head = [
            f"POST {self.path} HTTP/1.1",
            f"host: 127.0.0.1:{self.port}",
            "content-type: application/json",
            "accept: text/event-stream, application/json",
            f"content-length: {len(body)}",
        ]
        head += [f"{name}: {value}" for name, value in self.headers]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class Recorder:
    """Chunk delays and gaps (nanoseconds) recorded while ``window`` holds, plus a count of
    every chunk seen."""

    window: tuple[int, int] = (0, 2**63)
    delays: list[int] = field(default_factory=list)
    gaps: list[int] = field(default_factory=list)
    chunks: int = 0

    def chunk(self, stamp: int, now: int, previous: int) -> None:
        """Record one chunk sent at ``stamp`` that arrived at ``now``."""
        self.chunks += 1
        if self.window[0] <= stamp <= self.window[1]:
            self.delays.append(now - stamp)
            if previous:
                self.gaps.append(now - previous)


@dataclass
class Answer:
    """What one request got: status (0: no answer), times, chunks, why it failed."""

    status: int = 0
    sent_ns: int = 0
    first_ns: int = 0
    done_ns: int = 0
    chunks: int = 0
    error: str = ""

    @property
    def latency_ms(self) -> float:
        """Request written to answer complete, in milliseconds."""
        return (self.done_ns - self.sent_ns) / 1e6 if self.done_ns else 0.0

    @property
    def ttfb_ms(self) -> float:
        """Request written to first body byte, in milliseconds."""
        return (self.first_ns - self.sent_ns) / 1e6 if self.first_ns else 0.0


class _Conn(asyncio.Protocol):
    """One keep-alive client connection answering one request at a time."""

    def __init__(self, recorder: Recorder | None) -> None:
        self.recorder = recorder
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self._answer = Answer()
        self._done: asyncio.Future[Answer] | None = None
        self._reset()

    def _reset(self) -> None:
        self._head = b""
        self._in_body = False
        self._length = -1
        self._chunked = False
        self._raw = b""
        self._left = 0
        self._skip = 0
        self._carry = b""
        self._previous = 0
        self._body_seen = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        """A request still waiting ends here: complete when its length was unknown."""
        self.transport = None
        if self._done is not None and not self._done.done():
            if self._in_body and self._length < 0 and not self._chunked:
                self._finish()
            else:
                self._answer.error = "connection closed mid-answer"
                self._done.set_result(self._answer)
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, data: bytes) -> asyncio.Future[Answer]:
        """Write a request; the future resolves with its :class:`Answer`."""
        assert self.transport is not None
        self._reset()
        self._answer = Answer(sent_ns=time.monotonic_ns())
        self._done = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._done

    def data_received(self, data: bytes) -> None:
        """Parse the head once, then decode and scan the body."""
        if not self._in_body:
            self._head += data
            end = self._head.find(_HEADER_END)
            if end < 0:
                return
            head, data = self._head[:end], self._head[end + 4 :]
            self._in_body = True
            self._answer.status = int(head[9:12])
            for line in head.lower().split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name == b"content-length":
                    self._length = int(value)
                elif name == b"transfer-encoding" and b"chunked" in value:
                    self._chunked = True
            if self._length == 0:
                self._finish()
                return
        if not data:
            return
        if self._chunked:
            payload, finished = self._dechunk(data)
        else:
            payload = data
            self._body_seen += len(data)
            finished = 0 <= self._length <= self._body_seen
        if payload:
            if not self._answer.first_ns:
                self._answer.first_ns = time.monotonic_ns()
            self._scan(payload)
        if finished:
            self._finish()

    def _dechunk(self, data: bytes) -> tuple[bytes, bool]:
        buf = self._raw + data if self._raw else data
        out: list[bytes] = []
        pos, size_of = 0, len(buf)
        while pos < size_of:
            if self._left:
                take = min(self._left, size_of - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self._left -= take
                if not self._left:
                    self._skip = 2
            elif self._skip:
                take = min(self._skip, size_of - pos)
                pos += take
                self._skip -= take
            else:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                size = int(buf[pos:eol].split(b";", 1)[0], 16)
                if size == 0:
                    if buf.find(b"\r\n", eol + 2) < 0:
                        break
                    self._raw = b""
                    return b"".join(out), True
                self._left = size
                pos = eol + 2
        self._raw = buf[pos:]
        return b"".join(out), False

    def _scan(self, payload: bytes) -> None:
        buf = self._carry + payload if self._carry else payload
        now = time.monotonic_ns()
        recorder = self.recorder
        pos = 0
        while True:
            at = buf.find(STAMP_MARK, pos)
            if at < 0:
                self._carry = buf[max(pos, len(buf) - _MARK_LEN + 1) :]
                return
            start = at + _MARK_LEN
            end = buf.find(b" ", start)
            if end < 0:
                self._carry = buf[at:]
                return
            self._answer.chunks += 1
            if recorder is not None:
                recorder.chunk(int(buf[start:end]), now, self._previous)
            self._previous = now
            pos = end

    def _finish(self) -> None:
        self._answer.done_ns = time.monotonic_ns()
        done, self._done = self._done, None
        if done is not None and not done.done():
            done.set_result(self._answer)


async def connect(port: int, recorder: Recorder | None = None) -> _Conn:
    """A new connection to ``127.0.0.1:port``."""
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(lambda: _Conn(recorder), "127.0.0.1", port)
    return proto


async def one(
    req: Req, recorder: Recorder | None, timeout_s: float, conn: _Conn | None = None
) -> tuple[Answer, _Conn | None]:
    """One request (on ``conn`` or a new connection); the answer and the connection if it
    can be reused."""
    try:
        if conn is None or conn.transport is None:
            conn = await asyncio.wait_for(connect(req.port, recorder), timeout_s)
        conn.recorder = recorder
        answer = await asyncio.wait_for(conn.send(req.wire(random.getrandbits(48))), timeout_s)
    except TimeoutError:
        if conn is not None and conn.transport is not None:
            conn.transport.close()
        return Answer(error="timeout"), None
    except OSError as exc:
        return Answer(error=f"connect: {type(exc).__name__}"), None
    if req.chunks and not answer.error and answer.chunks != req.chunks and answer.status < 300:
        answer.error = f"stream cut: {answer.chunks} of {req.chunks} chunks"
    return answer, (conn if conn.transport is not None and not answer.error else None)


def percentile(values: list[int] | list[float], pct: float) -> float:
    """The ``pct`` percentile of ``values`` by nearest rank (0.0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return float(ordered[rank - 1])


# --- scenarios -----------------------------------------------------------------------------

Probe = Callable[[str], Awaitable[None]]
"""Called at the named moments of a run (``window_start``, ``middle``, ``window_end``) so
the harness can read the measured process's CPU and memory then."""


async def open_streams(
    req: Req, count: int, duration_s: float, ramp_s: float, probe: Probe
) -> dict[str, Any]:
    """``count`` streams opened evenly over ``ramp_s`` and held to their end; chunk delays
    and gaps measured in the window where all of them are open."""
    loop = asyncio.get_running_loop()
    now_ns = time.monotonic_ns()
    settle = max(0.5, min(2.0, duration_s / 10))
    w0 = now_ns + int((ramp_s + settle) * 1e9)
    w1 = now_ns + int((duration_s - settle) * 1e9)
    recorder = Recorder((w0, w1))
    started = loop.time()
    answers: list[Answer] = []

    async def stream(index: int) -> None:
        await asyncio.sleep(max(0.0, started + ramp_s * index / count - loop.time()))
        answer, conn = await one(req, recorder, duration_s + 60)
        answers.append(answer)
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    async def probes() -> None:
        marks = (
            ("window_start", w0),
            ("middle", (w0 + w1) // 2),
            ("window_end", w1),
        )
        for name, at in marks:
            await asyncio.sleep(max(0.0, (at - time.monotonic_ns()) / 1e9))
            chunks_before = recorder.chunks
            await probe(name)
            if name == "window_start":
                window_chunks[0] = chunks_before
            elif name == "window_end":
                window_chunks[1] = chunks_before

    window_chunks = [0, 0]
    tasks = [asyncio.ensure_future(stream(i)) for i in range(count)]
    probing = asyncio.ensure_future(probes())
    await asyncio.gather(*tasks)
    await probing
    return {
        "streams": count,
        "duration_s": duration_s,
        "ramp_s": ramp_s,
        "window_s": (w1 - w0) / 1e9,
        "chunks_received": recorder.chunks,
        "chunks_expected": count * req.chunks,
        "window_chunks": window_chunks[1] - window_chunks[0],
        "errors": _errors(answers, count),
        **_delay_summary(recorder),
    }


async def long_streams(req: Req, repeats: int) -> dict[str, Any]:
    """``repeats`` sequential long streams on one connection: time per stream and chunk."""
    recorder = Recorder()
    totals: list[float] = []
    answers: list[Answer] = []
    conn: _Conn | None = None
    for _ in range(repeats):
        answer, conn = await one(req, recorder, 60.0, conn)
        answers.append(answer)
        if not answer.error and 200 <= answer.status < 300:
            totals.append(answer.latency_ms)
    if conn is not None and conn.transport is not None:
        conn.transport.close()
    return {
        "streams": repeats,
        "chunks_per_stream": req.chunks,
        "chunks_received": recorder.chunks,
        "errors": _errors(answers, repeats),
        "total_p50_ms": percentile(totals, 50),
        "total_min_ms": min(totals) if totals else 0.0,
        "per_chunk_us": percentile(totals, 50) * 1000 / req.chunks if totals else 0.0,
        **_delay_summary(recorder),
    }


MIX: Final = (("stream", 16), ("retry", 2), ("fallback", 1), ("client_error", 1))
"""The mixed load in 20ths: 80% streamed, 10% retried, 5% falling back, 5% client errors."""


def mix_sequence(total: int, seed: int = 16) -> list[str]:
    """``total`` request kinds in MIX's proportions, shuffled deterministically."""
    block = [kind for kind, share in MIX for _ in range(share)]
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < total:
        rng.shuffle(block)
        out += block
    return out[:total]


async def mixed(
    reqs: dict[str, Req], rate: float, duration_s: float, probe: Probe, max_open: int = 1000
) -> dict[str, Any]:
    """Requests of MIX's kinds at a fixed arrival rate (open loop) for ``duration_s``; each
    kind's answers by status class and its latency. Arrivals while ``max_open`` requests are
    outstanding are shed by the load generator and counted."""
    loop = asyncio.get_running_loop()
    total = int(rate * duration_s)
    kinds = mix_sequence(total)
    pool: list[_Conn] = []
    results: dict[str, list[Answer]] = {kind: [] for kind, _ in MIX}
    shed = {kind: 0 for kind, _ in MIX}
    open_now = 0

    async def send(kind: str) -> None:
        nonlocal open_now
        open_now += 1
        conn = pool.pop() if pool else None
        answer, conn = await one(reqs[kind], None, 30.0, conn)
        open_now -= 1
        results[kind].append(answer)
        if conn is not None:
            pool.append(conn)

    await probe("window_start")
    started = loop.time()
    tasks: list[asyncio.Future[None]] = []
    for index, kind in enumerate(kinds):
        await asyncio.sleep(max(0.0, started + index / rate - loop.time()))
        if open_now >= max_open:
            shed[kind] += 1
            continue
        tasks.append(asyncio.ensure_future(send(kind)))
    issued_s = loop.time() - started
    await asyncio.gather(*tasks)
    elapsed = loop.time() - started
    await probe("window_end")
    for conn in pool:
        if conn.transport is not None:
            conn.transport.close()
    by_kind: dict[str, Any] = {}
    for kind, answers in results.items():
        ok = [a for a in answers if not a.error and 200 <= a.status < 300]
        lat = [a.latency_ms for a in answers if not a.error and a.status]
        by_kind[kind] = {
            "sent": len(answers),
            "shed": shed[kind],
            "ok": len(ok),
            "status": _status_counts(answers),
            "errors": _errors(answers, len(answers)),
            "latency_p50_ms": percentile(lat, 50),
            "latency_p99_ms": percentile(lat, 99),
            "ttfb_p50_ms": percentile([a.ttfb_ms for a in answers if a.first_ns], 50),
        }
    answered = sum(1 for kind in results.values() for a in kind if a.status)
    return {
        "rate": rate,
        "duration_s": duration_s,
        "issued_s": issued_s,
        "elapsed_s": elapsed,
        "requests": answered,
        "unanswered": sum(1 for kind in results.values() for a in kind if not a.status),
        "served_rate": answered / elapsed if elapsed else 0.0,
        "shed": sum(shed.values()),
        "kinds": by_kind,
    }


def _status_counts(answers: list[Answer]) -> dict[str, int]:
    out: dict[str, int] = {}
    for answer in answers:
        key = f"{answer.status // 100}xx" if answer.status else "none"
        out[key] = out.get(key, 0) + 1
    return out


def _errors(answers: list[Answer], expected: int) -> dict[str, int]:
    """Failed answers by reason: transport errors and cut streams, non-2xx by status."""
    out: dict[str, int] = {}
    for answer in answers:
        key = answer.error or (f"status {answer.status}" if not 200 <= answer.status < 300 else "")
        if key:
            out[key] = out.get(key, 0) + 1
    missing = expected - len(answers)
    if missing > 0:
        out["no answer"] = missing
    return out


def _delay_summary(recorder: Recorder) -> dict[str, Any]:
    delays, gaps = recorder.delays, recorder.gaps
    return {
        "delay_samples": len(delays),
        "delay_p50_ms": percentile(delays, 50) / 1e6,
        "delay_p99_ms": percentile(delays, 99) / 1e6,
        "delay_max_ms": (max(delays) / 1e6) if delays else 0.0,
        "gap_p50_ms": percentile(gaps, 50) / 1e6,
        "gap_p99_ms": percentile(gaps, 99) / 1e6,
    }
