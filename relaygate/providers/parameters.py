"""OpenAI chat parameters a translated provider cannot honour: dropped with a warning, or
refused under strict OpenAI compliance. Policy as data, one mechanism.

Each translated provider (``anthropic``, ``google``, ``cohere``, ``bedrock``) declares a
:class:`ParameterTable`: the request fields its translation reads (``handled``) and the
OpenAI chat parameters it documents as unsupported (``unsupported``, the README's table).
Any field of a chat request outside ``handled`` (a documented one, or one the provider does
not know) is not sent. By default that is a ``provider_parameters_dropped`` warning, logged
once per request and provider, naming the parameters and never their values; under strict
compliance (:func:`strict_compliance`: the target's ``strict_open_ai_compliance``, else
Portkey's ``x-portkey-strict-open-ai-compliance: true`` request header) the request is
refused before anything is sent, 400 ``unsupported_parameter`` with ``param`` naming the
first such field (sorted), which fallback moves on from like any 400 that is not final.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from relaygate.config.model import Target
from relaygate.errors import GatewayError
from relaygate.exchange import GatewayRequest

log = structlog.get_logger("relaygate.providers")

STRICT_HEADER = "x-portkey-strict-open-ai-compliance"
"""Request header asking for strict OpenAI compliance (Portkey's name): ``true`` refuses a
parameter the target cannot honour with a 400 instead of dropping it."""

STRICT_OPTION = "strict_open_ai_compliance"
"""The target setting with the same meaning as :data:`STRICT_HEADER` (it wins over it)."""

READ_BY_ALL: frozenset[str] = frozenset(
    {"model", "messages", "stream", "stream_options", "stop", "tools", "tool_choice"}
)
"""Chat request fields every translation reads (``stream_options``: the usage chunk,
which relaygate writes itself)."""

NO_PENALTIES: frozenset[str] = frozenset(
    {"frequency_penalty", "presence_penalty", "logprobs", "seed", "response_format"}
)
"""Sampling and output controls the Messages and Converse APIs have no field for."""

COMMON_UNSUPPORTED: frozenset[str] = frozenset(
    {
        "logit_bias",
        "top_logprobs",
        "service_tier",
        "store",
        "metadata",
        "prediction",
        "modalities",
        "audio",
        "web_search_options",
        "functions",
        "function_call",
    }
)
"""OpenAI chat parameters no translated provider honours (OpenAI's own features: stored
completions, predicted outputs, audio, the deprecated ``functions``...)."""


@dataclass(frozen=True, slots=True)
class ParameterTable:
    """One provider's row: ``handled`` are the chat request fields its translation reads;
    ``unsupported`` the OpenAI chat parameters it documents as not honoured (disjoint from
    ``handled``; a field in neither is treated the same way)."""

    provider: str
    handled: frozenset[str]
    unsupported: frozenset[str]

    def unhonoured(self, body: Mapping[str, Any]) -> list[str]:
        """The fields of ``body`` (set, not ``null``) outside ``handled``, sorted."""
        handled = self.handled
        return sorted(k for k, v in body.items() if k not in handled and v is not None)

    def refusal(self, param: str) -> GatewayError:
        """The strict-mode 400 for ``param``."""
        return GatewayError(
            400,
            f"provider '{self.provider}' does not support the parameter '{param[:64]}', and "
            "strict OpenAI compliance is on",
            code="unsupported_parameter",
            param=param[:64],
        )

    def screen(self, body: Mapping[str, Any], *, strict: bool) -> list[str]:
        """The fields of ``body`` that will not be sent (:meth:`unhonoured`); under
        ``strict``, a :meth:`refusal` of the first instead."""
        names = self.unhonoured(body)
        if strict and names:
            raise self.refusal(names[0])
        return names


def strict_compliance(request: GatewayRequest, target: Target) -> bool:
    """Whether unsupported parameters are refused (400) rather than dropped: the target's
    ``strict_open_ai_compliance`` setting, else the :data:`STRICT_HEADER` request header."""
    option = target.provider_options.get(STRICT_OPTION)
    if isinstance(option, bool):
        return option
    return request.headers.get(STRICT_HEADER, "").strip().lower() == "true"


def check_parameters(
    table: ParameterTable, request: GatewayRequest, target: Target, body: Mapping[str, Any]
) -> None:
    """Apply ``table`` to the chat ``body`` sent to ``target``: a 400 under strict
    compliance, else :func:`warn_dropped` for what is not sent."""
    names = table.screen(body, strict=strict_compliance(request, target))
    warn_dropped(table.provider, request, target, names)


def warn_dropped(provider: str, request: GatewayRequest, target: Target, names: list[str]) -> None:
    """The warning naming the parameters ``names`` not sent to ``provider`` (never their
    values), once per request and provider: a retry, or a second target of the same
    provider, does not repeat it."""
    if not names or any(done.target.provider == provider for done in request.ctx.attempts):
        return
    log.warning(
        "provider_parameters_dropped",
        provider=provider,
        target=target.path,
        parameters=",".join(name[:64] for name in names)[:256],
    )
