"""Handlers, layers and the one place the stack is composed.

A :data:`Handler` answers a :class:`~relaygate.exchange.GatewayRequest`. A :data:`Layer`
wraps a handler and returns a new one. :func:`build` folds a list of layers around an
innermost handler, the first listed becoming the outermost, so the list reads in the order
a request travels:
``auth → config resolve → fallback → retry → circuit → log → timeout → provider``.
No layer knows its neighbours.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from relaygate.exchange import GatewayRequest, GatewayResponse

Handler = Callable[[GatewayRequest], Awaitable[GatewayResponse]]
"""``async (request) -> response``: the shape of every stage of the pipeline."""

Layer = Callable[[Handler], Handler]
"""Wraps an inner handler and returns the handler that calls it."""


def build(layers: Sequence[Layer], inner: Handler) -> Handler:
    """Compose ``layers`` around ``inner``; ``layers[0]`` is outermost.

    Built once per gateway, never per request.
    """
    handler = inner
    for layer in reversed(layers):
        handler = layer(handler)
    return handler
