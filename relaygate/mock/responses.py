"""The fault simulator's native OpenAI Responses API (``POST /v1/responses``).

It answers the way an upstream that speaks Responses does: a ``response`` object, or
``event:``/``data:`` streaming events ending in ``response.completed`` (no ``[DONE]``).
The text is the simulator's usual answer to the request's ``input``. The objects are
built with relaygate's chat → Responses translation (:mod:`relaygate.providers.responses`),
which the tests hold to the openai SDK's types; the simulator exists to show that a
Responses request reaches such an upstream as the client sent it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson
from starlette.responses import Response, StreamingResponse

from relaygate.mock.faults import Fault
from relaygate.mock.openai import (
    STREAM_SHAPES,
    _json_response,
    _prompt_tokens,
    _split_text,
    stream_chunks,
)
from relaygate.providers.responses.answer import from_chat
from relaygate.providers.responses.events import ResponsesEvents

if TYPE_CHECKING:
    from relaygate.mock.app import _MockApp


def _input_chars(raw: Any) -> int:
    if isinstance(raw, str):
        return len(raw)
    return len(orjson.dumps(raw)) if raw is not None else 0


def responses_answer(
    mock: _MockApp, body: dict[str, Any], fault: Fault, headers: dict[str, str], model: str
) -> Response:
    """The success answer to a Responses request (streamed when ``body.stream``)."""
    from relaygate.mock.app import _sse

    answer = mock._answer(body.get("input"))
    prompt_tokens = _prompt_tokens(_input_chars(body.get("input")))
    usage = mock._usage(prompt_tokens, answer)
    chat_id = mock.state.next_id("chatcmpl")
    created = int(time.time())
    if body.get("stream") is True:
        chunks = stream_chunks(
            STREAM_SHAPES["chat"],
            completion_id=chat_id,
            created=created,
            model=model,
            pieces=_split_text(answer, mock.settings.stream_chunks),
            usage=usage,
            include_usage=True,
        )
        return StreamingResponse(
            _events(_sse(chunks, fault, mock.settings.hang_s), body, created),
            status_code=fault.status,
            media_type="text/event-stream",
            headers={**headers, "cache-control": "no-cache"},
        )
    completion = {
        "id": chat_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": answer},
             "finish_reason": "stop"}
        ],
        "usage": usage,
    }  # fmt: skip
    return _json_response(from_chat(completion, body, created=created), fault.status, headers)


async def _events(chat: Any, body: dict[str, Any], created: int) -> Any:
    """The chat SSE of the simulator's stream (with its faults) as Responses events."""
    events = ResponsesEvents(body, created=created)
    async for chunk in chat:
        out = events.feed(chunk)
        if out:
            yield out
    tail = events.end()
    if tail:
        yield tail
