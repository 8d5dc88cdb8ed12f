"""The outcome of a whole request, decided when its answer has been delivered, and whose it is.

A request's **outcome** is one bounded value, the same in the request span
(``relaygate.outcome``), the ``outcome`` label of ``relaygate_requests_total``, the
``request`` log line and the status board. It is decided when the answer is delivered: at
once for a complete body, when the stream ends for a streamed one, so a stream that breaks
or is abandoned after its ``200`` status line is not an ``ok`` request.

Every outcome belongs to one :class:`Account`, the rule availability is computed by:

- ``GOOD``: ``ok``, a complete answer (a 2xx body, or a 2xx stream that ended cleanly);
- ``CLIENT``: the client's doing, neither good nor bad, left out of availability: the
  gateway refused the request (``refused``: bad input, auth, scope, size), every target
  refused it (``status_4xx``), or the client went away (``client_disconnected``,
  ``cancelled``);
- ``BAD``: everything else, the gateway's or the upstreams' failure: a broken stream
  (``stream_error``), an exhausted request (its last attempt's reason: ``status_5xx``,
  ``status_429``, ``timeout``, ``connect_error``, ``invalid_response``, ``deadline``...),
  a request cut by the shutdown drain (``gateway_shutting_down``) and the gateway's own
  failure (``internal_error``). An outcome not listed in the first two is ``BAD``, so a new
  failure reason can never pass for availability by omission.
"""

from __future__ import annotations

from enum import Enum

from relaygate.strategies.reasons import classify

OK = "ok"
"""A complete answer."""

REFUSED = "refused"
"""The gateway refused the request itself (4xx before or without an upstream attempt)."""

INTERNAL_ERROR = "internal_error"
"""The gateway failed (a 5xx it made without an upstream answer)."""

CANCELLED = "cancelled"
"""The work was cancelled, or the stream closed early, without an edge naming why."""


class Account(Enum):
    """How an outcome counts for availability (see the module docstring)."""

    GOOD = "good"
    CLIENT = "client"
    BAD = "bad"


CLIENT_OUTCOMES: frozenset[str] = frozenset(
    {REFUSED, "status_4xx", "client_disconnected", CANCELLED}
)
"""Outcomes that are the client's doing: excluded from availability (neither good nor bad)."""


def account(outcome: str) -> Account:
    """How ``outcome`` counts for availability."""
    if outcome == OK:
        return Account.GOOD
    if outcome in CLIENT_OUTCOMES:
        return Account.CLIENT
    return Account.BAD


def request_outcome(
    status: int,
    *,
    from_upstream: bool,
    last_reason: str | None = None,
    failure: str | None = None,
    stream_failure: str | None = None,
    cut: str | None = None,
) -> str:
    """The outcome of a request answered with ``status``.

    ``from_upstream``: the answer came from an upstream attempt (or was synthesized for
    one: timeout, connect error...), whose route-story reason is ``last_reason``;
    ``failure``: the bounded reason of an answer the gateway synthesized; ``stream_failure``:
    why a delivered stream went wrong (``stream_error``); ``cut``: why the edge stopped
    serving it early (``client_disconnected``, ``gateway_shutting_down``, ``cancelled``),
    given only when that cut the answer short.

    A stream that had already failed keeps its failure when the client leaves afterwards;
    otherwise the cut wins over the status line.
    """
    if stream_failure:
        return stream_failure
    if cut:
        return cut
    if 200 <= status < 300:
        return OK
    if failure:
        return failure
    if from_upstream:
        return last_reason or classify(status).value
    return INTERNAL_ERROR if status >= 500 else REFUSED
