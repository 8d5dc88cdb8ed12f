"""Gemini ``streamGenerateContent?alt=sse`` → OpenAI ``chat.completion.chunk`` events.

https://ai.google.dev/api/generate-content#method:-models.streamgeneratecontent: every SSE
``data:`` event is a whole ``GenerateContentResponse`` holding the next piece of each
candidate; the last carries ``finishReason`` and ``usageMetadata``, and the stream has no
end marker of its own (the connection closes). Text becomes ``delta.content``, a function
call a complete ``delta.tool_calls`` entry (Gemini sends calls whole). Finish reasons are
held until the upstream's bytes end and then written with the usage and ``[DONE]``
(:class:`~relaygate.providers.chatshape.ChunkWriter`); bytes that end before any candidate
finished are a broken stream. A first event that blocks the prompt is
:class:`~relaygate.providers.translation.Refused` (a 400 ``content_filter``).
"""

from __future__ import annotations

from typing import Any

import orjson

from relaygate.providers.chatshape import ChunkWriter
from relaygate.providers.client import StreamInterrupted
from relaygate.providers.google.chat import candidate_parts, finish_reason, prompt_blocked, usage_of


class GeminiStreamTranslator:
    """The :class:`~relaygate.providers.translation.EventTranslator` of one Gemini stream.

    ``writer`` carries the id, model and ``created`` of the chunks until the first event
    names the response's own id and model version.
    """

    def __init__(self, writer: ChunkWriter) -> None:
        self._writer = writer
        self._named = False
        self._usage: dict[str, Any] | None = None
        self._calls: dict[int, int] = {}

    def feed(self, event: str | None, data: bytes) -> list[bytes]:
        """See :class:`~relaygate.providers.translation.EventTranslator`."""
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ValueError("a Gemini stream event is not JSON") from None
        if not isinstance(payload, dict):
            raise ValueError("a Gemini stream event is not an object")
        if "error" in payload:
            raise ValueError("the Gemini stream reported an error")
        writer = self._writer
        if not self._named:
            self._named = True
            refused = prompt_blocked(payload)
            if refused is not None:
                raise refused
            if isinstance(payload.get("responseId"), str) and payload["responseId"]:
                writer.id = payload["responseId"]
            if isinstance(payload.get("modelVersion"), str) and payload["modelVersion"]:
                writer.model = payload["modelVersion"]
        usage = usage_of(payload.get("usageMetadata"))
        if usage is not None:
            self._usage = usage
        out: list[bytes] = []
        candidates = payload.get("candidates")
        for position, candidate in enumerate(candidates if isinstance(candidates, list) else ()):
            if not isinstance(candidate, dict):
                continue
            index = candidate.get("index", position)
            index = index if isinstance(index, int) else position
            seen = self._calls.get(index, 0)
            text, calls = candidate_parts(candidate, writer.id, index, seen)
            delta: dict[str, Any] = {}
            if text:
                delta["content"] = text
            if calls:
                delta["tool_calls"] = [{"index": seen + k, **call} for k, call in enumerate(calls)]
                self._calls[index] = seen + len(calls)
            if delta:
                out.append(writer.delta(index, delta))
            reason = candidate.get("finishReason")
            if reason is not None:
                writer.finish(index, finish_reason(reason, bool(self._calls.get(index))))
        return out

    @property
    def done(self) -> bool:
        """See :class:`~relaygate.providers.translation.EventTranslator`."""
        return self._writer.closed

    def end(self) -> list[bytes]:
        """See :class:`~relaygate.providers.translation.EventTranslator`."""
        if not self._writer.finished:
            raise StreamInterrupted("upstream stream ended before its answer finished")
        return self._writer.close(self._usage)
