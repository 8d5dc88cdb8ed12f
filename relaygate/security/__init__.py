"""Security policy: where caller-supplied URLs may point, whose keys go where, and gateway keys.

Each module holds one rule as data plus the pure function applying it:
:mod:`~relaygate.security.egress` (allowed destinations for caller-supplied base URLs),
:mod:`~relaygate.security.custody` (an operator's key never goes to a caller's host),
:mod:`~relaygate.security.forwarding` (which client headers a config may forward) and
:mod:`~relaygate.security.keys` (hashed, scoped gateway keys).
"""
