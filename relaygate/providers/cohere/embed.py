"""OpenAI embeddings ⇄ Cohere v2 ``/embed``: pure functions.

https://docs.cohere.com/reference/embed: ``{"model", "texts", "input_type",
"embedding_types": ["float"], "output_dimension"}`` → ``{"id", "embeddings": {"float":
[[...]]}, "meta": {"billed_units": {"input_tokens"}}}``. ``input_type`` (required by
Cohere's v3+ models) is ``search_document`` unless the request (or ``override_params``)
names another. Token-id inputs are refused (Cohere embeds text).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relaygate.providers.chatshape import unsupported

PROVIDER = "cohere"

DEFAULT_INPUT_TYPE = "search_document"


def embed_request(body: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The v2 ``/embed`` body for an OpenAI embeddings ``body``."""
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise unsupported(
            PROVIDER, "input", "embeds text only: 'input' must be a string or strings"
        )
    input_type = body.get("input_type")
    out: dict[str, Any] = {
        "model": model,
        "texts": texts,
        "input_type": input_type if isinstance(input_type, str) else DEFAULT_INPUT_TYPE,
        "embedding_types": ["float"],
    }
    dimensions = body.get("dimensions")
    if isinstance(dimensions, int) and not isinstance(dimensions, bool):
        out["output_dimension"] = dimensions
    return out


def embed_response(payload: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The OpenAI embeddings answer for a v2 ``/embed`` answer; ``ValueError`` if it holds
    no float embeddings."""
    embeddings = payload.get("embeddings")
    vectors = embeddings.get("float") if isinstance(embeddings, dict) else None
    if not isinstance(vectors, list) or not all(isinstance(v, list) for v in vectors):
        raise ValueError("cohere answered no float embeddings")
    billed = (
        payload.get("meta", {}).get("billed_units")
        if isinstance(payload.get("meta"), dict)
        else None
    )
    tokens = billed.get("input_tokens") if isinstance(billed, dict) else None
    count = int(tokens) if isinstance(tokens, int | float) and not isinstance(tokens, bool) else 0
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": vector}
            for i, vector in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": count, "total_tokens": count},
    }
