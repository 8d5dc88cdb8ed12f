"""The current span: read and made current in as few steps as the API allows.

OpenTelemetry keeps the current :class:`~opentelemetry.context.Context` in one
``ContextVar`` of its runtime context (by default a ``ContextVarsRuntimeContext``); the API
reaches it through several layers of calls each time (``get_current_span``, ``get_value``,
``get_current``, the runtime context's ``get_current``). relaygate reads and sets that same
``ContextVar`` itself when the runtime context is exactly that default class: the same
context objects and the same tokens, so host code that uses the API sees exactly what it
would have. With any other runtime context (``OTEL_PYTHON_CONTEXT``), every function here is
the API's own.
"""

from __future__ import annotations

from contextvars import ContextVar, Token

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.trace.propagation import _SPAN_KEY

SPAN_KEY = _SPAN_KEY
"""The context key of the current span (the API's own)."""

_runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
_found = getattr(_runtime, "_current_context", None)
CONTEXT_VAR: ContextVar[Context] | None = (
    _found
    if type(_runtime) is ContextVarsRuntimeContext and isinstance(_found, ContextVar)
    else None
)
"""The ``ContextVar`` holding the current context, ``None`` under another runtime context
(or an OpenTelemetry release that keeps it elsewhere: the API's calls are used then)."""
_var = CONTEXT_VAR


def attach_span(span: trace.Span) -> Token[Context]:
    """Make ``span`` current: ``attach(set_span_in_context(span))``; the token for
    :func:`detach`."""
    if _var is None:
        return otel_context.attach(trace.set_span_in_context(span))
    values = _var.get().copy()
    values[_SPAN_KEY] = span
    return _var.set(Context(values))


def detach(token: Token[Context]) -> None:
    """Restore the context ``token`` replaced (``opentelemetry.context.detach``: a failure
    is logged by the API, never raised)."""
    if _var is None:
        otel_context.detach(token)
        return
    try:
        _var.reset(token)
    except Exception:  # the API's own handling: logged there, never raised
        otel_context.detach(token)
