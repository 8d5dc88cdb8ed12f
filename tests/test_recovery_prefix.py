"""The prefix matcher of mid-stream recovery: delivered text against a recovering stream."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest

from relaygate.recovery.prefill import prefill_text
from relaygate.recovery.prefix import (
    Diverged,
    PrefixMatcher,
    delivered_of,
    pieces_of,
    rewrite,
)

TEXT = "The quick brown fox jumps over the lazy dog."


def chunk(*choices: dict[str, Any], cid: str = "a", model: str = "m") -> dict[str, Any]:
    """A chat.completion.chunk object with ``choices``."""
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": list(choices),
    }


def content(text: str, index: int = 0, finish: str | None = None) -> dict[str, Any]:
    return {"index": index, "delta": {"content": text}, "finish_reason": finish}


def role(index: int = 0) -> dict[str, Any]:
    return {"index": index, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}


def sse(payloads: list[dict[str, Any]]) -> list[bytes]:
    return [b"data: " + orjson.dumps(p) + b"\n\n" for p in payloads]


def split(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def stream_of(text: str, cuts: list[int], index: int = 0) -> list[dict[str, Any]]:
    """A whole stream of ``text`` cut at ``cuts``: role, pieces, finish."""
    return [
        chunk(role(index)),
        *(chunk(content(p, index)) for p in split(text, cuts)),
        chunk({"index": index, "delta": {}, "finish_reason": "stop"}),
    ]


def run(delivered: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the client gets after ``delivered`` when ``new`` recovers it: the trimmed events,
    held back until the matcher is in sync (as the recovering stream does)."""
    seen = delivered_of(sse(delivered))
    assert seen is not None
    matcher = PrefixMatcher(seen)
    out: list[dict[str, Any]] = []
    held: list[dict[str, Any]] = []
    for payload in new:
        was = matcher.synced
        trimmed = matcher.feed(payload)
        if trimmed is not None:
            (out if was else held).append(trimmed)
        if matcher.synced and not was:
            out += held
            held = []
    matcher.finished()
    return out


def text_of(payloads: list[dict[str, Any]], index: int = 0) -> str:
    return "".join(p for (i, name, _), p in _pieces(payloads) if i == index and name == "content")


def _pieces(payloads: list[dict[str, Any]]) -> list[tuple[tuple[int, str, int], str]]:
    return [piece for payload in payloads for piece in pieces_of(payload)]


@pytest.mark.parametrize("sent", [0, 1, 5, 17, 30, len(TEXT) - 1, len(TEXT)])
@pytest.mark.parametrize(
    ("first_cuts", "second_cuts"),
    [([4, 9, 20], [2, 30]), ([1, 2, 3, 40], [22]), ([], [10, 11, 12, 13]), ([25], [25])],
)
def test_the_client_gets_exactly_the_rest_whatever_the_chunk_boundaries(
    sent: int, first_cuts: list[int], second_cuts: list[int]
) -> None:
    # The client received the role chunk and the first attempt's text up to ``sent``,
    # cut inside a chunk when ``sent`` falls inside one (the break can come anywhere).
    delivered = [chunk(role()), *(chunk(content(p)) for p in split(TEXT[:sent], first_cuts))]
    out = run(delivered, stream_of(TEXT, second_cuts))
    assert text_of(delivered) + text_of(out) == TEXT
    assert out[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["choices"] for c in out), "no empty events are forwarded"
    assert not any("role" in c["delta"] for p in out for c in p["choices"])


def test_a_different_text_diverges_at_the_first_different_character() -> None:
    delivered = [chunk(role()), chunk(content("The quick brown"))]
    with pytest.raises(Diverged, match="character 10"):
        run(delivered, stream_of("The quick red fox.", [6]))


def test_a_shorter_answer_diverges() -> None:
    delivered = [chunk(role()), chunk(content("The quick brown fox"))]
    with pytest.raises(Diverged, match="finished before"):
        run(delivered, stream_of("The quick", []))


def test_a_stream_ending_before_the_delivered_text_diverges() -> None:
    delivered = [chunk(role()), chunk(content("The quick brown fox"))]
    with pytest.raises(Diverged, match="ended before"):
        run(delivered, [chunk(role()), chunk(content("The quick"))])


