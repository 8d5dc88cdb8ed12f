"""The one stream type: bytes pass unchanged, facts survive any chunking, ends run once."""

from __future__ import annotations

import itertools

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from relaygate.exchange import ResponseStream
from relaygate.sse import MAX_LINE_BYTES
from tests.fakes import StreamBody


def event(payload: object) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def chunk(content: str | None, finish: str | None = None) -> dict[str, object]:
    delta = {} if content is None else {"content": content}
    return {
        "id": "chatcmpl-9",
        "object": "chat.completion.chunk",
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


RECORDED = b"".join(
    [
        event(chunk("")),
        event(chunk("Hello")),
        b": keep-alive comment\n\n",
        event(chunk(", usage is a word in content")),
        event(chunk(None, "stop")),
        event(
            {
                "id": "chatcmpl-9",
                "model": "gpt-4o-2024-08-06",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 42, "completion_tokens": 17, "total_tokens": 59},
            }
        ),
        b"data: [DONE]\n\n",
    ]
)
"""A recorded chat stream with ``stream_options.include_usage`` (the usage event repeats the
finish reason, as some OpenAI-compatible servers send it)."""

EXPECTED = ((42, 17), "gpt-4o-2024-08-06", "chatcmpl-9", ["stop"])


async def facts(chunks: list[bytes]) -> tuple[object, ...]:
    """Relay ``chunks`` (the first as the already-arrived chunk) and read what the stream saw."""
    stream = ResponseStream(StreamBody(chunks[1:]), chunks[0])
    relayed = b"".join([c async for c in stream])
    assert relayed == b"".join(chunks)
    return stream.usage, stream.model, stream.response_id, stream.finish_reasons


async def test_every_single_byte_boundary_yields_the_same_usage_model_id_and_finish() -> None:
    for cut in range(1, len(RECORDED)):
        assert await facts([RECORDED[:cut], RECORDED[cut:]]) == EXPECTED, cut


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(RECORDED) - 1), max_size=40))
async def test_any_chunking_of_a_recorded_stream_yields_the_same_facts(cuts: list[int]) -> None:
    bounds = [0, *sorted(set(cuts)), len(RECORDED)]
    chunks = [RECORDED[a:b] for a, b in itertools.pairwise(bounds)]
    assert await facts(chunks) == EXPECTED


async def test_a_byte_at_a_time_stream_yields_the_same_facts() -> None:
    assert await facts([RECORDED[i : i + 1] for i in range(len(RECORDED))]) == EXPECTED


async def test_a_line_longer_than_the_buffer_bound_is_skipped_and_later_lines_still_read() -> None:
    huge = b"data: " + b"x" * (MAX_LINE_BYTES + 10)
    tail = event({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}})
    pieces = [event(chunk("a")), huge[: MAX_LINE_BYTES // 2], huge[MAX_LINE_BYTES // 2 :]]
    stream = ResponseStream(StreamBody([*pieces[1:], b"\n\n" + tail]), pieces[0])
    async for _ in stream:
        assert len(stream._tail) <= MAX_LINE_BYTES
    assert stream.usage == (1, 2)


async def test_end_callbacks_run_once_in_order_when_the_stream_ends() -> None:
    seen: list[str] = []
    stream = ResponseStream(StreamBody([b"b"]), b"a")
    stream.on_end(lambda s: seen.append("log"))
    stream.on_end(lambda s: seen.append("request"))
    assert [c async for c in stream] == [b"a", b"b"]
    await stream.aclose()
    stream.on_end(lambda s: seen.append("late"))
    assert seen == ["log", "request", "late"]
    assert not stream.closed_early


async def test_closing_early_releases_the_source_and_ends_the_stream_as_closed() -> None:
    body = StreamBody([b"b", b"c"])
    stream = ResponseStream(body, b"a")
    ended: list[ResponseStream] = []
    stream.on_end(ended.append)
    await stream.__anext__()
    await stream.aclose()
    assert body.closed and ended == [stream] and stream.closed_early


async def test_a_source_that_breaks_ends_with_the_break_event_and_a_typed_failure() -> None:
    class Broken(StreamBody):
        async def __anext__(self) -> bytes:
            raise ConnectionResetError("peer reset")

    stream = ResponseStream(
        Broken([]), b"a", breaks=(ConnectionResetError,), break_event=lambda d: d.encode()
    )
    assert [c async for c in stream] == [b"a", b"peer reset"]
    assert (stream.failure, stream.detail, stream.ended) == ("stream_error", "peer reset", True)
