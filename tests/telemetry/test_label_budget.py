"""Label values a caller chooses are admitted only within a budget; the server config's are not.

The app runs in-process through ``httpx.ASGITransport`` with a fresh ``CollectorRegistry`` and
an ``httpx.MockTransport`` upstream; what is asserted is what a scrape of ``/metrics`` shows.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from relaygate.config import parse_server_config
from relaygate.config.model import RoutingConfig, Target
from relaygate.exporters import semconv as sc
from relaygate.exporters.labels import OTHER, LabelBudget, LabelPolicy
from relaygate.exporters.prometheus import GatewayMetrics
from relaygate.telemetry import Telemetry, build_telemetry
from tests.fakes import RecordingTransport
from tests.inprocess import asgi_client, gateway_app

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
TARGET_LABELS = ("target", "from_target", "to_target")
MODEL_LABELS = ("model", "gen_ai_request_model")

SERVER: dict[str, Any] = {
    "configs": {
        "prod": {
            "strategy": {"mode": "fallback"},
            "targets": [
                {
                    "name": "primary",
                    "provider": "openai",
                    "api_key": "sk-a",
                    "override_params": {"model": "gpt-4o"},
                },
                {"name": "backup", "provider": "openai", "api_key": "sk-b"},
            ],
        },
    },
    "default_config": "prod",
}


def server(**metrics: Any) -> dict[str, Any]:
    """:data:`SERVER` with ``telemetry.metrics`` settings."""
    return {**SERVER, "telemetry": {"metrics": metrics}} if metrics else SERVER


def client(
    telemetry: Telemetry, transport: RecordingTransport, config: dict[str, Any] | None = None
) -> httpx.AsyncClient:
    """An HTTP client of the app for ``config`` (default :data:`SERVER`)."""
    return asgi_client(gateway_app(config or SERVER, telemetry, transport))


def fresh(**kwargs: Any) -> Telemetry:
    """Telemetry without spans whose metrics go to a fresh registry."""
    return Telemetry(metrics=GatewayMetrics(CollectorRegistry(), **kwargs), detail="off")


def inline(name: str | None, model: str | None, provider: str = "openai") -> dict[str, str]:
    """Headers of a request carrying a one-target inline config."""
    target: dict[str, Any] = {"provider": provider, "api_key": "sk-caller"}
    if name is not None:
        target["name"] = name
    if model is not None:
        target["override_params"] = {"model": model}
    config = {"strategy": {"mode": "single"}, "targets": [target]}
    return {"x-portkey-config": orjson.dumps(config).decode()}


async def send(http: httpx.AsyncClient, headers: dict[str, str] | None = None) -> None:
    response = await http.post(CHAT, json=BODY, headers=headers or {})
    assert response.status_code == 200, response.text


async def scrape(http: httpx.AsyncClient) -> list[Sample]:
    """Every sample ``/metrics`` shows."""
    response = await http.get("/metrics")
    assert response.status_code == 200
    return [s for f in text_string_to_metric_families(response.text) for s in f.samples]


def values(samples: list[Sample], labels: tuple[str, ...], config: str = "inline") -> set[str]:
    """The values ``labels`` take in ``config``'s series (all series for the gen_ai ones)."""
    return {
        s.labels[name]
        for s in samples
        for name in labels
        if name in s.labels and s.labels.get("config", config) == config
    }


def overflow(samples: list[Sample], label: str) -> float | None:
    found = [
        s.value
        for s in samples
        if s.name == sc.M_LABEL_OVERFLOW + "_total" and s.labels == {"label": label}
    ]
    return found[0] if found else None


async def test_two_thousand_inline_configs_make_at_most_budget_plus_one_label_values() -> None:
    """The incident: 2,000 inline configs, each naming its own target and model."""
    telemetry = fresh()
    async with client(telemetry, RecordingTransport()) as http:
        for i in range(2000):
            await send(http, inline(f"caller-target-{i}", f"caller-model-{i}"))
        samples = await scrape(http)
    targets = values(samples, ("target",))
    models = values(samples, ("model",))
    assert len(targets) == 101 and OTHER in targets
    assert len(models) == 101 and OTHER in models
    # First come, first served: the first hundred keep their own labels.
    assert {f"caller-target-{i}" for i in range(100)} < targets
    assert {f"caller-model-{i}" for i in range(100)} < models
    genai = {
        s.labels["gen_ai_request_model"] for s in samples if "gen_ai_request_model" in s.labels
    }
    assert genai == models
    durations = [
        s
        for s in samples
        if s.name == sc.M_UPSTREAM_DURATION + "_count" and s.labels["config"] == "inline"
    ]
    assert len(durations) == 101
    assert sum(s.value for s in durations) == 2000
    others = [s for s in durations if s.labels["target"] == OTHER]
    assert [(s.labels["model"], s.value) for s in others] == [(OTHER, 1900.0)]
    assert overflow(samples, "target") == 1900
    assert overflow(samples, "model") == 1900


