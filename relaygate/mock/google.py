"""Gemini's wire format in the mock upstream: ``POST /v1beta/models/{model}:{method}``.

Methods: ``generateContent``, ``streamGenerateContent`` (``?alt=sse``: ``data:`` events of
whole ``GenerateContentResponse`` objects, ``\\r\\n``-separated as Google sends them, no end
marker), ``embedContent``, ``batchEmbedContents``. Errors are ``google.rpc.Status`` bodies
(``{"error": {"code", "message", "status"}}``). A request offering ``functionDeclarations``
whose last turn is not a function response is answered with a call of the first declared
function (``args: {"query": <mock name>}``). Two refusals answered as a 2xx, chosen with a
fault's ``error_code``: ``prompt_blocked`` (``promptFeedback.blockReason: SAFETY``, no
candidates) and ``finish_safety`` (a candidate with ``finishReason: SAFETY`` and no
content). Shapes follow https://ai.google.dev/api/generate-content and
https://ai.google.dev/api/embeddings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from relaygate.mock.openai import _EMBEDDING_DIMENSIONS, _embedding_vector, _prompt_tokens
from relaygate.mock.wire import Exchange, Frames, words

STATUS_NAMES: Mapping[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
"""``google.rpc.Code`` names by HTTP status, as the Gemini API pairs them."""

KINDS: Mapping[str, str] = {
    "generateContent": "chat",
    "streamGenerateContent": "chat",
    "embedContent": "embed",
    "batchEmbedContents": "batch",
}
"""The mock's kind of request for each Gemini method."""

SAFETY_RATING = {
    "category": "HARM_CATEGORY_DANGEROUS_CONTENT",
    "probability": "HIGH",
    "blocked": True,
}


def _texts(contents: Any) -> list[str]:
    texts: list[str] = []
    for content in contents if isinstance(contents, list) else ():
        for part in content.get("parts", ()) if isinstance(content, dict) else ():
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
    return texts


def _wants_call(body: dict[str, Any]) -> str | None:
    """The function to call: the first declared, unless the last turn answers a call."""
    contents = body.get("contents") or []
    last = contents[-1].get("parts", []) if contents and isinstance(contents[-1], dict) else []
    if any(isinstance(p, dict) and "functionResponse" in p for p in last):
        return None
    for tool in body.get("tools") or ():
        for declaration in tool.get("functionDeclarations") or () if isinstance(tool, dict) else ():
            if isinstance(declaration, dict) and isinstance(declaration.get("name"), str):
                return str(declaration["name"])
    return None


class GeminiWire:
    """:class:`~relaygate.mock.wire.Wire` for Gemini."""

    def validate(self, kind: str, body: dict[str, Any]) -> tuple[str, str] | None:
        """See :class:`~relaygate.mock.wire.Wire`."""
        if kind == "chat":
            contents = body.get("contents")
            if not isinstance(contents, list) or not all(isinstance(c, dict) for c in contents):
                return ("contents", "'contents' must be a list of Content objects")
        elif kind == "embed":
            if not _texts([body.get("content")]):
                return ("content", "'content' must hold text parts")
        elif kind == "batch":
            requests = body.get("requests")
            if not isinstance(requests, list) or not requests:
                return ("requests", "'requests' must be a non-empty list")
        return None

    def error(self, status: int, message: str, code: str | None) -> dict[str, Any]:
        """See :class:`~relaygate.mock.wire.Wire`."""
        name = STATUS_NAMES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        return {"error": {"code": status, "message": message, "status": name}}

    def prompt_of(self, kind: str, body: dict[str, Any]) -> Any:
        """See :class:`~relaygate.mock.wire.Wire`."""
        return body.get("contents")

    def streamed(self, kind: str, exchange: Exchange) -> bool:
        """See :class:`~relaygate.mock.wire.Wire`."""
        return exchange.action == "streamGenerateContent"

    def _usage(self, exchange: Exchange, output: str) -> dict[str, int]:
        prompt = _prompt_tokens(sum(len(t) for t in _texts(exchange.body.get("contents"))))
        out = words(output)
        return {
            "promptTokenCount": prompt,
            "candidatesTokenCount": out,
            "totalTokenCount": prompt + out,
        }

    def _head(self, exchange: Exchange) -> dict[str, Any]:
        return {"modelVersion": exchange.model, "responseId": f"mock{exchange.sequence:06d}"}

    def answer(self, kind: str, exchange: Exchange) -> dict[str, Any]:
        """See :class:`~relaygate.mock.wire.Wire`."""
        if kind != "chat":
            return self._embeddings(kind, exchange)
        refusal = exchange.fault.error_code
        if refusal == "prompt_blocked":
            return self._blocked(exchange)
        if refusal == "finish_safety":
            candidate = {"index": 0, "finishReason": "SAFETY", "safetyRatings": [SAFETY_RATING]}
            return {
                "candidates": [candidate],
                "usageMetadata": self._usage(exchange, ""),
                **self._head(exchange),
            }
        call = _wants_call(exchange.body)
        if call is not None:
            part = {"functionCall": {"name": call, "args": {"query": exchange.name}}}
            candidate = {
                "content": {"role": "model", "parts": [part]},
                "finishReason": "STOP",
                "index": 0,
            }
            return {
                "candidates": [candidate],
                "usageMetadata": self._usage(exchange, "call"),
                **self._head(exchange),
            }
        parts = [{"text": exchange.text}]
        candidate = {
            "content": {"role": "model", "parts": parts},
            "finishReason": "STOP",
            "index": 0,
        }
        return {
            "candidates": [candidate],
            "usageMetadata": self._usage(exchange, exchange.text),
            **self._head(exchange),
        }

    def _blocked(self, exchange: Exchange) -> dict[str, Any]:
        usage = self._usage(exchange, "")
        del usage["candidatesTokenCount"]
        return {
            "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [SAFETY_RATING]},
            "usageMetadata": usage,
            **self._head(exchange),
        }

    def stream(self, kind: str, exchange: Exchange, pieces: list[str]) -> Frames:
        """See :class:`~relaygate.mock.wire.Wire`."""
        whole = self.answer(kind, exchange)
        candidates = whole.get("candidates")
        if not candidates or "content" not in candidates[0] or "functionCall" in str(candidates[0]):
            return Frames([_event(whole)])
        events: list[bytes] = []
        for position, piece in enumerate(pieces):
            last = position == len(pieces) - 1
            candidate: dict[str, Any] = {
                "content": {"role": "model", "parts": [{"text": piece}]},
                "index": 0,
            }
            event: dict[str, Any] = {"candidates": [candidate], **self._head(exchange)}
            if last:
                candidate["finishReason"] = "STOP"
                event["usageMetadata"] = whole["usageMetadata"]
            events.append(_event(event))
        return Frames(events)

    def _embeddings(self, kind: str, exchange: Exchange) -> dict[str, Any]:
        body = exchange.body
        items = [body] if kind == "embed" else list(body.get("requests") or ())
        vectors = []
        for item in items:
            text = "".join(_texts([item.get("content")]))
            size = item.get("outputDimensionality", _EMBEDDING_DIMENSIONS)
            size = size if isinstance(size, int) and 0 < size <= 4096 else _EMBEDDING_DIMENSIONS
            vectors.append({"values": _embedding_vector(text.encode(), size)})
        return {"embedding": vectors[0]} if kind == "embed" else {"embeddings": vectors}


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\r\n\r\n"
