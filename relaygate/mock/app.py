"""The mock upstream as an ASGI app: request handling, fault answers, SSE streams and the
``/_mock/*`` control endpoints.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive

from relaygate.frontdoor.anthropic_messages import anthropic_error
from relaygate.mock.anthropic import AnthropicWire, counted_tokens
from relaygate.mock.bedrock import BedrockSimulator
from relaygate.mock.cohere import CohereWire
from relaygate.mock.faults import REQUEST_TEXT_WORDS, Fault, MockSettings, parse_faults
from relaygate.mock.google import KINDS as GEMINI_KINDS
from relaygate.mock.google import GeminiWire
from relaygate.mock.openai import (
    _EMBEDDING_DIMENSIONS,
    _MAX_EMBEDDING_DIMENSIONS,
    STREAM_SHAPES,
    _embedding_inputs,
    _embedding_tokens,
    _embedding_vector,
    _error_response,
    _format_seconds,
    _is_token_list,
    _json_response,
    _prompt_tokens,
    _split_text,
    _text_length,
    request_text,
    stream_chunks,
)
from relaygate.mock.responses import responses_answer
from relaygate.mock.state import _NOT_JSON, _MockState, _parse_body
from relaygate.mock.tools import tool_call_chunks, tool_call_of
from relaygate.mock.wire import Exchange, Frames, Wire

GEMINI = GeminiWire()
COHERE = CohereWire()

_GARBAGE_BODY = b"<html>upstream exploded</html>"


class _StreamCut(Exception):
    """Raised inside a streaming body to make the server drop the connection."""


class _QuietStreamCut(logging.Filter):
    """Drops the server's error log records caused by a deliberate stream cut."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc_info = record.exc_info
        exc: BaseException | None = exc_info[1] if exc_info else None
        while exc is not None:
            if isinstance(exc, _StreamCut):
                return False
            exc = exc.__cause__ or exc.__context__
        return True