async def test_named_config_labels_stay_their_own_past_the_budget() -> None:
    telemetry = fresh(max_caller_label_values=2)
    async with client(telemetry, RecordingTransport()) as http:
        for i in range(5):
            await send(http, inline(f"caller-{i}", f"model-{i}"))
        await send(http)  # the default config, prod
        # A caller reusing the server config's name and model is not budgeted either.
        await send(http, inline("primary", "gpt-4o"))
        samples = await scrape(http)
    assert values(samples, ("target",), "prod") == {"primary"}
    assert values(samples, ("model",), "prod") == {"gpt-4o"}
    assert values(samples, ("target",)) == {"caller-0", "caller-1", "primary", OTHER}
    assert values(samples, ("model",)) == {"model-0", "model-1", "gpt-4o", OTHER}
    assert overflow(samples, "target") == 3
    assert overflow(samples, "model") == 3


async def test_a_budget_set_in_the_server_config_is_honoured() -> None:
    config = parse_server_config(server(max_caller_label_values=3))
    telemetry = build_telemetry(config.telemetry, registry=CollectorRegistry(), env={})
    async with client(telemetry, RecordingTransport(), server(max_caller_label_values=3)) as http:
        for i in range(10):
            await send(http, inline(f"caller-{i}", f"model-{i}"))
        samples = await scrape(http)
    assert values(samples, ("target",)) == {"caller-0", "caller-1", "caller-2", OTHER}
    assert values(samples, ("model",)) == {"model-0", "model-1", "model-2", OTHER}
    assert overflow(samples, "model") == 7


def test_the_budget_setting_defaults_to_one_hundred_and_is_bounded() -> None:
    assert parse_server_config({}).telemetry.metrics.max_caller_label_values == 100
    with pytest.raises(ValueError, match="max_caller_label_values"):
        parse_server_config(server(max_caller_label_values=-1))


async def test_inline_targets_are_labelled_by_name_within_the_budget() -> None:
    telemetry = fresh()
    async with client(telemetry, RecordingTransport()) as http:
        await send(http, inline("eu-west", None))
        await send(http, inline(None, None))
        samples = await scrape(http)
    # Named: its name. Unnamed: its path (the root of a single-target config).
    assert values(samples, ("target",)) == {"eu-west", "config.targets[0]"}
    assert overflow(samples, "target") is None


async def test_caller_values_longer_than_64_characters_are_other() -> None:
    telemetry = fresh()
    async with client(telemetry, RecordingTransport()) as http:
        await send(http, inline("n" * 64, "m" * 65))
        await send(http, inline("n" * 65, "m" * 64))
        samples = await scrape(http)
    assert values(samples, ("target",)) == {"n" * 64, OTHER}
    assert values(samples, ("model",)) == {"m" * 64, OTHER}
    assert overflow(samples, "target") == overflow(samples, "model") == 1


async def test_admitted_names_and_models_do_not_multiply_past_the_budget() -> None:
    """Each of 3 admitted names with each of 3 admitted models: 9 pairs, budget 3."""
    telemetry = fresh(max_caller_label_values=3)
    async with client(telemetry, RecordingTransport()) as http:
        for i in range(3):
            for j in range(3):
                await send(http, inline(f"caller-{i}", f"model-{j}"))
        samples = await scrape(http)
    pairs = Counter(
        (s.labels["target"], s.labels["model"])
        for s in samples
        if s.name == sc.M_UPSTREAM_DURATION + "_count" and s.labels["config"] == "inline"
    )
    assert set(pairs) == {
        ("caller-0", "model-0"),
        ("caller-0", "model-1"),
        ("caller-0", "model-2"),
        ("caller-1", OTHER),
        ("caller-2", OTHER),
    }
    assert overflow(samples, "model") == 6


