"""The innermost handler: one upstream attempt for the request's target.

It asks the target's adapter for the wire request, sends it through the injected
:class:`~relaygate.providers.client.UpstreamClient`, and turns every outcome into a
:class:`~relaygate.exchange.GatewayResponse`, never an exception: network errors, invalid
answers and streams that break before their first chunk become synthesized 502s with a
bounded ``failure`` reason, so retry and fallback can act on them; such an answer keeps the
status line the upstream had sent (``upstream_status``), which the attempt records as sent.

A stream is answered only once its first chunk has arrived, so everything before that can
still be retried or fall back. When the target has a ``first_token_timeout``, the handler
waits further, holding the stream's opening (keep-alives, the role-only first chunk: see
:func:`~relaygate.sse.carries_content`) until the first chunk carrying content, so that a
target slow to start its answer is cut by the timeout layer while nothing has reached the
client. Without a first-token bound, the idle bound
(:func:`~relaygate.strategies.attempt_bound.stream_idle_s`) also covers the wait from the
headers to the first chunk: a stream silent that long is a 408 with reason ``stream_idle``,
which falls back. After the hand-over the bytes are the client's: if the upstream breaks
mid-stream, or goes silent for longer than the idle bound (reason ``stream_idle``), the
client receives an OpenAI-style ``data: {"error": ...}`` event (which the openai SDK raises
as ``APIError``) and no ``[DONE]``, never a clean-looking end.
"""

from __future__ import annotations

import re
from collections.abc import Callable, MutableMapping
from dataclasses import replace

import orjson
from opentelemetry.trace import get_current_span

