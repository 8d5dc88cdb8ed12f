"""When a fallback node gives up on one child and moves on to the next."""

from __future__ import annotations

from relaygate.strategies.reasons import Reason


def should_fall_back(
    status: int,
    failure: Reason | None,
    on_status_codes: frozenset[int] | None,
    final: bool = False,
) -> bool:
    """Whether a child's final outcome makes a fallback node try its next child.

    With ``on_status_codes`` ``None`` (the default), any non-2xx status or any transport
    ``failure`` moves on. With a set, only a ``status`` in it does: the transport reports
    its failures with a synthetic status (timeout → 408; connect error, invalid upstream
    response and stream error before the first byte → 502), so matching is by status alone
    and ``failure`` is ignored. A child skipped because its circuit is open
    (``circuit_open``) always moves on: nothing was tried.

    A ``final`` answer (:func:`~relaygate.strategies.finality.final_code` found a code)
    never falls back, whatever the codes say.
    """
    if failure is Reason.CIRCUIT_OPEN:
        return True
    if final:
        return False
    if on_status_codes is None:
        return (failure is not None and failure is not Reason.OK) or not 200 <= status < 300
    return status in on_status_codes
