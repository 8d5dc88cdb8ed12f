"""Continuing a broken stream with an assistant prefill, for targets that accept one.

A target declared with ``supports_prefill: true`` is asked, while a broken stream is being
recovered, to continue the text the client already has: the client's request plus that text
as a last, partial ``assistant`` message. Its answer then carries only what follows
(``GatewayResponse.continues``), with no text to repeat. A target that refuses the prefill
(any 4xx) is asked again at once with the client's original request, a clean restart whose
answer must repeat the delivered text like any other; the refusal is never the final answer.

A prefill is offered only for a chat answer of one choice whose delivered text is plain
content (no tool calls, reasoning or refusal), the shape every prefill-capable API takes.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import orjson

from relaygate.exchange import GatewayRequest, GatewayResponse, Operation
from relaygate.pipeline import Handler
from relaygate.recovery.prefix import NO_TOOL, Delivered

CONTENT = (0, "content", NO_TOOL)


def prefill_text(delivered: Delivered) -> str | None:
    """The delivered text to offer as a prefill, or ``None`` when its shape does not allow
    one (several choices, tool calls, other text fields, nothing delivered)."""
    if delivered.choices - {0} or delivered.tools or set(delivered.text) - {CONTENT}:
        return None
    return delivered.text.get(CONTENT) or None


def with_prefill(request: GatewayRequest, text: str) -> GatewayRequest | None:
    """``request`` with ``text`` appended as a partial assistant message (``None`` for an
    operation or body that cannot take one)."""
    messages = request.body.get("messages")
    if request.operation is not Operation.CHAT or not isinstance(messages, list):
        return None
    body: dict[str, Any] = {
        **request.body,
        "messages": [*messages, {"role": "assistant", "content": text}],
    }
    return request.derive(body=body, raw_body=orjson.dumps(body), prefill=None)


def attempt(inner: Handler, request: GatewayRequest) -> Awaitable[GatewayResponse]:
    """One attempt of ``request`` through ``inner``: as it is, unless it carries a prefill for
    a target that supports one (then see the module docstring)."""
    target = request.target
    if request.prefill is None or target is None or not target.supports_prefill:
        return inner(request)
    return _prefilled(inner, request, request.prefill)


async def _prefilled(inner: Handler, request: GatewayRequest, text: str) -> GatewayResponse:
    asked = with_prefill(request, text)
    if asked is None:
        return await inner(request)
    answer = await inner(asked)
    if 400 <= answer.status < 500:
        # Refused: a clean restart on the same target, never the refusal as the answer.
        await answer.aclose()
        request.ctx.attempts_started += 1
        return await inner(request.derive(prefill=None))
    answer.continues = answer.ok and answer.stream is not None
    return answer
