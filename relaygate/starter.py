"""``relaygate init``: a commented starter server config for the providers a user names.

The text is built from data (:data:`PROVIDER_EXTRAS`, :func:`key_variable`) and validated
through the same compile path as ``relaygate validate`` before anything is written.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

from relaygate.config import ConfigError
from relaygate.config.compile import compile_file, read_config_file

KEY_VARIABLE_OVERRIDES = {"x-ai": "XAI_API_KEY", "together-ai": "TOGETHER_API_KEY"}
"""Key variables whose conventional name is not derived from the provider name."""

PROVIDER_EXTRAS: dict[str, dict[str, str]] = {
    "azure-openai": {
        "resource_name": "${AZURE_OPENAI_RESOURCE}",
        "deployment_id": "${AZURE_OPENAI_DEPLOYMENT}",
        "api_version": "2024-10-21",
    },
    "custom": {"custom_host": "${CUSTOM_BASE_URL}"},
    "ollama": {"custom_host": "${OLLAMA_BASE_URL:-http://127.0.0.1:11434/v1}"},
    "bedrock": {"aws_region": "${AWS_REGION:-us-east-1}"},
}
"""Target settings a provider needs besides its key, as server-config values."""

KEYLESS = frozenset({"ollama", "custom", "bedrock"})
"""Providers whose targets usually need no key (``bedrock`` signs with the AWS credential
chain: environment, profile, role)."""

PLACEHOLDERS = {"CUSTOM_BASE_URL": "http://127.0.0.1:8000/v1"}
"""Values the referenced variables take while the starter is validated (any other: ``x``)."""


def key_variable(provider: str) -> str:
    """The environment variable conventionally holding ``provider``'s key
    (``openai`` → ``OPENAI_API_KEY``, ``mistral-ai`` → ``MISTRAL_API_KEY``)."""
    if provider in KEY_VARIABLE_OVERRIDES:
        return KEY_VARIABLE_OVERRIDES[provider]
    base = provider.removesuffix("-ai").upper().replace("-", "_")
    return f"{base}_API_KEY"


def variables(providers: Sequence[str]) -> list[str]:
    """The environment variables a starter for ``providers`` needs set (those with a
    ``:-default`` aside), in order."""
    names = [key_variable(p) for p in providers if p not in KEYLESS]
    for provider in providers:
        names += [
            value[2:-1]
            for value in PROVIDER_EXTRAS.get(provider, {}).values()
            if value.startswith("${") and ":-" not in value
        ]
    return [*dict.fromkeys(names), "RELAYGATE_API_KEY"]


def _target(index: int, provider: str) -> list[str]:
    name = "primary" if index == 0 else f"backup{index if index > 1 else ''}"
    lines = [f"      - name: {name}", f"        provider: {provider}"]
    extras = PROVIDER_EXTRAS.get(provider, {})
    lines += [f'        {key}: "{value}"' for key, value in extras.items()]
    lines.append("        # override_params: {model: ...}   # the model this target serves")
    return lines


def starter_text(providers: Sequence[str]) -> str:
    """The starter server config (YAML with comments) for ``providers``, tried in order."""
    mode = "fallback" if len(providers) > 1 else "single"
    lines = [
        "# relaygate server config, written by `relaygate init`.",
        "# Check it with `relaygate validate FILE`; serve it with `relaygate serve --config FILE`.",
        '# Every setting is documented in README.md ("The server config").',
        "listen: {host: 127.0.0.1, port: 8787}",
        "",
        "# Routing configs, picked per request with the header x-portkey-config: <id>;",
        "# default_config serves requests that name none.",
        "default_config: main",
        "configs:",
        "  main:",
        f"    strategy: {{mode: {mode}}}"
        + ("   # each target in order until one answers" if mode == "fallback" else ""),
        "    retry: {attempts: 2}             # retries per target on 429 and 5xx",
        "    targets:",
    ]
    for index, provider in enumerate(providers):
        lines += _target(index, provider)
    lines += ["", "# Provider keys stay in the environment; an unset variable is an error."]
    keyed = [p for p in dict.fromkeys(providers) if p not in KEYLESS]
    if keyed:
        lines.append("providers:")
        lines += [f'  {p}: {{api_key: "${{{key_variable(p)}}}"}}' for p in keyed]
    lines += [
        "",
        "# Gateway keys clients must present (Authorization: Bearer or x-portkey-api-key).",
        "# `relaygate keys create --name NAME` makes hashed, scoped keys instead.",
        'auth: {api_keys: ["${RELAYGATE_API_KEY}"]}',
        "",
        "telemetry:",
        "  service_name: relaygate",
        '  # traces: {exporter: otlp, endpoint: "http://127.0.0.1:4318"}   # OpenTelemetry',
        "  logs: {level: info, format: auto}   # json | console | auto (console on a terminal)",
        "",
    ]
    return "\n".join(lines)


def checked_starter(providers: Sequence[str], known: Collection[str]) -> str:
    """:func:`starter_text` for ``providers``, validated like ``relaygate validate`` with
    placeholder values for the variables it refers to.

    Raises :class:`ValueError` for an unknown or missing provider, :class:`ConfigError`
    should the text not compile.
    """
    if not providers:
        raise ValueError("name at least one provider")
    unknown = [p for p in providers if p not in known]
    if unknown:
        raise ValueError(f"unknown provider {unknown[0]!r}; known: {', '.join(sorted(known))}")
    text = starter_text(providers)
    env = {name: PLACEHOLDERS.get(name, "x") for name in variables(providers)}
    compile_file(read_config_file(Path("starter.yaml"), env=env, text=text), known)
    return text


__all__ = ["ConfigError", "checked_starter", "key_variable", "starter_text", "variables"]
