"""The fault simulator speaking Amazon Bedrock's Converse and ConverseStream wire format.

Routes (beside the OpenAI ones of :mod:`relaygate.mock.app`, sharing its script, counters
and recorded requests): ``POST /model/{modelId}/converse`` answers Converse JSON,
``POST /model/{modelId}/converse-stream`` answers ``application/vnd.amazon.eventstream``
frames (``messageStart``, ``contentBlockStart``/``Delta``/``Stop``, ``messageStop``,
``metadata``), as the Bedrock API reference describes them.

Authentication: the ``authorization`` header must have SigV4's shape,
``AWS4-HMAC-SHA256 Credential=<key id>/<yyyymmdd>/<region>/bedrock/aws4_request,
SignedHeaders=...;host;...;x-amz-date..., Signature=<64 hex>``, with ``x-amz-date`` sent
(the signature itself is not recomputed); with ``MockSettings.api_key`` set, the
credential's key id must be it. Otherwise: 403 ``InvalidSignatureException``.

A request whose ``toolConfig`` lists tools, and whose last turn carries no ``toolResult``,
is answered with a ``toolUse`` of the first tool (input ``{"answer": <text>}``), stop
reason ``tool_use``; otherwise with text, ``end_turn``.

Faults (:class:`~relaygate.mock.faults.Fault`): a status >= 400 answers Bedrock's error
shape (``{"message": ...}`` with ``x-amzn-errortype``): 429 ``ThrottlingException``, 503
``ServiceUnavailableException``, 400 ``ValidationException``... (``error_code`` names
another type). ``latency_ms``, ``hang``, ``garbage``, ``retry_after`` as for OpenAI. In a
stream, ``cut_after_chunks``/``stall_after_chunks``/``chunk_delay_ms``/
``first_token_delay_ms`` count eventstream frames; a 2xx stream fault with ``error_code``
sends that exception event (``modelStreamErrorException``, ``throttlingException``...)
where the stream would be cut (after the ``messageStart`` frame by default).

botocore decodes eventstream frames but has no encoder, so :func:`encode_frame` is a small
one, used only here; tests hold it to botocore's decoder.
"""

from __future__ import annotations

import asyncio
import binascii
import re
import struct
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from relaygate.mock.faults import Fault
from relaygate.mock.openai import _format_seconds, _prompt_tokens, _split_text, _text_length
from relaygate.mock.state import _NOT_JSON, _parse_body

if TYPE_CHECKING:
    from relaygate.mock.app import _MockApp

EVENTSTREAM = "application/vnd.amazon.eventstream"

ERROR_TYPES: Mapping[int, str] = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
"""The Bedrock error type the simulator answers for each status."""

_SIGV4 = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[A-Za-z0-9]+)/\d{8}/[a-z0-9-]+/bedrock/aws4_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=[0-9a-f]{64}"
)


def encode_frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One eventstream message: prelude (total and headers length, CRC32), string headers
    (type 7), payload, message CRC32; the framing botocore's ``EventStreamBuffer`` reads."""
    encoded = b"".join(
        struct.pack("B", len(name)) + name.encode() + b"\x07"
        + struct.pack(">H", len(value.encode())) + value.encode()
        for name, value in headers.items()
    )  # fmt: skip
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack(">I", binascii.crc32(message))


def event_frame(event_type: str, body: Mapping[str, Any]) -> bytes:
    """An ``event`` message of ``event_type`` with a JSON payload."""
    headers = {
        ":event-type": event_type,
        ":content-type": "application/json",
        ":message-type": "event",
    }
    return encode_frame(headers, orjson.dumps(body))


def exception_frame(exception_type: str, message: str) -> bytes:
    """An ``exception`` message (``modelStreamErrorException``...) with its message."""
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_frame(headers, orjson.dumps({"message": message}))


def signature_problem(headers: Mapping[str, str], key_id: str | None) -> str | None:
    """Why the SigV4 headers are not well formed (``None`` when they are)."""
    match = _SIGV4.fullmatch(headers.get("authorization", ""))
    if match is None:
        return "the authorization header is not a SigV4 (AWS4-HMAC-SHA256) signature"
    signed = match["signed"].split(";")
    if "host" not in signed or "x-amz-date" not in signed or "x-amz-date" not in headers:
        return "the signature must cover host and x-amz-date"
    if key_id is not None and match["key"] != key_id:
        return "the security token included in the request is invalid"
    return None


def error_response(status: int, kind: str, message: str, headers: dict[str, str]) -> Response:
    """Bedrock's error answer: ``{"message": ...}`` with ``x-amzn-errortype``."""
    out = {
        **headers,
        "x-amzn-errortype": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/",
    }
    return Response(
        orjson.dumps({"message": message}), status_code=status, media_type="application/json",
        headers=out,
    )  # fmt: skip


def _tool_name(body: Mapping[str, Any]) -> str | None:
    """The first tool's name when the model should call it (see the module)."""
    config = body.get("toolConfig")
    tools = config.get("tools") if isinstance(config, dict) else None
    if not isinstance(tools, list) or not tools:
        return None
    messages = body.get("messages") or []
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    content = last.get("content")
    blocks: list[Any] = content if isinstance(content, list) else []
    if any(isinstance(b, dict) and "toolResult" in b for b in blocks):
        return None
    spec = tools[0].get("toolSpec") if isinstance(tools[0], dict) else None
    name = spec.get("name") if isinstance(spec, dict) else None
    return name if isinstance(name, str) else None


def _prompt_of(body: Mapping[str, Any]) -> tuple[object, int]:
    raw = body.get("messages")
    messages: list[Any] = raw if isinstance(raw, list) else []
    chars = sum(_text_length(m.get("content")) for m in messages if isinstance(m, dict))
    return messages, _prompt_tokens(chars)


