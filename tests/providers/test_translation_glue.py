"""The vendor-neutral glue of translated providers: SSE splitting, the one translated stream
over a vendor's stream translator, the chunk writer and the translation of complete answers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from relaygate.config.model import Target
from relaygate.exchange import GatewayRequest, Operation, RequestContext
from relaygate.providers.chatshape import ChunkWriter
from relaygate.providers.client import STREAM_BROKE, StreamInterrupted, UpstreamStream
from relaygate.providers.cohere.adapter import COHERE
from relaygate.providers.google.adapter import GOOGLE
from relaygate.providers.translated import TranslatedAdapter
from relaygate.providers.translation import DONE_EVENT, Refused, SseSplitter
from relaygate.sse import carries_content
from relaygate.translate import TranslatedStream


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
    return UpstreamStream(source.__anext__, source.aclose, (), idle_timeout_s=3.0)


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


def _translated(adapter: TranslatedAdapter, source: UpstreamStream) -> TranslatedStream:
    """What the provider handler reads a translating adapter's stream through."""
    translator = adapter.stream_translator(_request(adapter.name))
    return TranslatedStream(source, translator, invalid=StreamInterrupted)


async def test_a_translated_stream_feeds_the_pipeline_stream_its_facts() -> None:
    adapter = TranslatedAdapter(GOOGLE, clock=lambda: 7.0, ids=lambda: "chatcmpl-1")
    source = _Source([_gemini_event(TEXT)[:10], _gemini_event(TEXT)[10:], _gemini_event(DONE)])
    upstream = _stream(source)
    stream = upstream.relay(_translated(adapter, upstream), breaks=(StreamInterrupted,))
    await stream.open()
    first = await stream.__anext__()
    assert carries_content(first)
    body = first + b"".join([chunk async for chunk in stream])
    assert source.closed  # released at the end
    assert body.endswith(DONE_EVENT) and body.count(DONE_EVENT) == 1
    assert stream.usage == (3, 2)
    assert stream.finish_reasons == ["stop"]
    assert stream.response_id == "chatcmpl-1"
    assert stream.failure is None


async def test_a_break_passes_through_as_the_pipeline_stream_failure() -> None:
    source = _Source([_gemini_event(TEXT)], error=ConnectionResetError("cut"))
    upstream = UpstreamStream(source.__anext__, source.aclose, (ConnectionResetError,))
    translated = _translated(TranslatedAdapter(GOOGLE), upstream)
    stream = upstream.relay(
        translated, breaks=(StreamInterrupted,), break_event=lambda d: f"data: {d}\n\n".encode()
    )
    await stream.open()
    chunks = [chunk async for chunk in stream]
    assert chunks[-1] == b"data: " + STREAM_BROKE.encode() + b"\n\n"
    assert stream.failure == "stream_error"
    assert source.closed


async def test_a_refusal_before_anything_was_yielded_propagates() -> None:
    blocked = _gemini_event({"promptFeedback": {"blockReason": "SAFETY"}})
    translated = _translated(TranslatedAdapter(GOOGLE), _stream(_Source([blocked])))
    with pytest.raises(Refused):
        await translated.__anext__()


async def test_an_unreadable_event_breaks_the_stream_and_releases_the_connection() -> None:
    source = _Source([b"data: {not json\n\n"])
    translated = _translated(TranslatedAdapter(COHERE), _stream(source))
    with pytest.raises(StreamInterrupted):
        await translated.__anext__()
    assert source.closed


async def test_a_cohere_stream_is_complete_at_message_end_whatever_follows() -> None:
    events = [
        {"type": "message-start", "id": "c1"},
        {"type": "content-delta", "delta": {"message": {"content": {"text": "Hi"}}}},
        {"type": "message-end", "delta": {"finish_reason": "COMPLETE"}},
    ]
    raw = [b"data: " + orjson.dumps(e) + b"\n\n" for e in events]
    source = _Source(raw, error=ConnectionResetError("reset after the end"))
    upstream = UpstreamStream(source.__anext__, source.aclose, (ConnectionResetError,))
    body = b"".join([c async for c in _translated(TranslatedAdapter(COHERE), upstream)])
    assert body.endswith(DONE_EVENT) and b'"Hi"' in body


def test_a_complete_answer_and_an_error_are_translated() -> None:
    adapter = TranslatedAdapter(COHERE, clock=lambda: 1.0, ids=lambda: "x")
    request = _request("cohere", stream=False)
    ok = orjson.dumps({"id": "c", "finish_reason": "COMPLETE", "message": {"content": []}})
    assert adapter.parse_response(request, 200, ok)["object"] == "chat.completion"
    failed = adapter.error_body(429, {}, b'{"message": "slow down"}')
    assert orjson.loads(failed)["error"]["message"] == "slow down"
    assert orjson.loads(adapter.error_body(502, {}, b"<html>"))["error"]["code"] == "upstream_502"
    with pytest.raises(ValueError):
        adapter.parse_response(request, 200, b"<html>")


def test_a_blocked_prompt_answer_is_a_refusal() -> None:
    request = _request("google", stream=False)
    blocked = orjson.dumps({"promptFeedback": {"blockReason": "SAFETY"}})
    with pytest.raises(Refused) as refused:
        TranslatedAdapter(GOOGLE).parse_response(request, 200, blocked)
    assert refused.value.status == 400
    assert orjson.loads(refused.value.body)["error"]["code"] == "content_filter"
