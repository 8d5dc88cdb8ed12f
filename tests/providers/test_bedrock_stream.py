"""ConverseStream → OpenAI chunks: botocore decodes the framing, cut anywhere; the
simulator's frame encoder is held to botocore's decoder."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import given, settings
from hypothesis import strategies as st

from relaygate.mock.bedrock import encode_frame, event_frame, exception_frame
from relaygate.providers.bedrock.stream import ConverseStreamTranslator

GOLDEN: dict[str, Any] = json.loads(
    (Path(__file__).parent / "fixtures" / "bedrock" / "stream_text.json").read_text()
)
WIRE = b"".join(event_frame(name, body) for name, body in GOLDEN["events"])


def translator(include_usage: bool = True) -> ConverseStreamTranslator:
    return ConverseStreamTranslator(
        response_id="chatcmpl-s", model="m", created=1, include_usage=include_usage
    )


def events_of(sse: bytes) -> list[Any]:
    """The ``data:`` payloads of an SSE byte string, ``[DONE]`` as the string."""
    out: list[Any] = []
    for block in sse.split(b"\n\n"):
        if block.startswith(b"data: "):
            data = block[6:]
            out.append("[DONE]" if data == b"[DONE]" else orjson.loads(data))
    return out


def translate(pieces: list[bytes], include_usage: bool = True) -> bytes:
    t = translator(include_usage)
    return b"".join(t.feed(piece) for piece in pieces) + t.end()


def expected_chunks() -> list[Any]:
    frame = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    return [{**frame, **chunk} for chunk in GOLDEN["chunks"]] + ["[DONE]"]


def test_the_golden_stream_becomes_openai_chunks() -> None:
    assert events_of(translate([WIRE])) == expected_chunks()


def test_without_include_usage_the_usage_rides_on_the_finish_chunk() -> None:
    chunks = events_of(translate([WIRE], include_usage=False))
    assert chunks[-1] == "[DONE]"
    last = chunks[-2]
    assert last["choices"][0]["finish_reason"] == "tool_calls"
    assert last["usage"] == {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17}


def test_every_two_way_cut_decodes_the_same() -> None:
    whole = translate([WIRE])
    for cut in range(1, len(WIRE)):
        assert translate([WIRE[:cut], WIRE[cut:]]) == whole, cut


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(WIRE)), max_size=12))
def test_any_cuts_decode_the_same(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(WIRE)]
    pieces = [WIRE[a:b] for a, b in itertools.pairwise(bounds)]
    assert translate(pieces) == translate([WIRE])


def test_the_simulator_encoder_is_what_botocore_decodes() -> None:
    buffer = EventStreamBuffer()
    buffer.add_data(encode_frame({":event-type": "messageStart", "x": "é"}, b'{"a":1}'))
    (message,) = list(buffer)
    assert message.headers == {":event-type": "messageStart", "x": "é"}
    assert message.payload == b'{"a":1}'


@pytest.mark.parametrize("kind", ["modelStreamErrorException", "throttlingException"])
def test_an_exception_event_breaks_the_stream(kind: str) -> None:
    t = translator()
    opening = t.feed(event_frame("messageStart", {"role": "assistant"}))
    assert events_of(opening)[0]["choices"][0]["delta"]["role"] == "assistant"
    with pytest.raises(ValueError, match=f"bedrock sent {kind}: slow down"):
        t.feed(exception_frame(kind, "slow down"))


def test_events_before_an_exception_in_the_same_read_are_delivered_first() -> None:
    t = translator()
    data = event_frame("messageStart", {"role": "assistant"}) + exception_frame("x", "boom")
    assert events_of(t.feed(data))[0]["choices"][0]["delta"]["role"] == "assistant"
    with pytest.raises(ValueError, match="bedrock sent x: boom"):
        t.end()


def test_a_corrupt_frame_breaks_the_stream() -> None:
    frame = bytearray(event_frame("messageStart", {"role": "assistant"}))
    frame[-1] ^= 0xFF
    with pytest.raises(ValueError, match="malformed"):
        translator().feed(bytes(frame))


def test_a_stream_ending_before_message_stop_is_broken() -> None:
    t = translator()
    t.feed(event_frame("messageStart", {"role": "assistant"}))
    with pytest.raises(ValueError, match="before messageStop"):
        t.end()


def test_a_stream_ending_after_message_stop_without_metadata_closes() -> None:
    t = translator()
    t.feed(event_frame("messageStart", {"role": "assistant"}))
    t.feed(event_frame("messageStop", {"stopReason": "max_tokens"}))
    chunks = events_of(t.end())
    assert chunks[0]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1] == "[DONE]"
