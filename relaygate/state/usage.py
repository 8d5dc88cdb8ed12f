"""Reading an answer's token usage once it is known (a stream's when it ends)."""

from __future__ import annotations

from collections.abc import Callable

from relaygate.exchange import GatewayRequest, GatewayResponse, ResponseStream
from relaygate.sse import string_field, usage_of

__all__ = ["on_usage"]

UsageCallback = Callable[[tuple[int, int] | None, str | None], None]
"""Called with ``(input, output)`` tokens (``None``: the answer reported none) and the
model the tokens are priced as."""


def on_usage(request: GatewayRequest, response: GatewayResponse, callback: UsageCallback) -> None:
    """Call ``callback`` with the usage of ``response`` now (a body) or when its stream
    ends. The model is the one the target was asked for (pinned, else requested), else the
    one the answer names."""
    target = response.target
    asked = (target.model if target is not None else None) or request.model
    stream = response.stream
    if stream is None:
        payload = response.payload
        callback(usage_of(payload), asked or string_field(payload, "model"))
        return

    def ended(stream: ResponseStream) -> None:
        callback(stream.usage, asked or stream.model)

    stream.on_end(ended)
