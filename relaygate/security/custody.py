"""Key custody: an operator's provider key only goes where the operator said it may.

A compiled :class:`~relaygate.config.model.Target` records which of its settings a caller
chose (``Target.caller_fields``). A key from the server config (``providers.*.api_key``, a
named config, ``${ENV}``) may be sent only to a destination the operator chose too: the
provider's built-in URL, ``providers.*.custom_host``, or a named config's ``custom_host``.
A destination a caller chose may be used only with the caller's own key. This rule has no
switch.
"""

from __future__ import annotations

from typing import Final

from relaygate.config.model import Target

DESTINATION_FIELDS: Final = frozenset({"custom_host", "resource_name"})
"""Target settings that decide which host a request goes to."""


def caller_destination(target: Target) -> bool:
    """Whether a caller chose where ``target``'s requests go."""
    return not DESTINATION_FIELDS.isdisjoint(target.caller_fields)


def operator_key(target: Target) -> bool:
    """Whether ``target`` carries a key the operator configured (not one a caller sent)."""
    return target.api_key is not None and "api_key" not in target.caller_fields


def custody_issue(target: Target) -> str | None:
    """Why ``target`` may not be called, or ``None``: the operator's key to a caller's host."""
    if operator_key(target) and caller_destination(target):
        return (
            f"{target.path} would send the operator's '{target.provider}' key to a "
            "caller-supplied host; a caller-supplied custom_host (or resource_name) must come "
            "with the caller's own api_key"
        )
    return None