class BedrockSimulator:
    """The Bedrock routes of one mock app (its state, settings and answer text)."""

    def __init__(self, mock: _MockApp) -> None:
        self._mock = mock

    def routes(self) -> list[Route]:
        """``/model/{model}/converse`` and ``/model/{model}/converse-stream``."""
        return [
            Route("/model/{model:path}/converse", self.converse, methods=["POST"]),
            Route("/model/{model:path}/converse-stream", self.converse_stream, methods=["POST"]),
        ]

    async def converse(self, request: Request) -> Response:
        return await self._handle(request, stream=False)

    async def converse_stream(self, request: Request) -> Response:
        return await self._handle(request, stream=True)

    async def _handle(self, request: Request, *, stream: bool) -> Response:
        from relaygate.mock.app import _GARBAGE_BODY, _sleep_unless_disconnected

        mock = self._mock
        state = mock.state
        name = mock.settings.name
        raw = await request.body()
        body = _parse_body(raw)
        state.record(request, None if body is _NOT_JSON else body)
        headers = {**mock.name_header, "x-amzn-requestid": state.next_id("req")}
        problem = signature_problem(request.headers, mock.settings.api_key)
        if problem is not None:
            state.count("403")
            return error_response(403, "InvalidSignatureException", problem, headers)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            state.count("400")
            return error_response(
                400, "ValidationException", f"mock {name}: messages must be a list", headers
            )
        fault = state.next_fault()
        state.count("hang" if fault.hang else str(fault.status))
        if fault.retry_after is not None:
            headers["retry-after"] = _format_seconds(fault.retry_after)
        base = (mock.settings.latency_ms + fault.latency_ms) / 1000.0
        if await _sleep_unless_disconnected(request, base):
            return Response(status_code=499, headers=headers)
        if fault.hang:
            await _sleep_unless_disconnected(request, mock.settings.hang_s)
            return error_response(408, "ModelTimeoutException", "simulated hang ended", headers)
        if fault.garbage:
            return Response(_GARBAGE_BODY, status_code=fault.status, media_type="text/html")
        if fault.status >= 400:
            kind = fault.error_code or ERROR_TYPES.get(fault.status, "InternalServerException")
            return error_response(fault.status, kind, f"mock {name}: simulated {kind}", headers)
        prompt, input_tokens = _prompt_of(body)
        answer = mock._answer(prompt)
        tool = _tool_name(body)
        usage = {
            "inputTokens": input_tokens,
            "outputTokens": len(answer.split()),
            "totalTokens": input_tokens + len(answer.split()),
        }
        if stream:
            frames = _frames(
                answer, tool, usage, mock.settings.stream_chunks, state.next_id("tooluse")
            )
            return StreamingResponse(
                _send(frames, fault, mock.settings.hang_s),
                status_code=fault.status,
                media_type=EVENTSTREAM,
                headers=headers,
            )
        if tool is not None:
            content: list[dict[str, Any]] = [
                {"toolUse": {"toolUseId": state.next_id("tooluse"), "name": tool,
                             "input": {"answer": answer}}}
            ]  # fmt: skip
        else:
            content = [{"text": answer}]
        payload = {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": "tool_use" if tool is not None else "end_turn",
            "usage": usage,
            "metrics": {"latencyMs": int(base * 1000)},
        }
        return Response(
            orjson.dumps(payload), status_code=fault.status, media_type="application/json",
            headers=headers,
        )  # fmt: skip


def _frames(
    answer: str, tool: str | None, usage: dict[str, int], pieces: int, tool_id: str
) -> list[bytes]:
    """The ConverseStream frames of one answer."""
    frames = [event_frame("messageStart", {"role": "assistant"})]
    if tool is not None:
        start = {"toolUse": {"toolUseId": tool_id, "name": tool}}
        frames.append(event_frame("contentBlockStart", {"start": start, "contentBlockIndex": 0}))
        arguments = orjson.dumps({"answer": answer}).decode()
        deltas: list[dict[str, Any]] = [
            {"toolUse": {"input": part}} for part in _split_text(arguments, pieces)
        ]
    else:
        deltas = [{"text": part} for part in _split_text(answer, pieces)]
    frames += [
        event_frame("contentBlockDelta", {"delta": delta, "contentBlockIndex": 0})
        for delta in deltas
    ]
    frames.append(event_frame("contentBlockStop", {"contentBlockIndex": 0}))
    reason = "tool_use" if tool is not None else "end_turn"
    frames.append(event_frame("messageStop", {"stopReason": reason}))
    frames.append(event_frame("metadata", {"usage": usage, "metrics": {"latencyMs": 1}}))
    return frames


async def _send(frames: list[bytes], fault: Fault, hang_s: float) -> AsyncIterator[bytes]:
    """Yield the frames under the fault's stream settings (see the module)."""
    from relaygate.mock.app import _StreamCut

    delay = fault.chunk_delay_ms / 1000.0
    cut = fault.cut_after_chunks
    if fault.error_code is not None and cut is None:
        cut = 1
    for index, frame in enumerate(frames):
        if cut is not None and index >= cut:
            break
        if fault.stall_after_chunks is not None and index >= fault.stall_after_chunks:
            await asyncio.sleep(hang_s)
            raise _StreamCut("mock bedrock stream stalled, then cut")
        if index and delay > 0:
            await asyncio.sleep(delay)
        if index == 1 and fault.first_token_delay_ms > 0:
            await asyncio.sleep(fault.first_token_delay_ms / 1000.0)
        yield frame
    else:
        return
    if fault.error_code is not None:
        yield exception_frame(fault.error_code, f"mock: simulated {fault.error_code}")
        return
    raise _StreamCut(f"mock bedrock stream cut after {cut} frames")