async def test_inline_fallback_moves_are_labelled_by_name_within_the_budget() -> None:
    transport = RecordingTransport(httpx.Response(503, json={"error": {"message": "down"}}))

    def config(first: str, second: str) -> dict[str, str]:
        targets = [{"name": n, "provider": "openai", "api_key": "k"} for n in (first, second)]
        body = {"strategy": {"mode": "fallback"}, "targets": targets}
        return {"x-portkey-config": orjson.dumps(body).decode()}

    telemetry = fresh(max_caller_label_values=3)
    async with client(telemetry, transport) as http:
        for i in range(4):
            response = await http.post(CHAT, json=BODY, headers=config(f"a{i}", f"b{i}"))
            assert response.status_code == 503
        samples = await scrape(http)
    moves = {
        (s.labels["from_target"], s.labels["to_target"])
        for s in samples
        if s.name == sc.M_FALLBACKS + "_total" and s.labels["config"] == "inline"
    }
    assert moves == {("a0", "b0"), ("a1", OTHER), (OTHER, OTHER)}
    assert values(samples, TARGET_LABELS) == {"a0", "b0", "a1", OTHER}


async def test_provider_calls_keep_their_target_label_past_the_budget() -> None:
    """A config-less call's only target is the config root, a path no caller chooses."""
    telemetry = fresh(max_caller_label_values=1)
    headers = {"x-portkey-provider": "openai", "authorization": "Bearer sk-caller"}
    async with client(telemetry, RecordingTransport()) as http:
        await send(http, inline("caller-0", None))
        await send(http, inline("caller-1", None))
        await send(http, headers)
        samples = await scrape(http)
    assert values(samples, ("target",), "provider") == {"config"}
    assert values(samples, ("target",)) == {"caller-0", OTHER}


async def test_caller_configs_with_the_same_path_keep_their_own_provider() -> None:
    telemetry = fresh()
    async with client(telemetry, RecordingTransport()) as http:
        await send(http, inline(None, None, provider="openai"))
        await send(http, inline(None, None, provider="groq"))
        samples = await scrape(http)
    providers = {
        s.labels["provider"]
        for s in samples
        if s.name == sc.M_UPSTREAM_DURATION + "_count" and s.labels["config"] == "inline"
    }
    assert providers == {"openai", "groq"}


# -- the policy on its own --------------------------------------------------------------------


def test_budget_admits_first_come_first_served_and_reports_each_fold() -> None:
    folds: list[str] = []
    budget = LabelBudget(2, max_chars=5, on_overflow=folds.append)
    budget.trust("target", ["server-name"])
    got = [budget.admit("target", v) for v in ("a", "b", "c", "a", "server-name", "b", "c")]
    assert got == ["a", "b", OTHER, "a", "server-name", "b", OTHER]
    assert budget.admit("model", "toolong") == OTHER
    assert budget.admit("model", "m") == "m"
    assert budget.admitted("target") == {"a", "b"}
    assert folds == ["target", "target", "model"]


def test_a_zero_budget_admits_only_trusted_values() -> None:
    budget = LabelBudget(0)
    budget.trust("model", ["gpt-4o"])
    assert budget.admit("model", "gpt-4o") == "gpt-4o"
    assert budget.admit("model", "x") == OTHER
    assert budget.admit_pair("model", "gpt-4o", "target", OTHER) == "gpt-4o"


def test_policy_trusts_server_configs_and_budgets_callers() -> None:
    policy = LabelPolicy(LabelBudget(0), models=["allowed"])
    named = Target(path="config.targets[0]", provider="openai", name="primary")
    pinned = Target(path="config", provider="openai", override_params={"model": "gpt-4o"})
    policy.trust_config(RoutingConfig(id="prod", root=named))
    policy.trust_config(RoutingConfig(id="x", root=pinned, caller_supplied=True))
    assert policy.series(named, "allowed", caller_supplied=True) == ("primary", "allowed")
    assert policy.model(pinned, None, caller_supplied=True) == OTHER
    assert policy.model(pinned, None, caller_supplied=False) == "gpt-4o"
    caller = Target(path="config.targets[0]", provider="openai", name="mine")
    assert policy.series(caller, "allowed", caller_supplied=True) == (OTHER, "allowed")
    assert policy.model(caller, "allowed", caller_supplied=True) == "allowed"
    assert policy.model(caller, "not-allowed", caller_supplied=True) == OTHER
