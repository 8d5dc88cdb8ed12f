"""The edge side of a front door: what an API endpoint does differently when its clients
speak another vendor's API than the pipeline's OpenAI chat format.

An :class:`~relaygate.app.ApiEndpoint` given a :class:`FrontDoor` passes the request
headers through :meth:`FrontDoor.headers` before authenticating, the body through
:meth:`FrontDoor.request` before the pipeline (a :class:`~relaygate.errors.GatewayError`
there is refused like any bad input), and every answer, refusals included, through
:meth:`FrontDoor.answer`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from relaygate.edge import EdgeResponse
from relaygate.errors import GatewayError
from relaygate.exchange import Operation

if TYPE_CHECKING:  # the gateway assembles the pipeline, which imports the doors' modules
    from relaygate.gateway import Gateway


class FrontDoor(Protocol):
    """A vendor API served over the chat pipeline, at ``route`` (the request span's
    ``http.route``)."""

    route: str

    def headers(self, headers: dict[str, str]) -> dict[str, str]:
        """The request's (lower-case) headers as the pipeline reads them (the vendor's key
        header as the gateway key...)."""
        ...

    def request(self, body: bytes) -> tuple[dict[str, Any], bytes]:
        """The pipeline's request body for the vendor's, parsed and as bytes (the pipeline
        does not decode it again); raises a 400 :class:`~relaygate.errors.GatewayError` for
        an invalid one."""
        ...

    def answer(self, response: EdgeResponse) -> EdgeResponse:
        """The vendor's answer for the pipeline's (body, stream and errors translated)."""
        ...


def refuse_at(
    gateway: Gateway,
    door: FrontDoor | None,
    operation: Operation | None,
    headers: Mapping[str, str],
    error: GatewayError,
    **kw: Any,
) -> EdgeResponse:
    """``gateway``'s refusal of ``error``, in ``door``'s error shape and on its route when
    the request came through one (the served app and the in-process transport alike)."""
    if door is None:
        return gateway.refuse(operation, headers, error, **kw)
    return door.answer(gateway.refuse(operation, headers, error, route=door.route, **kw))
