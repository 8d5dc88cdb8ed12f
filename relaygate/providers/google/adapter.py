"""The ``google`` provider row: Gemini's own API behind relaygate's OpenAI-shaped pipeline.

URLs (``custom_host`` replaces the base, version path included):
``{base}/models/{model}:generateContent``, ``:streamGenerateContent?alt=sse``,
``:embedContent`` (one input), ``:batchEmbedContents`` (a list); base
``https://generativelanguage.googleapis.com/v1beta``. The key is sent as ``x-goog-api-key``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from relaygate.providers.google.chat import PARAMETERS, chat_request, chat_response
from relaygate.providers.google.embed import embed_request, embed_response, is_batch
from relaygate.providers.google.errors import error_answer
from relaygate.providers.google.stream import GeminiStreamTranslator
from relaygate.providers.translated import VendorRow

BASE_URL = "https://generativelanguage.googleapis.com/v1beta"


def _model_path(model: str) -> str:
    return "/models/" + quote(model, safe="-._~")


def chat_path(model: str, stream: bool) -> str:
    """``/models/{model}:generateContent``, or the SSE stream method."""
    action = ":streamGenerateContent?alt=sse" if stream else ":generateContent"
    return _model_path(model) + action


def embed_path(model: str, body: Mapping[str, Any]) -> str:
    """``/models/{model}:embedContent`` for one input, ``:batchEmbedContents`` for a list."""
    return _model_path(model) + (":batchEmbedContents" if is_batch(body) else ":embedContent")


GOOGLE = VendorRow(
    name="google",
    base_url=BASE_URL,
    auth_header="x-goog-api-key",
    auth_prefix="",
    chat_path=chat_path,
    embed_path=embed_path,
    chat_request=lambda body, model: chat_request(body),
    embed_request=embed_request,
    chat_response=chat_response,
    embed_response=embed_response,
    error=error_answer,
    parameters=PARAMETERS,
    stream=GeminiStreamTranslator,
)
"""The ``google`` provider (Gemini API)."""
