"""A recovered (or diverged) stream in every signal: the client's bytes, the request log
line and its route story, the spans and their events, the token metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from structlog.testing import capture_logs

from relaygate.config.server import parse_server_config
from relaygate.exchange import Operation
from relaygate.gateway import Gateway, GatewayDeps
from relaygate.providers.client import HttpxUpstream
from relaygate.telemetry import Telemetry
from tests.fakes import ChunkStream, sse_event, sse_response

TEXT = "Streams that break can be finished by another target."
A, B = "config.targets[0]", "config.targets[1]"


def chunk(content: str | None, *, cid: str, finish: str | None = None) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": 1,
        "model": f"model-{cid}",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def broken(sent: str) -> httpx.Response:
    """A's stream: ``sent`` in two chunks, then the connection drops."""
    half = len(sent) // 2
    chunks = [sse_event(chunk(sent[:half], cid="a")), sse_event(chunk(sent[half:], cid="a"))]
    return sse_response(ChunkStream(chunks, error=httpx.ReadError("connection reset")))


def whole(text: str) -> httpx.Response:
    """B's stream: ``text`` in three chunks, the finish, usage and ``[DONE]``."""
    third = len(text) // 3
    pieces = [text[:third], text[third : 2 * third], text[2 * third :]]
    usage = {
        "id": "b",
        "object": "chat.completion.chunk",
        "created": 2,
        "model": "model-b",
        "choices": [],
        "usage": {"prompt_tokens": 11, "completion_tokens": 9},
    }
    events = [sse_event(chunk(p, cid="b")) for p in pieces]
    events += [sse_event(chunk(None, cid="b", finish="stop")), sse_event(usage)]
    events.append(sse_event("[DONE]"))
    return sse_response(ChunkStream(events))


def gateway(telemetry: Telemetry, answers: dict[str, httpx.Response], **limits: int) -> Gateway:
    """A fallback from target a to target b answering ``answers`` (by host), with
    ``limits``; :func:`gateway_asked` also returns the hosts asked, in order."""
    return gateway_asked(telemetry, answers, **limits)[0]


def gateway_asked(
    telemetry: Telemetry, answers: dict[str, httpx.Response], **limits: int
) -> tuple[Gateway, list[str]]:
    asked: list[str] = []

    async def reply(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.host)
        return answers[request.url.host]

    def target(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "provider": "openai",
            "api_key": f"sk-{name}",
            "custom_host": f"http://{name}.test/v1",
        }

    server = parse_server_config(
        {
            "default_config": {
                "strategy": {"mode": "fallback"},
                "targets": [target("a"), target("b")],
            },
            "limits": limits,
        }
    )
    client = httpx.AsyncClient(transport=httpx.MockTransport(reply))
    gw = Gateway(server, GatewayDeps(upstream=HttpxUpstream(client), telemetry=telemetry))
    return gw, asked


