"""Where a stream's opening ends: the first chunk carrying content (``carries_content``)."""

from __future__ import annotations

import orjson
import pytest

from relaygate.sse import carries_content


def event(payload: object) -> bytes:
    """One SSE data event."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def chat(delta: dict[str, object], finish: str | None = None) -> bytes:
    """A chat.completion.chunk event with one choice."""
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return event({"object": "chat.completion.chunk", "choices": [choice]})


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (b"", False),  # nothing yet
        (b": keep-alive\n\n", False),  # an SSE comment
        (b"\n\n", False),  # blank lines
        (chat({"role": "assistant", "content": ""}), False),  # OpenAI's role-only opening
        (chat({"role": "assistant"}), False),  # the same without the empty content
        (event({"choices": [], "prompt_filter_results": []}), False),  # Azure's first event
        (event({"id": "x", "object": "chat.completion.chunk"}), False),  # no choices, no usage
        (chat({"content": "Hel"}), True),  # text
        (chat({"role": "assistant", "content": "Hel"}), True),  # role and text together
        (chat({"tool_calls": [{"index": 0, "id": "c1"}]}), True),  # a tool call starts
        (chat({"refusal": "I can't"}), True),  # a refusal
        (chat({"reasoning_content": "think"}), True),  # reasoning tokens
        (chat({}, finish="stop"), True),  # an empty answer that finishes
        (event({"choices": [{"text": "Hel", "index": 0}]}), True),  # legacy completions
        (event({"choices": [{"text": "", "index": 0}]}), False),  # an empty completion piece
        (event({"choices": [], "usage": {"prompt_tokens": 1}}), True),  # the usage event
        (event({"error": {"message": "boom"}}), True),  # an error event
        (b"data: [DONE]\n\n", True),  # the end
        (b"data: not json\n\n", True),  # anything unexpected is handed on
        (b'data: {"choices": [{"delta": {"content": "Hel"', False),  # a partial line
        (chat({"role": "assistant", "content": ""}) + chat({"content": "Hi"}), True),
    ],
)
def test_which_blocks_carry_content(block: bytes, expected: bool) -> None:
    assert carries_content(block) is expected
