"""The vendor-neutral glue of translated providers: SSE splitting, the translated stream, the
chunk writer and the translation of complete answers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from relaygate.config.model import Target
from relaygate.exchange import GatewayRequest, Operation, RequestContext, ResponseStream
from relaygate.providers.chatshape import ChunkWriter
from relaygate.providers.client import StreamInterrupted, UpstreamResponse, UpstreamStream
from relaygate.providers.cohere.adapter import COHERE
from relaygate.providers.google.adapter import GOOGLE
from relaygate.providers.translated import TranslatedAdapter
from relaygate.providers.translation import DONE_EVENT, Refused, SseSplitter, TranslatedStream
from relaygate.sse import carries_content


def test_splitter_reads_events_however_they_are_cut() -> None:
    raw = b"event: a\r\ndata: 1\r\ndata: 2\r\n\r\n: comment\n\nevent: b\rdata: 3\r\r"
    for cut in range(len(raw) + 1):
        splitter = SseSplitter()
        events = splitter.push(raw[:cut]) + splitter.push(raw[cut:]) + splitter.close()
        assert events == [("a", b"1\n2"), ("b", b"3")], cut


def test_splitter_bounds_an_endless_line() -> None:
    with pytest.raises(ValueError):
        SseSplitter().push(b"data: " + b"x" * (1 << 21))


def test_chunk_writer_puts_usage_on_the_finish_chunk_unless_asked_for_its_own() -> None:
    usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    plain = ChunkWriter(id="i", model="m", created=0, usage_chunk=False)
    plain.finish(0, "stop")
    closing = plain.close(usage)
    assert len(closing) == 2 and closing[-1] == DONE_EVENT
    finish = orjson.loads(closing[0][6:])
    assert finish["choices"][0]["finish_reason"] == "stop" and finish["usage"] == usage
    separate = ChunkWriter(id="i", model="m", created=0, usage_chunk=True)
    separate.finish(0, "stop")
    events = [orjson.loads(e[6:]) for e in separate.close(usage)[:-1]]
    assert "usage" not in events[0] and events[1] == {**events[1], "choices": [], "usage": usage}


class _Source:
    """A fake upstream stream: yields ``chunks``, then raises ``error`` if given."""

    def __init__(self, chunks: list[bytes], error: Exception | None = None) -> None:
        self.chunks = list(chunks)
        self.error = error
        self.closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        if self.chunks:
            return self.chunks.pop(0)
        if self.error is not None:
            raise self.error
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.closed = True


def _stream(source: _Source) -> UpstreamStream:
    return UpstreamStream(source, source.aclose, (), idle_timeout_s=3.0)


def _request(provider: str, stream: bool = True) -> GatewayRequest:
    ctx = RequestContext(request_id="r", trace_id="t", metadata={})
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return GatewayRequest(
        Operation.CHAT, body, orjson.dumps(body), {}, ctx, stream=stream,
        target=Target(path="config", provider=provider),
    )  # fmt: skip


def _gemini_event(payload: dict[str, object]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\r\n\r\n"


TEXT = {"candidates": [{"content": {"parts": [{"text": "Hi"}]}, "index": 0}]}
DONE = {
    "candidates": [{"content": {"parts": [{"text": "!"}]}, "finishReason": "STOP", "index": 0}],
    "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5},
    "modelVersion": "gemini-x",
}


async def test_a_translated_stream_feeds_the_pipeline_stream_its_facts() -> None:
    adapter = TranslatedAdapter(GOOGLE, clock=lambda: 7.0, ids=lambda: "chatcmpl-1")
    source = _Source([_gemini_event(TEXT)[:10], _gemini_event(TEXT)[10:], _gemini_event(DONE)])
    translated = adapter.wire_translation.stream(_request("google"), _stream(source))
    assert translated.idle_timeout_s == 3.0
    translated.idle_timeout_s = None
    assert translated.idle_timeout_s is None
    first = await translated.__anext__()
    assert carries_content(first)
    stream = ResponseStream(translated, first, breaks=(StreamInterrupted,))
    body = b"".join([chunk async for chunk in stream])
    assert body.endswith(DONE_EVENT)
    assert stream.usage == (3, 2)
    assert stream.finish_reasons == ["stop"]
    assert stream.response_id == "chatcmpl-1"
    assert stream.failure is None


async def test_a_break_passes_through_as_the_pipeline_stream_failure() -> None:
    adapter = TranslatedAdapter(GOOGLE)
    source = _Source([_gemini_event(TEXT)], error=ConnectionResetError("cut"))
    upstream = UpstreamStream(source, source.aclose, (ConnectionResetError,))
    translated = adapter.wire_translation.stream(_request("google"), upstream)
    stream = ResponseStream(
        translated, await translated.__anext__(), breaks=(StreamInterrupted,),
        break_event=lambda detail: b"data: broke\n\n",
    )  # fmt: skip
    chunks = [chunk async for chunk in stream]
    assert chunks[-1] == b"data: broke\n\n"
    assert stream.failure == "stream_error"


async def test_a_refusal_before_anything_was_yielded_propagates() -> None:
    blocked = _gemini_event({"promptFeedback": {"blockReason": "SAFETY"}})
    translated = TranslatedAdapter(GOOGLE).wire_translation.stream(
        _request("google"), _stream(_Source([blocked]))
    )
    with pytest.raises(Refused):
        await translated.__anext__()


async def test_an_unreadable_event_breaks_the_stream() -> None:
    translated = TranslatedStream(
        _stream(_Source([b"data: {not json\n\n"])),
        TranslatedAdapter(COHERE).wire_translation.translator(_request("cohere")),
    )
    with pytest.raises(StreamInterrupted):
        await translated.__anext__()


def test_a_complete_answer_is_rewritten_with_its_status() -> None:
    translation = TranslatedAdapter(COHERE, clock=lambda: 1.0, ids=lambda: "x").wire_translation
    request = _request("cohere", stream=False)
    ok = UpstreamResponse(
        200,
        {"content-type": "application/json", "content-length": "999"},
        orjson.dumps({"id": "c", "finish_reason": "COMPLETE", "message": {"content": []}}),
    )
    answered = translation.answer(request, ok)
    assert answered.status == 200 and "content-length" not in answered.headers
    assert orjson.loads(answered.body)["object"] == "chat.completion"
    failed = translation.answer(request, UpstreamResponse(429, {}, b'{"message": "slow down"}'))
    assert failed.status == 429
    assert orjson.loads(failed.body)["error"]["message"] == "slow down"
    with pytest.raises(ValueError):
        translation.answer(request, UpstreamResponse(200, {}, b"<html>"))
