"""End to end through the official openai SDK: a real ``relaygate serve`` process in front of
real fault-simulator upstreams on loopback.

One gateway process serves every scenario of this module through named configs chosen with
``x-portkey-config: <id>``; the upstreams are scripted per test through ``/_mock/script``.
A second process, with gateway authentication switched on, serves the auth scenarios.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.helpers_e2e import (
    CLIENT_TIMEOUT_S,
    FALLBACK,
    MESSAGES,
    RETRY,
    STREAMING,
    TIMEOUT,
    Mocks,
    answer_of,
    chat,
    chunk_text,
    config_header,
    decode_float32,
    error_of,
    openai_client,
    retry_and_timeout_configs,
    sdk_error_of,
    server_config,
)
from tests.servers import RunningServer, running_gateway

MAX_BODY_BYTES = 65_536
MAX_CONFIG_HEADER_BYTES = 4_096
GATEWAY_KEY = "gw-key"
TARGET_KEY = "sk-target-key"
PROVIDER_DEFAULT_KEY = "sk-provider-default"
STALL_TIMEOUT_MS = 2_000
"""Bounds both the first chunk and each later gap: generous, so a loaded machine still
delivers the first chunk in time."""

MOCK_NAMES = ("alpha", "beta", "gamma")
"""The module's fault-simulator upstreams (the ``mocks`` fixture of ``conftest.py``)."""


def _configs(mocks: Mocks) -> dict[str, Any]:
    alpha, beta, gamma = mocks["alpha"], mocks["beta"], mocks["gamma"]
    conditions = [
        {"query": {"metadata.tier": "paid"}, "then": "premium"},
        {"query": {"params.model": "cheap-model"}, "then": "budget"},
    ]
    return {
        "fallback": {
            "strategy": {"mode": "fallback"},
            "targets": [
                alpha.target(override_params={"model": "model-alpha"}),
                beta.target(provider="together-ai", override_params={"model": "model-beta"}),
            ],
        },
        **retry_and_timeout_configs(alpha, beta),
        "quick-timeout": {
            "strategy": {"mode": "fallback"},
            "targets": [alpha.target(request_timeout=50), beta.target()],
        },
        "stall": alpha.target(request_timeout=STALL_TIMEOUT_MS),
        "weighted": {
            "strategy": {"mode": "loadbalance"},
            "targets": [alpha.target(weight=3), beta.target(weight=1)],
        },
        "conditional": {
            "strategy": {"mode": "conditional", "conditions": conditions, "default": "standard"},
            "targets": [
                alpha.target(name="premium"),
                beta.target(name="budget"),
                gamma.target(name="standard"),
            ],
        },
        "conditional-strict": {
            "strategy": {"mode": "conditional", "conditions": conditions},
            "targets": [alpha.target(name="premium"), beta.target(name="budget")],
        },
        "override": alpha.target(override_params={"model": "forced-model", "temperature": 0.25}),
        "solo": alpha.target(),
        "float-only": alpha.target(override_params={"encoding_format": "float"}),
    }


@pytest.fixture(scope="module")
def gateway(mocks: Mocks, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The relaygate process serving every named config of this module, without auth."""
    config = server_config(
        _configs(mocks),
        limits={
            "max_body_bytes": MAX_BODY_BYTES,
            "max_config_header_bytes": MAX_CONFIG_HEADER_BYTES,
        },
    )
    with running_gateway(tmp_path_factory.mktemp("gateway"), config) as server:
        yield server


@pytest.fixture(scope="module")
def auth_gateway(mocks: Mocks, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A relaygate process that requires the gateway key ``gw-key``."""
    config = server_config(
        {"guarded": mocks["beta"].target(api_key=TARGET_KEY)},
        auth={"api_keys": [GATEWAY_KEY]},
        providers={
            "openai": {"api_key": PROVIDER_DEFAULT_KEY, "custom_host": mocks["alpha"].base_url}
        },
    )
    with running_gateway(tmp_path_factory.mktemp("auth-gateway"), config) as server:
        yield server


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """A plain HTTP client, for what the SDK cannot send."""
    with httpx.Client(timeout=CLIENT_TIMEOUT_S) as plain:
        yield plain


@pytest.fixture(scope="module")
def client(gateway: RunningServer) -> Iterator[openai.OpenAI]:
    """An openai SDK client of the unauthenticated gateway."""
    with openai_client(f"{gateway.url}/v1") as sdk:
        yield sdk


def chunks_before_api_error(client: openai.OpenAI, config: str) -> list[Any]:
    """The chunks of a streamed chat on ``config`` that arrived before the stream raised
    ``openai.APIError`` (an answer that broke, not a connection that failed)."""
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=config_header(config)
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)
    assert not isinstance(caught.value, openai.APIConnectionError)
    return received


