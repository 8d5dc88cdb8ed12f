"""The route story: a compact, ordered account of every upstream attempt of a request.

Sent as the ``x-relaygate-route`` response header and logged with each request. Attempts on
one target are grouped; groups are joined by ``>`` in the order tried. Each attempt is its
status code, or its failure reason when the gateway synthesized the answer; a target
skipped because its circuit was open is ``open``::

    config.targets[0]:503,503,503>config.targets[1]:timeout>config.targets[2]:200

A stream that broke after reaching the client and was taken over by a later attempt shows
both: ``config.targets[0]:stream_error>config.targets[1]:200(recovered@412 chars)``
(``diverged@N chars`` when the later attempt's text differed).

A target skipped by its circuit breaker shows ``open``:
``config.targets[0]:open>config.targets[1]:200``.
"""

from __future__ import annotations

from collections.abc import Sequence

from relaygate.exchange import AttemptRecord

_STATUS_REASONS = frozenset({"ok", "status_429", "status_4xx", "status_5xx"})
_TOKENS = {"circuit_open": "open"}


def attempt_token(record: AttemptRecord) -> str:
    """One attempt: its status, or the failure reason (``timeout``, ``connect_error``...;
    ``open`` for a target skipped by its circuit breaker), followed by its note in
    parentheses when it has one (``200(recovered@412 chars)``)."""
    reason = record.reason
    token = str(record.status) if reason in _STATUS_REASONS else _TOKENS.get(reason, reason)
    return f"{token}({record.note})" if record.note else token


def route_story(attempts: Sequence[AttemptRecord]) -> str:
    """The story of ``attempts`` in the format of the module docstring."""
    groups: list[str] = []
    current: str | None = None
    tokens: list[str] = []
    for record in attempts:
        path = record.target.path
        if path != current:
            if current is not None:
                groups.append(f"{current}:{','.join(tokens)}")
            current, tokens = path, []
        tokens.append(attempt_token(record))
    if current is not None:
        groups.append(f"{current}:{','.join(tokens)}")
    return ">".join(groups)


ROUTE_SPAN_MAX_BYTES = 16 * 1024
"""Cap of the route story as the request span's ``relaygate.route`` attribute.

Larger than the response header's ``limits.max_route_header_bytes`` (a trace backend
takes more than a header should) but bounded, since a budget-limited request can still make
hundreds of attempts when the operator allows it; the request log line keeps the whole story.
"""


def _more(count: int) -> str:
    return f"...(+{count} more)"


def cap_story(story: str, max_bytes: int) -> str:
    """``story`` if it fits in ``max_bytes``, else cut after its last attempt that fits.

    The cut is at an attempt boundary and the rest is summarised as ``...(+N more)``, N being
    the attempts left out; the result fits in ``max_bytes`` (the marker alone when not even
    the first attempt fits). Stories are ASCII: paths are generated, tokens are statuses or
    reason names.
    """
    if len(story) <= max_bytes:
        return story
    boundaries = [i for i, char in enumerate(story) if char in ",>"]
    total = len(boundaries) + 1
    for kept, end in reversed(list(enumerate(boundaries, start=1))):
        marker = _more(total - kept)
        if end + len(marker) <= max_bytes:
            return story[:end] + marker
    return _more(total)
