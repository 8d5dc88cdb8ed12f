"""The route story: a compact, ordered account of every upstream attempt of a request.

Sent as the ``x-relaygate-route`` response header and logged with each request. Attempts on
one target are grouped; groups are joined by ``>`` in the order tried. Each attempt is its
status code, or its failure reason when the gateway synthesized the answer::

    config.targets[0]:503,503,503>config.targets[1]:timeout>config.targets[2]:200
"""

from __future__ import annotations

from collections.abc import Sequence

from relaygate.exchange import AttemptRecord

_STATUS_REASONS = frozenset({"ok", "status_429", "status_4xx", "status_5xx"})


def attempt_token(record: AttemptRecord) -> str:
    """One attempt: its status, or the failure reason (``timeout``, ``connect_error``...)."""
    if record.reason in _STATUS_REASONS:
        return str(record.status)
    return record.reason


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