# --- fallback, retry, timeout -------------------------------------------------------------


@STREAMING
def test_fallback_answers_from_the_second_target_when_the_first_answers_503(
    client: openai.OpenAI, mocks: Mocks, stream: bool
) -> None:
    headers = FALLBACK.through(client, mocks, stream=stream)
    assert headers["x-portkey-provider"] == "together-ai"
    assert headers["x-portkey-trace-id"]
    assert headers["x-request-id"]
    assert (mocks["alpha"].hits(), mocks["beta"].hits()) == (1, 1)
    assert mocks["beta"].requests()[0]["body"]["model"] == "model-beta"


@STREAMING
def test_retry_waits_for_retry_after_then_succeeds_on_the_same_target(
    client: openai.OpenAI, mocks: Mocks, stream: bool
) -> None:
    headers = RETRY.through(client, mocks, stream=stream)
    assert headers["x-portkey-retry-attempt-count"] == "1"
    assert (mocks["alpha"].hits(), mocks["beta"].hits()) == (2, 0)


@STREAMING
def test_a_target_slower_than_its_request_timeout_falls_back_to_the_next(
    client: openai.OpenAI, mocks: Mocks, stream: bool
) -> None:
    TIMEOUT.through(client, mocks, stream=stream)


def test_every_attempt_cut_by_its_request_timeout_is_reported_as_a_timeout(
    client: openai.OpenAI, mocks: Mocks
) -> None:
    mocks["alpha"].script("200@latency_ms=3000", loop=True)
    routes = Counter(
        chat(client, "quick-timeout", stream=False)[0]["x-relaygate-route"] for _ in range(20)
    )
    assert routes == {"config.targets[0]:timeout>config.targets[1]:200": 20}


def test_a_stream_stalling_longer_than_request_timeout_mid_way_raises_api_error(
    client: openai.OpenAI, mocks: Mocks
) -> None:
    mocks["alpha"].script(f"200@chunk_delay_ms={STALL_TIMEOUT_MS * 5}")
    assert chunks_before_api_error(client, "stall"), "the chunks before the stall reach the client"


# --- every target exhausted ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "last", "stream", "error_class"),
    [
        ("503", "503", False, openai.InternalServerError),
        ("503", "502", True, openai.InternalServerError),
        ("503", "429", False, openai.RateLimitError),
    ],
    ids=["503-503", "503-502-stream-before-any-chunk", "503-429"],
)
def test_exhausted_targets_raise_the_last_targets_error_class_with_the_route(
    client: openai.OpenAI,
    mocks: Mocks,
    first: str,
    last: str,
    stream: bool,
    error_class: type[openai.APIStatusError],
) -> None:
    mocks["alpha"].script(first)
    mocks["beta"].script(last)
    with pytest.raises(error_class) as caught:
        chat(client, "fallback", stream=stream)
    error = caught.value
    assert error.status_code == int(last)
    assert error.response.headers["x-relaygate-route"] == (
        f"config.targets[0]:{first}>config.targets[1]:{last}"
    )
    assert error.response.headers["x-portkey-last-used-option-index"] == "config.targets[1]"
    assert error.response.headers["x-portkey-trace-id"]
    assert "Traceback" not in error.response.text
    sdk_error_of(error)


# --- streams broken by the upstream -------------------------------------------------------


