"""The edge codec shared by every edge (the ASGI app and the in-process httpx transport).

Input: :meth:`EdgeCodec.parse` turns an API request's raw parts into a validated
:class:`~relaygate.exchange.GatewayRequest` (size, JSON, depth, ``stream``, ``model``,
``x-portkey-metadata``), raising an OpenAI-shaped :class:`~relaygate.errors.GatewayError`
for bad input; :meth:`EdgeCodec.check_size` is the one body-size rule, also applied by an
edge that reads a body in pieces. Output: :meth:`EdgeCodec.headers` renders an answer's
Portkey-compatible response headers, and :class:`EdgeResponse` is what an edge sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson

from relaygate.config.server import LimitsSettings
from relaygate.errors import GatewayError
from relaygate.exchange import (
    GatewayRequest,
    GatewayResponse,
    Operation,
    RequestContext,
    ResponseStream,
)
from relaygate.nesting import may_be_too_deep, too_deep
from relaygate.route_story import cap_story

ROUTES: Mapping[Operation, str] = {
    Operation.CHAT: "/v1/chat/completions",
    Operation.TEXT_COMPLETION: "/v1/completions",
    Operation.EMBEDDINGS: "/v1/embeddings",
    Operation.RESPONSES: "/v1/responses",
}
"""The OpenAI-compatible route of each operation (the ``http.route`` span attribute)."""

PASSTHROUGH_PREFIXES = ("x-ratelimit-", "retry-after", "openai-", "x-portkey-cache-status")
"""Upstream answer headers passed on to the client besides ``content-type``."""
GATEWAY_ANSWER_HEADERS = frozenset({"www-authenticate"})
"""Headers of the gateway's own answers (no upstream involved) that reach the client:
``www-authenticate: Bearer`` on a 401 for a missing or unknown gateway key (RFC 6750). An
upstream's own ``www-authenticate`` is about its key, not the client's, and is not passed."""

_DECODER_DEPTH_ERROR = "depth limit exceeded"
"""How orjson says a document nests past its own (1,024-level) limit."""


MAX_MODEL_CHARS = 256
"""Longest ``model`` a request may name (provider model ids and Bedrock ARNs are far
shorter); it keys circuits, rate-limit counters and, bounded again, metric labels."""


@dataclass(slots=True)
class EdgeResponse:
    """What an edge sends back: status, header pairs, and a body or a byte stream."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    stream: ResponseStream | None = None


