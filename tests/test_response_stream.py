"""The one stream type: bytes pass unchanged, facts survive any chunking, ends run once."""

from __future__ import annotations

import itertools
import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relaygate.exchange import STREAM_BROKE, ResponseStream, StreamInterrupted
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


def _two_choices(
    content: str | None, index: int, finish: str | None, **extra: object
) -> dict[str, object]:
    delta = {} if content is None else {"content": content}
    return {
        "id": "chatcmpl-n2",
        "object": "chat.completion.chunk",
        "model": "gpt-4o-mini",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
        **extra,
    }


OPENAI_USAGE = b"".join(
    [
        event(_two_choices("", 0, None, usage=None)),
        event(_two_choices("", 1, None, usage=None)),
        event(_two_choices("Hi", 0, None, usage=None)),
        event(_two_choices("Yo", 1, None, usage=None)),
        event(_two_choices(None, 1, "length", usage=None)),
        event(_two_choices(" there", 0, None, usage=None)),
        event(_two_choices(None, 0, "stop", usage=None)),
        event(
            {
                "id": "chatcmpl-n2",
                "model": "gpt-4o-mini",
                "choices": [],
                "usage": {"prompt_tokens": 9, "completion_tokens": 4},
            }
        ),
        b"data: [DONE]\n\n",
    ]
)
"""A recorded ``n=2`` stream with ``stream_options.include_usage``, as OpenAI sends it: each
chunk one choice, ``"usage":null`` in every chunk but the last, each choice's finish reason
in a chunk of its own (choice 1 ends first) and never repeated."""

OPENAI_USAGE_EXPECTED = ((9, 4), "gpt-4o-mini", "chatcmpl-n2", ["stop", "length"])

SPACED = b"".join(
    [
        b"data: " + json.dumps(chunk("Hello")).encode() + b"\n\n",
        b"data: " + json.dumps(chunk(None, "content_filter")).encode() + b"\n\n",
        b"data: [DONE]\n\n",
    ]
)
"""A stream written with a space after each colon (Python's ``json.dumps``), no usage."""

SPACED_EXPECTED = (None, "gpt-4o-2024-08-06", "chatcmpl-9", ["content_filter"])

STREAMS = [(RECORDED, EXPECTED), (OPENAI_USAGE, OPENAI_USAGE_EXPECTED), (SPACED, SPACED_EXPECTED)]


@pytest.mark.parametrize("recorded,expected", STREAMS, ids=["repeated", "openai_n2", "spaced"])
async def test_every_single_byte_boundary_yields_the_same_usage_model_id_and_finish(
    recorded: bytes, expected: tuple[object, ...]
) -> None:
    assert await facts([recorded]) == expected
    for cut in range(1, len(recorded)):
        assert await facts([recorded[:cut], recorded[cut:]]) == expected, cut


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(STREAMS).flatmap(
        lambda pair: st.tuples(
            st.just(pair),
            st.lists(st.integers(min_value=1, max_value=len(pair[0]) - 1), max_size=40),
        )
    )
)
async def test_any_chunking_of_a_recorded_stream_yields_the_same_facts(
    case: tuple[tuple[bytes, tuple[object, ...]], list[int]],
) -> None:
    (recorded, expected), cuts = case
    bounds = [0, *sorted(set(cuts)), len(recorded)]
    chunks = [recorded[a:b] for a, b in itertools.pairwise(bounds)]
    assert await facts(chunks) == expected


async def test_one_event_per_chunk_reads_finish_reasons_sent_without_usage() -> None:
    """The shape upstreams send (an event per chunk, whole lines): the fast path must still
    stop at the chunk that finishes a choice, and not parse ``"usage":null`` chunks."""
    events = [line + b"\n\n" for line in OPENAI_USAGE.split(b"\n\n") if line]
    scanned: list[bytes] = []
    scan = ResponseStream._scan

    def counting(stream: ResponseStream, block: bytes) -> None:
        scanned.append(block)
        scan(stream, block)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ResponseStream, "_scan", counting)
        assert await facts(events) == OPENAI_USAGE_EXPECTED
    # The first event, the two finishing chunks and the usage chunk; never a null one.
    assert scanned == [events[0], events[4], events[6], events[7]]


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


async def test_an_empty_chunk_ends_the_stream_and_releases_the_source() -> None:
    body = StreamBody([b"b", b"", b"never read"])
    stream = ResponseStream(body, b"a")
    assert [c async for c in stream] == [b"a", b"b"]
    assert body.closed and stream.ended and not stream.closed_early and stream.failure is None


async def test_a_drop_reads_as_the_broken_connection_whatever_the_wire_client_said() -> None:
    class Dropped(StreamBody):
        async def __anext__(self) -> bytes:
            raise ConnectionResetError("[Errno 104] a wire client's own words")

    body = Dropped([])
    stream = ResponseStream(body, b"a", drops=(OSError,), break_event=lambda d: d.encode())
    assert [c async for c in stream] == [b"a", STREAM_BROKE.encode()]
    assert (stream.failure, stream.detail) == ("stream_error", STREAM_BROKE)
    assert body.closed


async def test_the_opening_is_held_until_it_is_enough_and_its_facts_are_read_once() -> None:
    role, hello, rest = event(chunk("")), event(chunk("Hello")), event(chunk(None, "stop"))
    stream = ResponseStream(StreamBody([role, hello, rest]))
    await stream.open(lambda opening: b"Hello" not in opening)
    assert [c async for c in stream] == [role + hello, rest]
    assert (stream.model, stream.response_id, stream.finish_reasons) == EXPECTED[1:]


async def test_an_opening_that_never_came_or_broke_raises_for_the_caller() -> None:
    with pytest.raises(StopAsyncIteration):
        await ResponseStream(StreamBody([])).open()

    class Dropped(StreamBody):
        async def __anext__(self) -> bytes:
            raise ConnectionResetError("reset")

    with pytest.raises(StreamInterrupted, match="the connection closed mid-stream"):
        await ResponseStream(Dropped([]), drops=(OSError,)).open()