def test_a_stream_cut_by_the_upstream_after_the_first_chunk_raises_api_error(
    client: openai.OpenAI, mocks: Mocks
) -> None:
    mocks["alpha"].script("200@cut_after_chunks=2")
    received = chunks_before_api_error(client, "solo")
    assert received, "the chunks sent before the cut reach the client"
    assert answer_of("alpha") not in chunk_text(received)


# --- load balancing -----------------------------------------------------------------------


def test_weighted_loadbalance_splits_traffic_by_weight(client: openai.OpenAI, mocks: Mocks) -> None:
    requests = 200
    served: dict[str, int] = {}
    for _ in range(requests):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers=config_header("weighted")
        )
        index = raw.headers["x-portkey-last-used-option-index"]
        served[index] = served.get(index, 0) + 1
    assert set(served) <= {"config.targets[0]", "config.targets[1]"}
    first = served.get("config.targets[0]", 0)
    assert (mocks["alpha"].hits(), mocks["beta"].hits()) == (first, requests - first)
    # 3:1 weights: 0.75 expected; +-0.12 is about four standard deviations at n=200.
    assert 0.63 <= first / requests <= 0.87, served


# --- conditional routing ------------------------------------------------------------------


@STREAMING
@pytest.mark.parametrize(
    ("model", "tier", "served_by", "index"),
    [
        ("gpt-4o-mini", "paid", "alpha", "config.targets[0]"),
        ("cheap-model", None, "beta", "config.targets[1]"),
        ("gpt-4o-mini", "free", "gamma", "config.targets[2]"),
    ],
    ids=["paid-tier-metadata-to-premium", "requested-model-to-budget", "no-match-to-default"],
)
def test_conditional_routing_picks_the_target_the_conditions_name(
    client: openai.OpenAI, model: str, tier: str | None, served_by: str, index: str, stream: bool
) -> None:
    metadata = {} if tier is None else {"x-portkey-metadata": json.dumps({"tier": tier})}
    headers, text = chat(client, "conditional", stream=stream, model=model, headers=metadata)
    assert text == answer_of(served_by)
    assert headers["x-portkey-last-used-option-index"] == index


def test_conditional_routing_without_match_or_default_is_a_bad_request(
    client: openai.OpenAI, mocks: Mocks
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, "conditional-strict", stream=False)
    error = sdk_error_of(caught.value)
    assert error["code"] == "no_route"
    assert "no conditional route matched" in error["message"]
    assert mocks["alpha"].hits() == mocks["beta"].hits() == 0


# --- request bodies -----------------------------------------------------------------------


@STREAMING
def test_override_params_are_merged_and_other_body_fields_arrive_unaltered(
    client: openai.OpenAI, mocks: Mocks, stream: bool
) -> None:
    sent: dict[str, Any] = {
        "model": "client-model",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Héllo, gateway ✓"}]},
        ],
        "temperature": 0.9,
        "max_tokens": 5,
        "user": "user-1",
    }
    extra_body = {"vendor_options": {"nested": [1, {"deep": None}], "flag": True}}
    client.chat.completions.create(
        **sent,
        stream=stream,
        extra_body=extra_body,
        extra_headers=config_header("override"),
    )
    (forwarded,) = mocks["alpha"].requests()
    expected = {
        **sent,
        **extra_body,
        "stream": stream,
        "model": "forced-model",
        "temperature": 0.25,
    }
    assert forwarded["body"] == expected


# --- embeddings ---------------------------------------------------------------------------


def test_embeddings_in_the_sdks_default_base64_decode_to_the_upstream_vectors(
    client: openai.OpenAI, mocks: Mocks
) -> None:
    inputs = ["first text", "second text"]
    result = client.embeddings.create(
        model="text-embed", input=inputs, extra_headers=config_header("solo")
    )
    (forwarded,) = mocks["alpha"].requests()
    assert forwarded["body"]["encoding_format"] == "base64"
    assert [item.embedding for item in result.data] == mocks["alpha"].vectors(inputs)


def test_embeddings_asked_as_floats_arrive_as_the_upstream_vectors(
    client: openai.OpenAI, mocks: Mocks
) -> None:
    inputs = ["only text"]
    result = client.embeddings.create(
        model="text-embed",
        input=inputs,
        encoding_format="float",
        extra_headers=config_header("solo"),
    )
    assert [item.embedding for item in result.data] == mocks["alpha"].vectors(inputs)