class EdgeCodec:
    """Parses API input and renders answer headers under the server's ``limits``."""

    def __init__(self, limits: LimitsSettings) -> None:
        self._max_body = limits.max_body_bytes
        self._max_depth = limits.max_json_depth
        self._max_route_header = limits.max_route_header_bytes

    def check_size(self, size: int) -> None:
        """Raise 413 ``request_too_large`` for a body of ``size`` bytes past the limit."""
        if size > self._max_body:
            raise GatewayError(
                413,
                f"request body is {size} bytes; the limit is {self._max_body}",
                code="request_too_large",
            )

    def parse(
        self,
        operation: Operation,
        body: bytes,
        headers: Mapping[str, str],
        ctx: RequestContext,
        parsed: Any = None,
    ) -> GatewayRequest:
        """The validated request for ``body`` and (lower-case) ``headers``; sets
        ``ctx.metadata`` from ``x-portkey-metadata``. Raises :class:`GatewayError` (4xx).
        ``parsed``: ``body`` already decoded (a front door built it), not decoded again."""
        self.check_size(len(body))
        if parsed is None:
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                if _DECODER_DEPTH_ERROR in str(exc):
                    self._too_deep("request body", None)
                raise GatewayError(
                    400, "request body is not valid JSON", code="invalid_json"
                ) from None
        if not isinstance(parsed, dict):
            raise GatewayError(400, "request body must be a JSON object", code="invalid_body")
        self._check_depth(body, parsed, "request body", None)
        stream = parsed.get("stream", False)
        if stream is None:
            stream = False
        if not isinstance(stream, bool):
            raise GatewayError(
                400, "'stream' must be a boolean", code="invalid_type", param="stream"
            )
        model = parsed.get("model")
        if model is not None and not isinstance(model, str):
            raise GatewayError(400, "'model' must be a string", code="invalid_type", param="model")
        if model is not None and len(model) > MAX_MODEL_CHARS:
            # A model names circuits, counters and labels: a caller's value stays short.
            raise GatewayError(
                400,
                f"'model' is longer than {MAX_MODEL_CHARS} characters",
                code="invalid_value",
                param="model",
            )
        if stream and operation is Operation.EMBEDDINGS:
            raise GatewayError(400, "embeddings cannot be streamed", param="stream")
        raw_meta = headers.get("x-portkey-metadata")
        if raw_meta is not None:
            try:
                meta = orjson.loads(raw_meta)
            except orjson.JSONDecodeError as exc:
                if _DECODER_DEPTH_ERROR in str(exc):
                    self._too_deep("x-portkey-metadata", "x-portkey-metadata")
                meta = None
            if not isinstance(meta, dict):
                raise GatewayError(
                    400,
                    "x-portkey-metadata must be a JSON object",
                    code="invalid_header",
                    param="x-portkey-metadata",
                )
            self._check_depth(raw_meta, meta, "x-portkey-metadata", "x-portkey-metadata")
            ctx.metadata = meta
        return GatewayRequest(
            operation=operation,
            body=parsed,
            raw_body=body,
            headers=headers,
            ctx=ctx,
            stream=stream,
        )

    def _check_depth(self, raw: bytes | str, value: Any, what: str, param: str | None) -> None:
        """Refuse ``value`` (decoded from ``raw``) nesting deeper than ``limits.max_json_depth``.

        The bound keeps recursive code downstream (merging ``override_params``, encoding the
        body again, condition evaluation) far from Python's and the encoder's limits.
        """
        limit = self._max_depth
        if may_be_too_deep(raw, limit) and too_deep(value, limit) is not None:
            self._too_deep(what, param)

    def _too_deep(self, what: str, param: str | None) -> NoReturn:
        raise GatewayError(
            400,
            f"{what} nests more than {self._max_depth} levels of objects and lists",
            code="nesting_too_deep",
            param=param,
        )

    def headers(
        self, response: GatewayResponse, ctx: RequestContext, story: str
    ) -> list[tuple[str, str]]:
        """The client-facing headers of ``response``: ``content-type``, passed-through
        upstream headers, the request and trace ids, the Portkey routing headers (the last
        target tried, on failures too) and ``x-relaygate-served-by`` (the target that served
        a 2xx answer)."""
        out: list[tuple[str, str]] = []
        own = response.target is None
        typed = False
        for name, value in response.headers.items():
            if name == "content-type":
                typed = True
                out.append((name, value))
            elif name.startswith(PASSTHROUGH_PREFIXES) or (own and name in GATEWAY_ANSWER_HEADERS):
                out.append((name, value))
        if not typed:
            out.append(("content-type", "application/json"))
        out.append(("x-request-id", ctx.request_id))
        out.append(("x-portkey-trace-id", ctx.trace_id))
        target = response.target
        if target is not None:
            out.append(("x-portkey-last-used-option-index", target.path))
            out.append(("x-portkey-provider", target.provider))
            retries = -1
            for a in ctx.attempts:
                if a.target is target:
                    retries += 1
            out.append(("x-portkey-retry-attempt-count", str(max(retries, 0))))
            if response.ok:
                # Only a successful answer was served; a failed one names its last target
                # in x-portkey-last-used-option-index alone (as Portkey does).
                out.append(("x-relaygate-served-by", target.path))
        if story:
            out.append(("x-relaygate-route", cap_story(story, self._max_route_header)))
        return out