async def run(gw: Gateway) -> bytes:
    body = {"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    edge = await gw.handle(Operation.CHAT, orjson.dumps(body), {})
    assert edge.status == 200 and edge.stream is not None
    out: AsyncIterator[bytes] = edge.stream
    return b"".join([piece async for piece in out])


def events_of(body: bytes) -> list[Any]:
    lines = [line[6:] for line in body.split(b"\n") if line.startswith(b"data: ")]
    return [line.decode() if line == b"[DONE]" else orjson.loads(line) for line in lines]


def text_of(events: list[Any]) -> str:
    return "".join(
        e["choices"][0]["delta"].get("content", "")
        for e in events
        if isinstance(e, dict) and e.get("choices")
    )


def metric(tel: Telemetry, name: str, **labels: str) -> float:
    return tel.metrics.registry.get_sample_value(name, labels) or 0.0


def tokens(tel: Telemetry, target: str) -> float:
    labels = {"config": "default", "target": target, "provider": "openai", "model": "other"}
    return metric(tel, "relaygate_upstream_tokens_total", **labels, type="output")


async def test_a_recovered_stream_reads_as_one_answer_and_tells_the_recovery(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    sent = TEXT[:20]
    gw = gateway(telemetry, {"a.test": broken(sent), "b.test": whole(TEXT)})
    with capture_logs() as logs:
        events = events_of(await run(gw))
    assert text_of(events) == TEXT
    assert events[-1] == "[DONE]"
    assert not any(isinstance(e, dict) and "error" in e for e in events)
    assert {(e["id"], e["model"]) for e in events if isinstance(e, dict)} == {("a", "model-a")}
    assert events[-2]["usage"] == {"prompt_tokens": 11, "completion_tokens": 9}

    line = next(e for e in logs if e["event"] == "request")
    assert line["route"] == f"{A}:stream_error>{B}:200(recovered@20 chars)"
    assert line["outcome"] == "ok" and line["served_by"] == B
    assert (line["tokens_in"], line["tokens_out"]) == (11, 9)
    assert [(a["target_path"], a["reason"]) for a in line["attempts"]] == [
        (A, "stream_error"),
        (B, "ok"),
    ]

    finished = spans.get_finished_spans()
    (server,) = [s for s in finished if s.kind is SpanKind.SERVER]
    (event,) = [e for e in server.events if e.name == "relaygate.stream_recovered"]
    assert event.attributes == {"relaygate.recovery.delivered_chars": 20}
    assert server.attributes["relaygate.route"] == line["route"]
    clients = [s for s in finished if s.kind is SpanKind.CLIENT]
    assert [s.attributes["relaygate.outcome"] for s in clients] == ["stream_error", "ok"]
    assert all(
        s.parent is not None and s.parent.trace_id == server.context.trace_id for s in clients
    )
    assert (tokens(telemetry, "a"), tokens(telemetry, "b")) == (0, 9)
    assert metric(telemetry, "relaygate_requests_in_flight") == 0


A_DELIVERS = len(sse_event(chunk(TEXT[:10], cid="a"))) + len(sse_event(chunk(TEXT[10:20], cid="a")))
"""The bytes a's broken stream delivers before it breaks (see :func:`broken`)."""


@pytest.mark.parametrize(
    ("max_recovery_bytes", "recovered", "given_up"),
    [
        (10_000, True, 0),
        # Recovered, and the continuation it forwards passes the cap: a second break would
        # not be recovered.
        (A_DELIVERS, True, 1),
        (A_DELIVERS - 1, False, 1),
    ],
)
async def test_a_stream_past_the_recovery_cap_is_not_recovered_and_counted(
    telemetry: Telemetry, max_recovery_bytes: int, recovered: bool, given_up: int
) -> None:
    answers = {"a.test": broken(TEXT[:20]), "b.test": whole(TEXT)}
    gw, asked = gateway_asked(telemetry, answers, max_recovery_bytes=max_recovery_bytes)
    with capture_logs() as logs:
        events = events_of(await run(gw))
    line = next(e for e in logs if e["event"] == "request")
    assert metric(telemetry, "relaygate_stream_recovery_given_up_total") == given_up
    if recovered:
        assert text_of(events) == TEXT and events[-1] == "[DONE]"
        assert asked == ["a.test", "b.test"]
        return
    assert text_of(events) == TEXT[:20]
    assert "upstream stream interrupted" in events[-1]["error"]["message"]
    assert asked == ["a.test"], "no target is asked to continue a stream past the cap"
    assert line["route"] == f"{A}:stream_error"
    assert line["outcome"] == "stream_error"
    assert [e["max_recovery_bytes"] for e in logs if e["event"] == "recovery_given_up"] == [
        max_recovery_bytes
    ]
    assert metric(telemetry, "relaygate_requests_in_flight") == 0


async def test_a_diverging_recovery_ends_with_the_error_event_and_says_so(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    gw = gateway(telemetry, {"a.test": broken(TEXT[:20]), "b.test": whole(TEXT.upper())})
    with capture_logs() as logs:
        events = events_of(await run(gw))
    assert text_of(events) == TEXT[:20], "nothing of the diverging stream reaches the client"
    error = events[-1]["error"]
    assert error["code"] == "upstream_stream_interrupted"
    assert "recovery diverged" in error["message"]
    line = next(e for e in logs if e["event"] == "request")
    # The diverging attempt's stream was closed by the gateway, not finished: cancelled.
    assert line["route"] == f"{A}:stream_error>{B}:cancelled(diverged@20 chars)"
    assert line["outcome"] == "stream_error"
    (server,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert [e.name for e in server.events if "recover" in e.name] == ["relaygate.recovery_diverged"]
    assert metric(telemetry, "relaygate_requests_in_flight") == 0


async def test_with_no_target_left_the_break_ends_the_stream_as_before(
    telemetry: Telemetry,
) -> None:
    gw = gateway(
        telemetry, {"a.test": broken(TEXT[:20]), "b.test": httpx.Response(503, json={"e": 1})}
    )
    with capture_logs() as logs:
        events = events_of(await run(gw))
    assert text_of(events) == TEXT[:20]
    assert "upstream stream interrupted" in events[-1]["error"]["message"]
    line = next(e for e in logs if e["event"] == "request")
    assert line["route"] == f"{A}:stream_error>{B}:503"
    assert line["outcome"] == "stream_error"


def completion(text: str, *, cid: str, finish: str | None = None) -> bytes:
    choice = {"text": text, "index": 0, "finish_reason": finish}
    return sse_event(
        {"id": cid, "object": "text_completion", "created": 1, "model": "m", "choices": [choice]}
    )


async def test_a_text_completion_stream_is_recovered_on_its_text(telemetry: Telemetry) -> None:
    first = [completion(TEXT[:7], cid="a"), completion(TEXT[7:15], cid="a")]
    rest = [completion(TEXT[:10], cid="b"), completion(TEXT[10:], cid="b")]
    answers = {
        "a.test": sse_response(ChunkStream(first, error=httpx.ReadError("reset"))),
        "b.test": sse_response(
            ChunkStream([*rest, completion("", cid="b", finish="stop"), sse_event("[DONE]")])
        ),
    }
    gw = gateway(telemetry, answers)
    body = {"model": "m", "prompt": "Once", "stream": True}
    edge = await gw.handle(Operation.TEXT_COMPLETION, orjson.dumps(body), {})
    assert edge.stream is not None
    events = events_of(b"".join([piece async for piece in edge.stream]))
    assert "".join(e["choices"][0]["text"] for e in events if isinstance(e, dict)) == TEXT
    assert {e["id"] for e in events if isinstance(e, dict)} == {"a"}
    assert events[-1] == "[DONE]"


def prefill_gateway(telemetry: Telemetry, b_reply: Any) -> tuple[Gateway, list[Any]]:
    """A fallback from a broken ``a`` to ``b`` declared ``supports_prefill``; ``b_reply``
    answers b's requests (their bodies are recorded)."""
    bodies: list[Any] = []

    async def reply(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a.test":
            return broken(TEXT[:20])
        bodies.append(orjson.loads(request.content))
        answer: httpx.Response = b_reply(bodies[-1])
        return answer

    targets = [
        {"provider": "openai", "api_key": "sk-a", "custom_host": "http://a.test/v1"},
        {
            "provider": "openai",
            "api_key": "sk-b",
            "custom_host": "http://b.test/v1",
            "supports_prefill": True,
        },
    ]
    server = parse_server_config(
        {"default_config": {"strategy": {"mode": "fallback"}, "targets": targets}}
    )
    client = httpx.AsyncClient(transport=httpx.MockTransport(reply))
    gw = Gateway(server, GatewayDeps(upstream=HttpxUpstream(client), telemetry=telemetry))
    return gw, bodies


async def test_a_target_that_supports_prefill_continues_the_delivered_text(
    telemetry: Telemetry,
) -> None:
    def continuation(body: Any) -> httpx.Response:
        last = body["messages"][-1]
        assert last == {"role": "assistant", "content": TEXT[:20]}
        return whole(TEXT[20:])

    gw, bodies = prefill_gateway(telemetry, continuation)
    with capture_logs() as logs:
        events = events_of(await run(gw))
    assert text_of(events) == TEXT
    assert len(bodies) == 1 and bodies[0]["messages"][0] == {"role": "user", "content": "hi"}
    line = next(e for e in logs if e["event"] == "request")
    assert line["route"] == f"{A}:stream_error>{B}:200(recovered@20 chars, prefill)"


async def test_a_target_refusing_the_prefill_gets_a_clean_restart(telemetry: Telemetry) -> None:
    def refuse_prefill(body: Any) -> httpx.Response:
        if body["messages"][-1]["role"] == "assistant":
            return httpx.Response(400, json={"error": {"message": "no prefill", "type": "x"}})
        return whole(TEXT)

    gw, bodies = prefill_gateway(telemetry, refuse_prefill)
    with capture_logs() as logs:
        events = events_of(await run(gw))
    assert text_of(events) == TEXT
    assert [b["messages"][-1]["role"] for b in bodies] == ["assistant", "user"]
    line = next(e for e in logs if e["event"] == "request")
    assert line["route"] == f"{A}:stream_error>{B}:400,200(recovered@20 chars)"
    assert line["outcome"] == "ok"


async def test_a_recovering_stream_that_breaks_too_is_recovered_by_the_next_target(
    telemetry: Telemetry,
) -> None:
    # b breaks after 30 characters: 20 repeated, 10 new ones reached the client; c must
    # then repeat all 30.
    answers = {"a.test": broken(TEXT[:20]), "b.test": broken(TEXT[:30]), "c.test": whole(TEXT)}

    async def reply(request: httpx.Request) -> httpx.Response:
        return answers[request.url.host]

    targets = [
        {"provider": "openai", "api_key": "k", "custom_host": f"http://{n}.test/v1"} for n in "abc"
    ]
    server = parse_server_config(
        {"default_config": {"strategy": {"mode": "fallback"}, "targets": targets}}
    )
    client = httpx.AsyncClient(transport=httpx.MockTransport(reply))
    gw = Gateway(server, GatewayDeps(upstream=HttpxUpstream(client), telemetry=telemetry))
    with capture_logs() as logs:
        events = events_of(await run(gw))
    assert text_of(events) == TEXT
    assert events[-1] == "[DONE]"
    line = next(e for e in logs if e["event"] == "request")
    c = "config.targets[2]"
    expected = f"{A}:stream_error>{B}:stream_error(recovered@20 chars)>{c}:200(recovered@30 chars)"
    assert line["route"] == expected