def test_embeddings_from_a_float_only_upstream_reach_a_base64_client_correctly(
    client: openai.OpenAI, mocks: Mocks
) -> None:
    inputs = ["first text", "second text"]
    raw = client.embeddings.with_raw_response.create(
        model="text-embed", input=inputs, extra_headers=config_header("float-only")
    )
    (forwarded,) = mocks["alpha"].requests()
    assert forwarded["body"]["encoding_format"] == "float"
    wire = raw.http_response.json()["data"]
    assert all(isinstance(item["embedding"], str) for item in wire)
    expected = mocks["alpha"].vectors(inputs)
    assert [decode_float32(item["embedding"]) for item in wire] == expected
    assert [item.embedding for item in raw.parse().data] == expected


# --- models, health -----------------------------------------------------------------------


def test_models_lists_every_model_the_configs_pin(client: openai.OpenAI) -> None:
    models = {model.id: model.owned_by for model in client.models.list()}
    assert models == {
        "model-alpha": "openai",
        "model-beta": "together-ai",
        "forced-model": "openai",
    }


@pytest.mark.parametrize("path", ["/health", "/ready"])
def test_health_and_readiness_answer_200(
    gateway: RunningServer, http: httpx.Client, path: str
) -> None:
    response = http.get(f"{gateway.url}{path}")
    assert response.status_code == 200
    assert response.json()["status"] == {"/health": "ok", "/ready": "ready"}[path]


def test_readiness_lists_the_named_configs(
    gateway: RunningServer, http: httpx.Client, mocks: Mocks
) -> None:
    response = http.get(f"{gateway.url}/ready")
    assert response.json()["configs"] == sorted(_configs(mocks))


# --- bad input ----------------------------------------------------------------------------


CHAT_JSON: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MESSAGES}
UNUSED_HOST = "http://127.0.0.1:9/v1"
SOLO = config_header("solo")

BAD_REQUESTS: dict[str, tuple[dict[str, Any], int, str]] = {
    "malformed-json-body": (
        {"content": b'{"model": "m", "messages": [', "headers": SOLO},
        400,
        "not valid JSON",
    ),
    "body-not-an-object": ({"content": b"[1, 2]", "headers": SOLO}, 400, "JSON object"),
    "stream-not-a-boolean": (
        {"json": {**CHAT_JSON, "stream": "yes"}, "headers": SOLO},
        400,
        "'stream' must be a boolean",
    ),
    "unknown-provider-inline": (
        {
            "json": CHAT_JSON,
            "headers": config_header({"provider": "nonexistent-ai", "custom_host": UNUSED_HOST}),
        },
        400,
        "nonexistent-ai",
    ),
    "config-header-not-json": (
        {"json": CHAT_JSON, "headers": {"x-portkey-config": '{"strategy":'}},
        400,
        "x-portkey-config",
    ),
    "negative-retry-attempts": (
        {
            "json": CHAT_JSON,
            "headers": config_header(
                {
                    "strategy": {"mode": "fallback"},
                    "targets": [{"provider": "openai", "retry": {"attempts": -1}}],
                }
            ),
        },
        400,
        "targets[0].retry.attempts",
    ),
    "unknown-config-id": (
        {"json": CHAT_JSON, "headers": {"x-portkey-config": "no-such-config"}},
        400,
        "unknown config id",
    ),
    "metadata-not-json": (
        {"json": CHAT_JSON, "headers": {**SOLO, "x-portkey-metadata": "tier=paid"}},
        400,
        "x-portkey-metadata",
    ),
    "oversized-config-header": (
        {
            "json": CHAT_JSON,
            "headers": config_header(
                {
                    "provider": "openai",
                    "custom_host": UNUSED_HOST,
                    "metadata": {"pad": "x" * MAX_CONFIG_HEADER_BYTES},
                }
            ),
        },
        431,
        "limit",
    ),
    "body-over-limit": (
        {"json": {**CHAT_JSON, "padding": "x" * MAX_BODY_BYTES}, "headers": SOLO},
        413,
        "limit",
    ),
    "no-config": ({"json": CHAT_JSON}, 400, "no config"),
}
"""Per case: the httpx request arguments, the expected status and a message fragment."""


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_is_refused_in_openai_shape_with_its_status(
    gateway: RunningServer, http: httpx.Client, mocks: Mocks, case: str
) -> None:
    kwargs, status, fragment = BAD_REQUESTS[case]
    response = http.post(f"{gateway.url}/v1/chat/completions", **kwargs)
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    assert fragment in error_of(response.json())["message"]
    assert mocks["alpha"].hits() == 0