from relaygate.errors import JSON_HEADERS, GatewayError, error_body, synthesized
from relaygate.exchange import ByteSource, GatewayRequest, GatewayResponse, Operation
from relaygate.exporters import semconv as sc
from relaygate.exporters.spans import set_attributes_later
from relaygate.providers.base import UpstreamRequest, prepare_adapter, translating_adapter
from relaygate.providers.client import (
    EgressRefused,
    StreamInterrupted,
    StreamStalled,
    UpstreamClient,
    UpstreamFailure,
)
from relaygate.providers.embeddings import conform
from relaygate.providers.registry import ProviderRegistry
from relaygate.providers.responses.bridge import responses_adapter
from relaygate.providers.translation import Refused
from relaygate.security.custody import caller_destination
from relaygate.security.egress import DEFAULT_POLICY, EgressPolicy
from relaygate.security.forwarding import never_forwarded
from relaygate.sse import MAX_PRELUDE_BYTES, carries_content
from relaygate.strategies.reasons import Reason
from relaygate.translate import TranslatedStream

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""Characters no header value may carry on the wire (what aiohttp refuses to send)."""

Injector = Callable[[MutableMapping[str, str]], None]
"""Writes trace-context headers (``traceparent``) for the current span into a carrier."""


def _no_injection(carrier: MutableMapping[str, str]) -> None:
    return None


def _break_event(detail: str) -> bytes:
    return stream_error_event(f"upstream stream interrupted: {detail}")


def stream_error_event(message: str) -> bytes:
    """An SSE event carrying an OpenAI-shaped error, ending a stream that broke."""
    body = error_body(message, type="upstream_error", code="upstream_stream_interrupted")
    return b"data: " + body + b"\n\n"


class ProviderHandler:
    """:data:`~relaygate.pipeline.Handler` that performs one attempt on ``request.target``."""

    def __init__(
        self,
        registry: ProviderRegistry,
        client: UpstreamClient,
        inject: Injector = _no_injection,
        egress: EgressPolicy = DEFAULT_POLICY,
    ) -> None:
        self._registry = registry
        self._client = client
        self._inject = inject
        self._egress = egress

    async def __call__(self, request: GatewayRequest) -> GatewayResponse:
        target = request.target
        assert target is not None, "the fallback layer binds a target before the attempt"
        extra: dict[str, str] = {}
        for name in target.forward_headers:
            value = request.headers.get(name)
            # Configs cannot name these (validation refuses them); a Target built in code
            # must not slip one through either.
            if value is not None and not never_forwarded(name):
                extra[name] = value
        self._inject(extra)
        adapter = self._registry.get(target.provider)
        if request.operation is Operation.RESPONSES:
            adapter = responses_adapter(adapter)
        # A provider with a wire format of its own (Anthropic, Gemini, Cohere, Bedrock, the
        # Responses bridge): its answers, streams and errors are translated below. None for
        # the OpenAI-compatible providers, whose answers pass through untouched.
        translating = translating_adapter(adapter)
        await prepare_adapter(adapter, target)
        try:
            wire = adapter.build_request(request, target, extra)
        except GatewayError as exc:
            # This target cannot serve the request (unsupported operation, missing setting):
            # an answer like any other, so fallback can move on to a target that can.
            return exc.to_response()
        except orjson.JSONEncodeError:
            # A translation re-serialises a caller's value (tool arguments parsed from their
            # string) nested past orjson's depth limit: the caller's mistake, not a 500.
            return GatewayError(
                400,
                f"a value in the request is nested too deeply for provider '{target.provider}'",
                code="invalid_value",
            ).to_response()
        unsendable = next((k for k, v in wire.headers.items() if _CONTROL.search(v)), None)
        if unsendable is not None:
            # No wire client may send it (header injection); the value is never echoed.
            return GatewayError(
                400,
                f"{target.path}: the '{unsendable}' header for the provider holds control "
                "characters and cannot be sent",
                code="invalid_header_value",
                param=unsendable,
            ).to_response()
        if caller_destination(target):
            # The destination is the caller's choice: the client checks it, and every
            # address it resolves to, against the egress policy before connecting.
            wire = replace(wire, egress=self._egress)
        set_attributes_later(get_current_span(), _server_attributes, wire)
        try:
            answer = await self._client.send(wire)
        except EgressRefused as exc:
            return synthesized(
                403,
                f"upstream '{target.provider}' {exc}",
                type="permission_error",
                code="egress_denied",
                failure=Reason.CONNECT_ERROR.value,
            )
        except UpstreamFailure as exc:
            return _failed(target.provider, Reason.CONNECT_ERROR, f"unreachable ({exc})")

        upstream = answer.stream
        if upstream is not None:
            source: ByteSource = upstream
            if translating is not None:
                translator = translating.stream_translator(request)
                source = TranslatedStream(upstream, translator, invalid=StreamInterrupted)
                answer.headers["content-type"] = "text/event-stream"
            stream = upstream.relay(source, breaks=(StreamInterrupted,), break_event=_break_event)
            hold = bool(target.first_token_timeout_ms)
            if hold:
                # The first-token bound (timeout layer) covers the opening; the idle bound
                # starts with the hand-over.
                stream.idle_timeout_s = None
            try:
                await stream.open(_held if hold else None)
            except StopAsyncIteration:
                await stream.aclose()
                return _failed(
                    target.provider, Reason.INVALID_RESPONSE, "sent an empty stream", answer.status
                )
            except StreamStalled as exc:
                # Silent since its headers, and nothing reached the client: a timeout of
                # this target, which fallback moves on from (it is not retried on it).
                await stream.aclose()
                return synthesized(
                    408,
                    f"upstream '{target.provider}' stream stalled before its first chunk ({exc})",
                    type="timeout_error",
                    code="stream_idle_timeout",
                    failure=Reason.STREAM_IDLE.value,
                    upstream_status=answer.status,
                )
            except StreamInterrupted as exc:
                await stream.aclose()
                return _failed(
                    target.provider, Reason.STREAM_ERROR, f"stream broke ({exc})", answer.status
                )
            except Refused as exc:
                # A refusal at the stream's start (Gemini's prompt block): an error answer.
                await stream.aclose()
                return _refused(answer.headers, exc)
            except BaseException:
                # Cut by the timeout layer, or the client went away: release the connection.
                await stream.aclose()
                raise
            stream.idle_timeout_s = upstream.idle_timeout_s
            return GatewayResponse(status=answer.status, headers=answer.headers, stream=stream)

        if 200 <= answer.status < 300:
            body = answer.body
            try:
                payload = adapter.parse_response(request, answer.status, answer.body)
                if translating is not None:
                    body = orjson.dumps(payload)
                    answer.headers["content-type"] = "application/json"
                if request.operation is Operation.EMBEDDINGS and conform(
                    payload, request.body.get("encoding_format")
                ):
                    body = orjson.dumps(payload)
            except Refused as exc:
                return _refused(answer.headers, exc)
            except ValueError as exc:
                return _failed(target.provider, Reason.INVALID_RESPONSE, str(exc), answer.status)
            return GatewayResponse(
                status=answer.status, headers=answer.headers, body=body, payload=payload
            )
        if not 400 <= answer.status < 600:
            return _failed(
                target.provider,
                Reason.INVALID_RESPONSE,
                f"answered status {answer.status}",
                answer.status,
            )
        error = (
            openai_error_body(target.provider, answer.status, answer.body)
            if translating is None
            else translating.error_body(answer.status, answer.headers, answer.body)
        )
        return GatewayResponse(
            status=answer.status, headers={**answer.headers, **JSON_HEADERS}, body=error
        )


def _server_attributes(wire: UpstreamRequest) -> dict[str, str | int]:
    """The attempt span's ``server.address`` and ``server.port``: where ``wire`` is sent."""
    return {sc.SERVER_ADDRESS: wire.host, sc.SERVER_PORT: wire.port}


def _held(opening: bytes) -> bool:
    """Whether a held opening waits for more: until a chunk carries content (the opening is
    small; past :data:`~relaygate.sse.MAX_PRELUDE_BYTES` it is handed on as it is, and a
    stream that ends during its opening hands on what it sent)."""
    return len(opening) < MAX_PRELUDE_BYTES and not carries_content(opening)


def _refused(headers: dict[str, str], refusal: Refused) -> GatewayResponse:
    """The error answer of a 2xx answer that is a refusal (Gemini's prompt block)."""
    return GatewayResponse(
        status=refusal.status, headers={**headers, **JSON_HEADERS}, body=refusal.body
    )


def _failed(provider: str, reason: Reason, detail: str, sent: int | None = None) -> GatewayResponse:
    """The 502 answering a failed attempt; ``sent`` is the status the upstream had sent."""
    return synthesized(
        502,
        f"upstream '{provider}' {detail}",
        type="upstream_error",
        code=f"upstream_{reason.value}",
        failure=reason.value,
        upstream_status=sent,
    )


def openai_error_body(provider: str, status: int, body: bytes) -> bytes:
    """The upstream's error body when it is OpenAI-shaped, else one wrapped in that shape."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        return body
    message = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(message, str):
        message = f"upstream '{provider}' answered {status}"
    return error_body(message, type="upstream_error", code=f"upstream_{status}")