def test_tool_call_arguments_are_matched_as_text_and_ids_are_not_repeated() -> None:
    def call(args: str, *, first: bool = False, cid: str = "call_1") -> dict[str, Any]:
        entry: dict[str, Any] = {"index": 0, "function": {"arguments": args}}
        if first:
            entry.update(id=cid, type="function")
            entry["function"]["name"] = "get_weather"
        return {"index": 0, "delta": {"tool_calls": [entry]}, "finish_reason": None}

    delivered = [chunk(role()), chunk(call('{"ci', first=True)), chunk(call('ty": "Pa'))]
    new = [
        chunk(role()),
        chunk(call("", first=True, cid="call_OTHER")),
        chunk(call('{"city": "Paris"}')),
        chunk({"index": 0, "delta": {}, "finish_reason": "tool_calls"}),
    ]
    out = run(delivered, new)
    calls = [c for p in out for ch in p["choices"] for c in ch["delta"].get("tool_calls", [])]
    assert calls == [{"index": 0, "function": {"arguments": 'ris"}'}}]
    assert out[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_different_tool_name_diverges() -> None:
    def named(name: str) -> dict[str, Any]:
        entry = {"index": 0, "id": "c", "type": "function", "function": {"name": name}}
        return {"index": 0, "delta": {"tool_calls": [entry]}, "finish_reason": None}

    # "get_weather" and "get_time" part at their fifth character.
    with pytest.raises(Diverged, match="choice 0 differs at character 4"):
        run([chunk(role()), chunk(named("get_weather"))], [chunk(role()), chunk(named("get_time"))])


def test_text_after_a_tool_call_began_diverges_when_the_client_saw_it_end() -> None:
    entry = {"index": 0, "id": "c", "type": "function", "function": {"name": "f"}}
    tool = {"index": 0, "delta": {"tool_calls": [entry]}, "finish_reason": None}
    delivered = [chunk(role()), chunk(content("Let me check.")), chunk(tool)]
    with pytest.raises(Diverged, match="went on"):
        run(delivered, [chunk(role()), chunk(content("Let me check. Also"))])


def test_choices_are_matched_each_on_its_own_and_held_until_all_are_in_sync() -> None:
    delivered = [
        chunk(role(0), role(1)),
        chunk(content("Hello wor", 0)),
        chunk(content("Bye", 1)),
    ]
    new = [
        chunk(role(0), role(1)),
        chunk(content("Hello world!", 0)),  # choice 0 is ahead, choice 1 not yet
        chunk(content("Bye now", 1)),
        chunk({"index": 0, "delta": {}, "finish_reason": "stop"}),
        chunk({"index": 1, "delta": {}, "finish_reason": "stop"}),
    ]
    out = run(delivered, new)
    assert text_of(out, 0) == "ld!"
    assert text_of(out, 1) == " now"


def test_a_second_choice_diverging_stops_the_recovery() -> None:
    delivered = [chunk(role(0), role(1)), chunk(content("Hi", 0)), chunk(content("Bye", 1))]
    with pytest.raises(Diverged, match="choice 1"):
        run(delivered, [chunk(content("Hi there", 0)), chunk(content("Bie", 1))])


def test_text_completions_are_matched_on_their_text() -> None:
    def piece(text: str, finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "t",
            "object": "text_completion",
            "created": 1,
            "model": "m",
            "choices": [{"text": text, "index": 0, "finish_reason": finish}],
        }

    out = run([piece("Once upon a ti")], [piece("Once up"), piece("on a time."), piece("", "stop")])
    assert [c["choices"][0]["text"] for c in out] == ["me.", ""]


def test_the_usage_event_passes_and_events_carry_the_original_identity() -> None:
    delivered = [chunk(role(), cid="first", model="gpt-a"), chunk(content("Hi", 0), cid="first")]
    usage = {
        "id": "second",
        "object": "chat.completion.chunk",
        "created": 9,
        "model": "gpt-b",
        "choices": [],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }
    out = run(delivered, [chunk(content("Hi!"), cid="second", model="gpt-b"), usage])
    seen = delivered_of(sse(delivered))
    assert seen is not None
    events = [orjson.loads(rewrite(p, seen.identity)[6:]) for p in out]
    assert [(e["id"], e["model"], e["created"]) for e in events] == [("first", "gpt-a", 1)] * 2
    assert events[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 2}


def test_nothing_delivered_but_the_role_is_in_sync_at_once() -> None:
    seen = delivered_of(sse([chunk(role())]))
    assert seen is not None and PrefixMatcher(seen).synced


def test_bytes_ending_inside_an_event_cannot_be_continued() -> None:
    assert delivered_of([b'data: {"id":"a","choices":[{"index":0,"del']) is None
    assert delivered_of([b"data: [DONE]\n"]) is not None


@pytest.mark.parametrize(
    ("delivered", "expected"),
    [
        ([chunk(role()), chunk(content("Hello"))], "Hello"),
        ([chunk(role())], None),
        ([chunk(role(0), role(1)), chunk(content("a", 0)), chunk(content("b", 1))], None),
        ([chunk({"index": 0, "delta": {"reasoning_content": "hm"}, "finish_reason": None})], None),
        (
            [
                chunk(
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [{"index": 0, "id": "c", "function": {"name": "f"}}]
                        },
                        "finish_reason": None,
                    }
                )
            ],
            None,
        ),
    ],
    ids=["content", "nothing", "two-choices", "reasoning", "tool-call"],
)
def test_a_prefill_is_offered_only_for_plain_content_of_one_choice(
    delivered: list[dict[str, Any]], expected: str | None
) -> None:
    seen = delivered_of(sse(delivered))
    assert seen is not None
    assert prefill_text(seen) == expected