def test_an_unknown_route_is_a_404_in_openai_shape(
    gateway: RunningServer, http: httpx.Client
) -> None:
    response = http.post(f"{gateway.url}/v1/does-not-exist", json=CHAT_JSON)
    assert response.status_code == 404
    assert "Traceback" not in response.text
    error_of(response.json())


def test_an_upstream_answering_garbage_is_a_502_in_openai_shape(
    client: openai.OpenAI, mocks: Mocks
) -> None:
    mocks["alpha"].script("garbage")
    with pytest.raises(openai.InternalServerError) as caught:
        chat(client, "solo", stream=False)
    assert caught.value.status_code == 502
    assert "Traceback" not in caught.value.response.text
    assert "upstream exploded" not in caught.value.response.text
    sdk_error_of(caught.value)


# --- credentials --------------------------------------------------------------------------


@STREAMING
def test_a_config_less_call_forwards_the_callers_provider_key(
    gateway: RunningServer, mocks: Mocks, stream: bool
) -> None:
    headers = {"x-portkey-provider": "openai", "x-portkey-custom-host": mocks["alpha"].base_url}
    with openai.OpenAI(
        base_url=f"{gateway.url}/v1",
        api_key="sk-provider",
        max_retries=0,
        timeout=CLIENT_TIMEOUT_S,
        default_headers=headers,
    ) as sdk:
        if stream:
            text = chunk_text(
                sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
            )
        else:
            answer = sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            text = answer.choices[0].message.content or ""
    assert text == answer_of("alpha")
    (forwarded,) = mocks["alpha"].requests()
    assert forwarded["headers"]["authorization"] == "Bearer sk-provider"


@STREAMING
def test_the_gateway_key_admits_the_sdk_and_only_the_target_key_reaches_upstream(
    auth_gateway: RunningServer, mocks: Mocks, stream: bool
) -> None:
    with openai_client(f"{auth_gateway.url}/v1", api_key=GATEWAY_KEY) as sdk:
        _, text = chat(sdk, "guarded", stream=stream)
    assert text == answer_of("beta")
    (forwarded,) = mocks["beta"].requests()
    assert forwarded["headers"]["authorization"] == f"Bearer {TARGET_KEY}"
    assert not any(GATEWAY_KEY in value for value in forwarded["headers"].values())


def test_a_wrong_gateway_key_is_refused_with_authentication_error(
    auth_gateway: RunningServer, mocks: Mocks
) -> None:
    with (
        openai_client(f"{auth_gateway.url}/v1", api_key="wrong-key") as sdk,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        chat(sdk, "guarded", stream=False)
    assert caught.value.status_code == 401
    assert sdk_error_of(caught.value)["type"] == "authentication_error"
    assert mocks["beta"].hits() == 0


def test_a_config_less_call_never_forwards_the_gateway_key(
    auth_gateway: RunningServer, mocks: Mocks
) -> None:
    # The operator's key goes to the operator's own base URL for the provider.
    headers = {"x-portkey-provider": "openai"}
    with openai_client(f"{auth_gateway.url}/v1", api_key=GATEWAY_KEY) as sdk:
        answer = sdk.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers
        )
    assert answer.choices[0].message.content == answer_of("alpha")
    (forwarded,) = mocks["alpha"].requests()
    assert forwarded["headers"]["authorization"] == f"Bearer {PROVIDER_DEFAULT_KEY}"
    assert not any(GATEWAY_KEY in value for value in forwarded["headers"].values())
