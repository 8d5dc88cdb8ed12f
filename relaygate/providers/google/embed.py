"""OpenAI embeddings ⇄ Gemini ``embedContent`` / ``batchEmbedContents``: pure functions.

https://ai.google.dev/api/embeddings: one string is sent to ``embedContent``
(``{"content": {"parts": [{"text"}]}}`` → ``{"embedding": {"values"}}``), a list of
strings to ``batchEmbedContents`` (``{"requests": [{"model", "content"}]}`` →
``{"embeddings": [{"values"}]}``); ``dimensions`` → ``outputDimensionality``. Token-id
inputs are refused (Gemini embeds text). Gemini reports no token usage for embeddings, so
``usage`` is zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relaygate.providers.chatshape import unsupported

PROVIDER = "google"


def inputs_of(body: Mapping[str, Any]) -> list[str]:
    """The texts to embed; a 400 for token ids or another shape."""
    raw = body.get("input")
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(item, str) for item in raw):
        return list(raw)
    raise unsupported(PROVIDER, "input", "embeds text only: 'input' must be a string or strings")


def is_batch(body: Mapping[str, Any]) -> bool:
    """Whether the request goes to ``batchEmbedContents`` (a list input)."""
    return isinstance(body.get("input"), list)


def embed_request(body: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The ``embedContent`` or ``batchEmbedContents`` body for an OpenAI embeddings body."""
    texts = inputs_of(body)
    dimensions = body.get("dimensions")

    def one(text: str) -> dict[str, Any]:
        item: dict[str, Any] = {"content": {"parts": [{"text": text}]}}
        if isinstance(dimensions, int) and not isinstance(dimensions, bool):
            item["outputDimensionality"] = dimensions
        return item

    if not is_batch(body):
        return one(texts[0])
    return {"requests": [{"model": f"models/{model}", **one(text)} for text in texts]}


def embed_response(payload: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The OpenAI embeddings answer for either Gemini answer; ``ValueError`` if neither."""
    single = payload.get("embedding")
    found = [single] if isinstance(single, dict) else payload.get("embeddings")
    if not isinstance(found, list):
        raise ValueError("gemini answered no embeddings")
    data: list[dict[str, Any]] = []
    for index, item in enumerate(found):
        values = item.get("values") if isinstance(item, dict) else None
        if not isinstance(values, list):
            raise ValueError("gemini answered an embedding without values")
        data.append({"object": "embedding", "index": index, "embedding": values})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }
