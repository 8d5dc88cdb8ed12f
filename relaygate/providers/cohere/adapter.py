"""The ``cohere`` provider row: Cohere's v2 API behind relaygate's OpenAI-shaped pipeline.

URLs (``custom_host`` replaces the base, version path included): ``{base}/chat`` (streamed
with ``"stream": true`` in the body) and ``{base}/embed``; base
``https://api.cohere.com/v2``. The key is sent as ``Authorization: Bearer``.
"""

from __future__ import annotations

from relaygate.providers.cohere.chat import PARAMETERS, chat_request, chat_response
from relaygate.providers.cohere.embed import embed_request, embed_response
from relaygate.providers.cohere.errors import error_answer
from relaygate.providers.cohere.stream import CohereStreamTranslator
from relaygate.providers.translated import VendorRow

BASE_URL = "https://api.cohere.com/v2"

COHERE = VendorRow(
    name="cohere",
    base_url=BASE_URL,
    auth_header="authorization",
    auth_prefix="Bearer ",
    chat_path=lambda model, stream: "/chat",
    embed_path=lambda model, body: "/embed",
    chat_request=chat_request,
    embed_request=embed_request,
    chat_response=chat_response,
    embed_response=embed_response,
    error=error_answer,
    parameters=PARAMETERS,
    stream=CohereStreamTranslator,
)
"""The ``cohere`` provider (v2 API)."""
