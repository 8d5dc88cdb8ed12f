"""OpenAI wire shapes the mock upstream answers with: error bodies, token counts, embedding
vectors, and completion and stream-chunk payloads.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

import orjson
from starlette.responses import Response

_EMBEDDING_DIMENSIONS = 8
_MAX_EMBEDDING_DIMENSIONS = 4096


_ERROR_KINDS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "bad_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("not_found_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    408: ("timeout_error", "request_timeout"),
    409: ("conflict_error", "conflict"),
    413: ("invalid_request_error", "request_too_large"),
    422: ("invalid_request_error", "unprocessable_entity"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", "internal_error"),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "gateway_timeout"),
    529: ("overloaded_error", "overloaded"),
}


def _error_kind(status: int) -> tuple[str, str]:
    known = _ERROR_KINDS.get(status)
    if known is not None:
        return known
    return ("server_error" if status >= 500 else "invalid_request_error", f"http_{status}")


def _format_seconds(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _json_response(data: object, status: int, headers: dict[str, str]) -> Response:
    return Response(
        orjson.dumps(data), status_code=status, media_type="application/json", headers=headers
    )


def _error_response(
    status: int,
    message: str,
    headers: dict[str, str],
    *,
    param: str | None = None,
    code: str | None = None,
) -> Response:
    error_type, default_code = _error_kind(status)
    body = {
        "error": {
            "message": message,
            "type": error_type,
            "param": param,
            "code": code or default_code,
        }
    }
    return _json_response(body, status, headers)


def _text_length(content: object) -> int:
    """Characters of text in a message ``content`` (a string or a list of parts)."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, str):
                total += len(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                total += len(part["text"])
        return total
    return 0


def _prompt_tokens(characters: int) -> int:
    return characters // 4 + 1


def _split_text(text: str, pieces: int) -> list[str]:
    """Split ``text`` into ``pieces`` consecutive parts that join back to ``text``."""
    size = len(text)
    return [text[i * size // pieces : (i + 1) * size // pieces] for i in range(pieces)]


def _embedding_vector(key: bytes, dimensions: int) -> list[float]:
    """A deterministic vector in [-1, 1) whose values are exact float32 numbers."""
    values: list[float] = []
    block = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(block.to_bytes(4, "little") + key).digest()
        values.extend(k / 32768.0 for k in struct.unpack("<16h", digest))
        block += 1
    return values[:dimensions]


def _is_token_list(value: object) -> TypeGuard[list[int]]:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
    )


def _embedding_inputs(raw: object) -> list[tuple[bytes, str | None, int]] | None:
    """Normalise an embeddings ``input`` into ``(hash key, text, token ids)`` triples.

    Accepts a string, a list of strings, a list of token ids or a list of token
    id lists (``text`` is ``None`` for token ids); returns ``None`` otherwise.
    """
    if isinstance(raw, str):
        return [(raw.encode(), raw, 0)]
    if _is_token_list(raw):
        return [(orjson.dumps(raw), None, len(raw))]
    if not isinstance(raw, list) or not raw:
        return None
    items: list[tuple[bytes, str | None, int]] = []
    for entry in raw:
        if isinstance(entry, str):
            items.append((entry.encode(), entry, 0))
        elif _is_token_list(entry):
            items.append((orjson.dumps(entry), None, len(entry)))
        else:
            return None
    return items


def _embedding_tokens(inputs: list[tuple[bytes, str | None, int]]) -> int:
    """Total characters of text inputs // 4 + 1, plus the count of token-id inputs."""
    texts = [text for _, text, _ in inputs if text is not None]
    text_tokens = _prompt_tokens(sum(len(text) for text in texts)) if texts else 0
    return text_tokens + sum(count for _, _, count in inputs)


@dataclass(frozen=True)
class StreamShape:
    """How one streamed endpoint frames its chunks: the ``object`` of every chunk, the
    choices sent before the text (``opening``), the choice carrying a piece of text
    (``piece``) and the closing choice (``closing``, sent with ``finish_reason: stop``).
    Each returns fresh dicts; ``logprobs`` and ``finish_reason`` are added to every choice.
    """

    object: str
    opening: Callable[[], list[dict[str, Any]]]
    piece: Callable[[str], dict[str, Any]]
    closing: Callable[[], dict[str, Any]]


STREAM_SHAPES: Mapping[str, StreamShape] = {
    "chat": StreamShape(
        object="chat.completion.chunk",
        opening=lambda: [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
        piece=lambda text: {"index": 0, "delta": {"content": text}},
        closing=lambda: {"index": 0, "delta": {}},
    ),
    "completions": StreamShape(
        object="text_completion",
        opening=list,
        piece=lambda text: {"text": text, "index": 0},
        closing=lambda: {"text": "", "index": 0},
    ),
}
"""The stream framing of each streamed endpoint kind."""


def stream_chunks(
    shape: StreamShape,
    *,
    completion_id: str,
    created: int,
    model: str,
    pieces: Iterable[str],
    usage: dict[str, int],
    include_usage: bool,
) -> list[dict[str, Any]]:
    """The data events of a streamed answer made of ``pieces``, framed by ``shape``.

    With ``include_usage`` (``stream_options.include_usage``) every chunk carries
    ``usage: null`` and a last chunk with no choices carries ``usage``, as OpenAI sends.
    """

    def chunk(choice: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": completion_id,
            "object": shape.object,
            "created": created,
            "model": model,
            "choices": [{**choice, "logprobs": None, "finish_reason": finish_reason}],
        }
        if include_usage:
            out["usage"] = None
        return out

    chunks = [chunk(choice, None) for choice in shape.opening()]
    chunks.extend(chunk(shape.piece(text), None) for text in pieces)
    chunks.append(chunk(shape.closing(), "stop"))
    if include_usage:
        chunks.append(
            {
                "id": completion_id,
                "object": shape.object,
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage,
            }
        )
    return chunks


_WORDS: tuple[str, ...] = (
    "the", "gateway", "answers", "every", "request", "with", "a", "steady", "stream", "of",
    "words", "that", "any", "upstream", "would", "repeat", "given", "same", "prompt", "so",
    "recovered", "answer", "reads", "exactly", "like", "one", "never", "broken", "river",
    "stone", "light", "quiet", "morning", "signal", "bridge", "harbor", "lantern", "orchard",
    "meadow", "copper", "silver", "window", "garden", "thunder", "compass", "anchor", "maple",
    "valley", "summit", "canyon", "glacier", "ember", "falcon", "willow", "cedar", "prairie",
    "beacon", "island", "marble", "velvet", "amber", "cobalt", "delta", "echo",
)  # fmt: skip
"""The vocabulary of :func:`request_text`: 64 words, so each is picked by 6 bits."""


def request_text(prompt: object, words: int) -> str:
    """``words`` words that depend only on ``prompt`` (a request's ``messages`` or ``prompt``).

    The words are picked by the SHA-256 of the prompt's canonical JSON (sorted keys), so
    any simulator answers the same prompt with the same text, whatever its name or the
    request's model. The first word is capitalised and the text ends with a full stop.
    """
    key = orjson.dumps(prompt, option=orjson.OPT_SORT_KEYS)
    picked: list[str] = []
    block = 0
    while len(picked) < words:
        digest = hashlib.sha256(block.to_bytes(4, "little") + key).digest()
        picked.extend(_WORDS[byte % len(_WORDS)] for byte in digest)
        block += 1
    text = " ".join(picked[:words])
    return text[:1].upper() + text[1:] + "."
