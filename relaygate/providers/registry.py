"""Provider lookup by name: a dict, never a chain of comparisons.

Adding a provider is adding a row to :data:`relaygate.providers.openai_compat.OPENAI_COMPATIBLE`
or registering an adapter object here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from relaygate.errors import GatewayError
from relaygate.providers.anthropic import Anthropic
from relaygate.providers.azure import AzureOpenAI
from relaygate.providers.base import ProviderAdapter
from relaygate.providers.bedrock import Bedrock
from relaygate.providers.cohere.adapter import COHERE
from relaygate.providers.google.adapter import GOOGLE
from relaygate.providers.openai_compat import OPENAI_COMPATIBLE
from relaygate.providers.translated import TranslatedAdapter

TRANSLATED = (GOOGLE, COHERE)
"""Providers reached through a translator (:mod:`relaygate.providers.translated`)."""


class ProviderRegistry:
    """Maps provider names (Portkey's spelling) to adapters."""

    def __init__(self, adapters: Iterable[ProviderAdapter] = ()) -> None:
        self._adapters: dict[str, ProviderAdapter] = {}
        for adapter in adapters:
            self.register(adapter)

    def register(self, adapter: ProviderAdapter) -> None:
        """Add or replace the adapter for ``adapter.name``."""
        self._adapters[adapter.name] = adapter

    def get(self, name: str) -> ProviderAdapter:
        """The adapter for ``name``; a 400 :class:`GatewayError` naming the known ones if none."""
        adapter = self._adapters.get(name)
        if adapter is None:
            raise GatewayError(
                400,
                f"unknown provider '{name[:64]}'; known: {', '.join(sorted(self._adapters))}",
                code="unknown_provider",
                param="provider",
            )
        return adapter

    def __contains__(self, name: object) -> bool:
        return name in self._adapters

    @property
    def names(self) -> Mapping[str, ProviderAdapter]:
        """All registered adapters by name."""
        return dict(self._adapters)


def default_registry() -> ProviderRegistry:
    """A registry of every built-in provider."""
    adapters: list[ProviderAdapter] = [*OPENAI_COMPATIBLE, AzureOpenAI(), Anthropic(), Bedrock()]
    adapters += [TranslatedAdapter(row) for row in TRANSLATED]
    return ProviderRegistry(adapters)