def _install_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, _QuietStreamCut) for existing in logger.filters):
        logger.addFilter(_QuietStreamCut())


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _sleep_unless_disconnected(request: Request, seconds: float) -> bool:
    """Sleep ``seconds``; return ``True`` early if the client disconnects first.

    Must only be called after the request body has been fully read.
    """
    if seconds <= 0:
        return False
    sleeper = asyncio.ensure_future(asyncio.sleep(seconds))
    watcher = asyncio.ensure_future(_wait_for_disconnect(request.receive))
    try:
        done, _ = await asyncio.wait({sleeper, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if watcher in done and watcher.exception() is not None:
            # The disconnect cannot be observed on this server; just sleep.
            await sleeper
            return False
    finally:
        sleeper.cancel()
        watcher.cancel()
    return watcher in done


_DEFAULT_SETTINGS = MockSettings()


class _MockApp:
    """Route handlers bound to one :class:`_MockState`."""

    def __init__(self, settings: MockSettings) -> None:
        self.settings = settings
        self.state = _MockState(settings)
        self.name_header = {"x-mock-name": settings.name}
        self.greeting = settings.answer or f"Hello from {settings.name}"

    # -- shared request pipeline -------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        expected = self.settings.api_key
        if expected is None:
            return True
        candidates = [request.headers.get("api-key", ""), request.headers.get("x-goog-api-key", "")]
        authorization = request.headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer":
            candidates.append(token.strip())
        return any(hmac.compare_digest(c.encode(), expected.encode()) for c in candidates if c)

    def _fail(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        wire: Wire | None = None,
    ) -> Response:
        self.state.count(str(status))
        return _error_of(wire, status, message, dict(self.name_header), param=param, code=code)

    async def _handle(
        self,
        request: Request,
        kind: str,
        wire: Wire | None = None,
        model: str = "",
        action: str = "",
    ) -> Response:
        """Answer one API request; ``wire`` is a vendor's format (``None``: OpenAI's), with
        the ``model`` and ``action`` its URL named."""
        name = self.settings.name
        raw = await request.body()
        body = _parse_body(raw)
        self.state.record(request, None if body is _NOT_JSON else body)
        base_seconds = self.settings.latency_ms / 1000.0

        early: Response | None = None
        fault: Fault | None = None
        payload: dict[str, Any] = {}
        if not self._authorized(request):
            early = self._fail(401, f"mock {name}: invalid or missing api key", wire=wire)
        elif body is _NOT_JSON:
            early = self._fail(
                400, f"mock {name}: request body is not valid JSON", code="invalid_json", wire=wire
            )
        elif body is not None and not isinstance(body, dict):
            early = self._fail(400, f"mock {name}: request body must be a JSON object", wire=wire)
        else:
            payload = body or {}
            problem = wire.validate(kind, payload) if wire else self._validate(kind, payload)
            if problem is not None:
                early = self._fail(400, f"mock {name}: {problem[1]}", param=problem[0], wire=wire)
            else:
                header_spec = request.headers.get("x-mock-fault")
                if header_spec is not None:
                    try:
                        fault = parse_faults(header_spec)[0]
                    except (ValueError, IndexError) as exc:
                        detail = str(exc) if isinstance(exc, ValueError) else "empty spec"
                        early = self._fail(
                            400, f"mock {name}: bad x-mock-fault header: {detail}", wire=wire
                        )
                else:
                    fault = self.state.next_fault()

        if early is not None or fault is None:
            await _sleep_unless_disconnected(request, base_seconds)
            return early or self._fail(500, f"mock {name}: no fault chosen", wire=wire)

        self.state.count("hang" if fault.hang else str(fault.status))
        headers = dict(self.name_header)
        if fault.retry_after is not None:
            headers["retry-after"] = _format_seconds(fault.retry_after)
        if fault.retry_after_ms is not None:
            headers["retry-after-ms"] = _format_seconds(fault.retry_after_ms)

        if await _sleep_unless_disconnected(request, base_seconds + fault.latency_ms / 1000.0):
            return Response(status_code=499, headers=headers)
        if fault.hang:
            await _sleep_unless_disconnected(request, self.settings.hang_s)
            return _error_of(wire, 504, f"mock {name}: simulated hang ended", headers)
        if fault.garbage:
            return Response(
                _GARBAGE_BODY, status_code=fault.status, media_type="text/html", headers=headers
            )
        if fault.status >= 400:
            what = fault.error_code or str(fault.status)
            return _error_of(
                wire, fault.status, f"mock {name}: simulated {what}", headers, code=fault.error_code
            )
        if fault.status in (204, 304):
            return Response(status_code=fault.status, headers=headers)
        if wire is not None:
            return self._vendor_success(wire, kind, payload, model, action, fault, headers)
        return self._success(kind, request, payload, fault, headers)

    def _vendor_success(
        self,
        wire: Wire,
        kind: str,
        body: dict[str, Any],
        model: str,
        action: str,
        fault: Fault,
        headers: dict[str, str],
    ) -> Response:
        """A vendor format's success answer, plain or streamed with the fault's stream faults."""
        self.state.sequence += 1
        exchange = Exchange(
            body=body,
            model=model or str(body.get("model") or self.settings.name),
            action=action,
            text=self._answer(wire.prompt_of(kind, body)),
            name=self.settings.name,
            fault=fault,
            sequence=self.state.sequence,
        )
        if not wire.streamed(kind, exchange):
            return _json_response(wire.answer(kind, exchange), fault.status, headers)
        frames = wire.stream(
            kind, exchange, _split_text(exchange.text, self.settings.stream_chunks)
        )
        return StreamingResponse(
            _sse_frames(frames, fault, self.settings.hang_s),
            status_code=fault.status,
            media_type="text/event-stream",
            headers={**headers, "cache-control": "no-cache"},
        )

    def _validate(self, kind: str, body: dict[str, Any]) -> tuple[str, str] | None:
        """``(param, message)`` describing why ``body`` is unusable, or ``None``."""
        if kind == "chat":
            messages = body.get("messages")
            if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                return ("messages", "'messages' must be a list of message objects")
        elif kind == "embeddings":
            if _embedding_inputs(body.get("input")) is None:
                return ("input", "'input' must be a string, a list of strings or token ids")
            dimensions = body.get("dimensions", _EMBEDDING_DIMENSIONS)
            if (
                isinstance(dimensions, bool)
                or not isinstance(dimensions, int)
                or not 1 <= dimensions <= _MAX_EMBEDDING_DIMENSIONS
            ):
                return (
                    "dimensions",
                    f"'dimensions' must be an integer in 1..{_MAX_EMBEDDING_DIMENSIONS}",
                )
            encoding = body.get("encoding_format", "float")
            if encoding not in ("float", "base64"):
                return ("encoding_format", "'encoding_format' must be 'float' or 'base64'")
        return None

    # -- success bodies ----------------------------------------------------------

    def _model(self, request: Request, body: dict[str, Any]) -> str:
        model = body.get("model")
        if isinstance(model, str) and model:
            return model
        deployment = request.path_params.get("deployment")
        if isinstance(deployment, str) and deployment:
            return deployment
        return self.settings.name

    def _answer(self, prompt: object) -> str:
        """The answer's text: the greeting, or a deterministic function of ``prompt``."""
        if self.settings.text == "request":
            return request_text(prompt, REQUEST_TEXT_WORDS)
        return self.greeting

    @staticmethod
    def _usage(prompt_tokens: int, answer: str) -> dict[str, int]:
        answer_tokens = len(answer.split())
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": answer_tokens,
            "total_tokens": prompt_tokens + answer_tokens,
        }

    def _success(
        self,
        kind: str,
        request: Request,
        body: dict[str, Any],
        fault: Fault,
        headers: dict[str, str],
    ) -> Response:
        model = self._model(request, body)
        if kind == "responses":
            return responses_answer(self, body, fault, headers, model)
        if kind == "embeddings":
            return self._embeddings(model, body, fault.status, headers)
        if kind == "models":
            data = [
                {
                    "id": self.settings.name,
                    "object": "model",
                    "created": 0,
                    "owned_by": self.settings.name,
                }
            ]
            return _json_response({"object": "list", "data": data}, fault.status, headers)

        created = int(time.time())
        if kind == "chat":
            messages: list[dict[str, Any]] = body["messages"]
            prompt_tokens = _prompt_tokens(sum(_text_length(m.get("content")) for m in messages))
            completion_id = self.state.next_id("chatcmpl")
            answer = self._answer(messages)
        else:
            prompt = body.get("prompt", "")
            if _is_token_list(prompt):
                prompt_tokens = len(prompt)
            else:
                prompts = prompt if isinstance(prompt, list) else [prompt]
                prompt_tokens = _prompt_tokens(sum(_text_length(p) for p in prompts))
            completion_id = self.state.next_id("cmpl")
            answer = self._answer(prompt)
        usage = self._usage(prompt_tokens, answer)
        call = tool_call_of(body, answer, f"call_{completion_id}") if kind == "chat" else None

        if body.get("stream") is True:
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            chunks = (
                tool_call_chunks(
                    call,
                    completion_id=completion_id,
                    created=created,
                    model=model,
                    usage=usage,
                    include_usage=include_usage,
                )
                if call is not None
                else stream_chunks(
                    STREAM_SHAPES[kind],
                    completion_id=completion_id,
                    created=created,
                    model=model,
                    pieces=_split_text(answer, self.settings.stream_chunks),
                    usage=usage,
                    include_usage=include_usage,
                )
            )
            stream_headers = {**headers, "cache-control": "no-cache"}
            return StreamingResponse(
                _sse(chunks, fault, self.settings.hang_s),
                status_code=fault.status,
                media_type="text/event-stream",
                headers=stream_headers,
            )

        choice: dict[str, Any]
        if call is not None:
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            choice = {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
            obj = "chat.completion"
        elif kind == "chat":
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "logprobs": None,
                "finish_reason": "stop",
            }
            obj = "chat.completion"
        else:
            choice = {"text": answer, "index": 0, "logprobs": None, "finish_reason": "stop"}
            obj = "text_completion"
        payload = {
            "id": completion_id,
            "object": obj,
            "created": created,
            "model": model,
            "choices": [choice],
            "usage": usage,
        }
        return _json_response(payload, fault.status, headers)

    def _embeddings(
        self, model: str, body: dict[str, Any], status: int, headers: dict[str, str]
    ) -> Response:
        inputs = _embedding_inputs(body.get("input")) or []
        dimensions: int = body.get("dimensions", _EMBEDDING_DIMENSIONS)
        as_base64 = body.get("encoding_format", "float") == "base64"
        data: list[dict[str, Any]] = []
        for index, (key, _, _) in enumerate(inputs):
            vector = _embedding_vector(key, dimensions)
            embedding: object = (
                base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
                if as_base64
                else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = _embedding_tokens(inputs)
        payload = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return _json_response(payload, status, headers)

    # -- route endpoints -----------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        return await self._handle(request, "chat")

    async def responses(self, request: Request) -> Response:
        return await self._handle(request, "responses")

    async def completions(self, request: Request) -> Response:
        return await self._handle(request, "completions")

    async def embeddings(self, request: Request) -> Response:
        return await self._handle(request, "embeddings")

    async def models(self, request: Request) -> Response:
        return await self._handle(request, "models")

    async def gemini(self, request: Request) -> Response:
        """``/v1beta/models/{model}:{method}`` in Gemini's format."""
        model, _, action = request.path_params["target"].partition(":")
        kind = GEMINI_KINDS.get(action)
        if kind is None:
            raise HTTPException(404)
        return await self._handle(request, kind, GEMINI, model=model, action=action)

    async def cohere_chat(self, request: Request) -> Response:
        """``/v2/chat`` in Cohere's format."""
        return await self._handle(request, "chat", COHERE)

    async def cohere_embed(self, request: Request) -> Response:
        """``/v2/embed`` in Cohere's format."""
        return await self._handle(request, "embed", COHERE)

    async def count_tokens(self, request: Request) -> Response:
        """Anthropic's ``/v1/messages/count_tokens``: ``input_tokens`` as
        :func:`~relaygate.mock.anthropic.counted_tokens` counts them; the script's error
        status, a wrong key (``x-api-key`` or a bearer token: 401) and a body that is no
        request (400) in Anthropic's error shape."""
        body = _parse_body(await request.body())
        self.state.record(request, None if body is _NOT_JSON else body)
        status = self.state.next_fault().status
        payload: dict[str, Any] = body if isinstance(body, dict) else {}
        key, expected = request.headers.get("x-api-key", ""), self.settings.api_key
        if not self._authorized(request) and not (
            expected and key and hmac.compare_digest(key.encode(), expected.encode())
        ):
            status = 401
        elif not isinstance(payload.get("messages"), list):
            status = 400
        self.state.count(str(status))
        if status >= 400:
            error = anthropic_error(status, b"")
            return Response(error, status, self.name_header, media_type="application/json")
        return _json_response({"input_tokens": counted_tokens(payload)}, 200, self.name_header)

    async def not_found(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if not request.url.path.startswith("/_mock/"):
            body = _parse_body(await request.body())
            self.state.record(request, None if body is _NOT_JSON else body)
            self.state.count(str(status))
        message = f"mock {self.settings.name}: no route for {request.method} {request.url.path}"
        return _error_response(status, message, dict(self.name_header))

    # -- control endpoints -------------------------------------------------------

    async def stats(self, request: Request) -> Response:
        by_status = {key: self.state.by_status[key] for key in sorted(self.state.by_status)}
        return _json_response(
            {"requests": self.state.requests, "by_status": by_status}, 200, self.name_header
        )

    async def set_script(self, request: Request) -> Response:
        name = self.settings.name
        body = _parse_body(await request.body())
        if not isinstance(body, dict):
            return _error_response(
                400, f"mock {name}: expected a JSON object", dict(self.name_header)
            )
        spec = body.get("script", "")
        loop = body.get("loop", False)
        if not isinstance(spec, str) or not isinstance(loop, bool):
            message = f"mock {name}: 'script' must be a string and 'loop' a boolean"
            return _error_response(400, message, dict(self.name_header))
        try:
            script = parse_faults(spec)
        except ValueError as exc:
            return _error_response(
                400, f"mock {name}: {exc}", dict(self.name_header), param="script"
            )
        self.state.set_script(script, loop)
        return _json_response({"script_length": len(script), "loop": loop}, 200, self.name_header)

    async def reset(self, request: Request) -> Response:
        self.state.reset()
        return _json_response({"reset": True}, 200, self.name_header)

    async def requests(self, request: Request) -> Response:
        return _json_response(list(self.state.recorded), 200, self.name_header)

    def routes(self) -> list[Route]:
        routes: list[Route] = []
        for prefix in ("/v1", "", "/openai/deployments/{deployment}", "/openai/v1"):
            routes.append(Route(f"{prefix}/chat/completions", self.chat, methods=["POST"]))
            routes.append(Route(f"{prefix}/completions", self.completions, methods=["POST"]))
            routes.append(Route(f"{prefix}/embeddings", self.embeddings, methods=["POST"]))
            routes.append(Route(f"{prefix}/responses", self.responses, methods=["POST"]))
        for path in ("/v1/models", "/models", "/openai/models"):
            routes.append(Route(path, self.models, methods=["GET"]))
        for path in ("/v1/messages/count_tokens", "/messages/count_tokens"):
            routes.append(Route(path, self.count_tokens, methods=["POST"]))
        routes.append(Route("/v1beta/models/{target}", self.gemini, methods=["POST"]))
        routes.append(Route("/v2/chat", self.cohere_chat, methods=["POST"]))
        routes.append(Route("/v2/embed", self.cohere_embed, methods=["POST"]))
        routes.extend(BedrockSimulator(self).routes())
        routes.append(Route("/_mock/stats", self.stats, methods=["GET"]))
        routes.append(Route("/_mock/script", self.set_script, methods=["POST"]))
        routes.append(Route("/_mock/reset", self.reset, methods=["POST"]))
        routes.append(Route("/_mock/requests", self.requests, methods=["GET"]))
        return routes


def _sse(chunks: list[dict[str, Any]], fault: Fault, hang_s: float) -> AsyncIterator[bytes]:
    """OpenAI's SSE events for ``chunks``, then ``data: [DONE]``, through :func:`_sse_frames`."""
    frames = Frames(
        [b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chunks],
        _first_content_index(chunks),
        b"data: [DONE]\n\n",
    )
    return _sse_frames(frames, fault, hang_s)


async def _sse_frames(frames: Frames, fault: Fault, hang_s: float) -> AsyncIterator[bytes]:
    """Yield SSE events, honouring ``chunk_delay_ms``, ``first_token_delay_ms``,
    ``cut_after_chunks`` and ``stall_after_chunks`` (a stall lasts ``hang_s`` at most, then
    the connection is cut; the server cancels it sooner when the client goes away)."""
    delay = fault.chunk_delay_ms / 1000.0
    cut = fault.cut_after_chunks
    stall = fault.stall_after_chunks
    first_content = frames.first_content
    for index, chunk in enumerate(frames.events):
        if cut is not None and index >= cut:
            raise _StreamCut(f"mock stream cut after {cut} chunks")
        if stall is not None and index >= stall:
            await asyncio.sleep(hang_s)
            raise _StreamCut(f"mock stream stalled after {stall} chunks, then cut")
        if index and delay > 0:
            await asyncio.sleep(delay)
        if index == first_content and fault.first_token_delay_ms > 0:
            await asyncio.sleep(fault.first_token_delay_ms / 1000.0)
        yield chunk
    if cut is not None:
        raise _StreamCut(f"mock stream cut after {cut} chunks")
    if stall is not None:
        await asyncio.sleep(hang_s)
        raise _StreamCut(f"mock stream stalled after {stall} chunks, then cut")
    if frames.trailer:
        if delay > 0:
            await asyncio.sleep(delay)
        yield frames.trailer


def _first_content_index(chunks: list[dict[str, Any]]) -> int:
    """Index of the first chunk past the role-only opening (0 when there is none)."""
    for index, chunk in enumerate(chunks):
        choices = chunk.get("choices") or [{}]
        if "role" not in choices[0].get("delta", {}):
            return index
    return 0


def create_mock_app(settings: MockSettings = _DEFAULT_SETTINGS) -> ASGIApp:
    """Build the mock upstream as a Starlette app (plain routes, no BaseHTTPMiddleware).

    Serves ``POST /v1/chat/completions``, ``POST /v1/completions``,
    ``POST /v1/embeddings`` and ``GET /v1/models``, the same without the ``/v1``
    prefix, Azure-style ``/openai/deployments/{deployment}/...`` (where a
    missing body ``model`` defaults to the deployment name) and Azure's v1 routes
    ``/openai/v1/...`` (the Responses API's).  Control endpoints:
    ``GET /_mock/stats``, ``POST /_mock/script`` (``{"script": spec, "loop": bool}``),
    ``POST /_mock/reset`` (counters, script position, recorded requests, RNG
    reseeded) and ``GET /_mock/requests`` (JSON list, oldest first, of the last
    100 API requests, each with method, path, raw query string, lower-cased
    headers and parsed JSON body or null).

    Each call returns an independent app with its own script position, counters
    and recordings.  Every mock also speaks Anthropic's Messages API at ``/v1/messages``
    (:mod:`relaygate.mock.anthropic`).  Streams cut by ``Fault.cut_after_chunks`` abort by raising
    inside the response body; the resulting uvicorn error log line is filtered.
    """
    _install_log_filter()
    mock = _MockApp(settings)
    app = Starlette(routes=mock.routes(), exception_handlers={HTTPException: mock.not_found})
    return AnthropicWire(app)


def _error_of(
    wire: Wire | None,
    status: int,
    message: str,
    headers: dict[str, str],
    *,
    param: str | None = None,
    code: str | None = None,
) -> Response:
    """An error answer in ``wire``'s format (``None``: OpenAI's)."""
    if wire is None:
        return _error_response(status, message, headers, param=param, code=code)
    return _json_response(wire.error(status, message, code), status, headers)
