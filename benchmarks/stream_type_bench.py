"""CPU cost per chunk of relaying a streamed answer through :class:`ResponseStream`.

Replays a recorded OpenAI-style chat stream (a role chunk, ``--chunks`` content chunks of a
few words each, one chunk carrying ``finish_reason``, a usage chunk and ``[DONE]``, one SSE
event per chunk, as upstreams send them) through ``ResponseStream`` from an in-memory source,
in two shapes: without ``stream_options.include_usage`` and with it (then OpenAI puts
``"usage":null`` in every chunk before the last),
so what is measured is the stream type alone: the per-chunk fast path, the SSE line buffer
and the telemetry scan (first event, finish reason, usage). The figure is the best of
``--repeat`` passes of ``--streams`` streams, CPU time per relayed chunk, in µs.

Run: ``python -m benchmarks.stream_type_bench [--streams 2000] [--chunks 200] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence

import orjson

from relaygate.exchange import ResponseStream


def _event(payload: object) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def recorded_stream(chunks: int, include_usage: bool = False) -> list[bytes]:
    """The SSE chunks of one recorded chat stream with ``chunks`` content chunks."""

    def chunk(delta: dict[str, str], finish: str | None) -> bytes:
        payload: dict[str, object] = {
            "id": "chatcmpl-AbCdEf0123456789",
            "object": "chat.completion.chunk",
            "created": 1733011200,
            "model": "gpt-4o-mini-2024-07-18",
            "system_fingerprint": "fp_0123456789",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            payload["usage"] = None
        return _event(payload)

    usage = _event(
        {
            "id": "chatcmpl-AbCdEf0123456789",
            "object": "chat.completion.chunk",
            "created": 1733011200,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [],
            "usage": {
                "prompt_tokens": 20,
                "completion_tokens": chunks,
                "total_tokens": 20 + chunks,
            },
        }
    )
    return [
        chunk({"role": "assistant", "content": ""}, None),
        *(chunk({"content": f" word{i} and"}, None) for i in range(chunks)),
        chunk({}, "stop"),
        usage,
        b"data: [DONE]\n\n",
    ]


class _Source:
    """An in-memory byte source playing ``chunks`` (the stream's first chunk excluded)."""

    __slots__ = ("_chunks", "_i")

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self._chunks = chunks
        self._i = 0

    def __anext__(self) -> asyncio.Future[bytes]:
        i = self._i
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        if i >= len(self._chunks):
            future.set_exception(StopAsyncIteration())
        else:
            self._i = i + 1
            future.set_result(self._chunks[i])
        return future

    async def aclose(self) -> None:
        return None


async def _relay(chunks: list[bytes], streams: int) -> tuple[float, ResponseStream]:
    first, rest = chunks[0], chunks[1:]
    stream = ResponseStream(_Source(rest), first)
    started = time.process_time()
    for _ in range(streams):
        stream = ResponseStream(_Source(rest), first)
        async for _chunk in stream:
            pass
    return time.process_time() - started, stream


def measure(
    streams: int, chunks: int, repeat: int, include_usage: bool = False
) -> tuple[float, ResponseStream]:
    """Best µs per relayed chunk over ``repeat`` passes, and the last stream (to check)."""
    recorded = recorded_stream(chunks, include_usage)
    best = float("inf")
    stream: ResponseStream | None = None
    for _ in range(repeat):
        spent, stream = asyncio.run(_relay(recorded, streams))
        best = min(best, spent * 1e6 / (streams * len(recorded)))
    assert stream is not None
    return best, stream


def main(argv: list[str] | None = None) -> int:
    """Print the CPU µs per chunk and the facts the last stream read."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    ns = parser.parse_args(argv)
    print(f"{ns.streams} streams of {ns.chunks + 4} chunks, best of {ns.repeat} passes")
    for include_usage in (False, True):
        per_chunk, stream = measure(ns.streams, ns.chunks, ns.repeat, include_usage)
        shape = "include_usage" if include_usage else "plain"
        print(
            f"{shape:14} {per_chunk:6.3f} µs per chunk; read: usage={stream.usage} "
            f"id={stream.response_id} finish_reasons={stream.finish_reasons}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
