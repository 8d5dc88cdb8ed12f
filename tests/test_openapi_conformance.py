"""A running ``relaygate serve`` answers as its own ``GET /openapi.json`` says it does.

schemathesis reads the document from the live gateway and generates requests for every
operation it lists, both fitting the schema (positive) and breaking it (negative): bodies,
headers and configs. The gateway's default config points at a fault-simulator upstream on
127.0.0.1, so valid requests are served end to end. Every answer must not be a server
error, and its status, content type, body schema and headers must be documented.

Nothing leaves loopback: every provider's default ``custom_host`` is the local upstream,
and a generated request that would name its own host (``x-portkey-custom-host``, or a
``custom_host``/``resource_name`` inside an inline ``x-portkey-config``) has that value
replaced by the local upstream or a named config before it is sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from relaygate.mock import MockSettings, create_mock_app
from relaygate.providers.registry import default_registry
from tests.servers import RunningServer, running_gateway, serve_in_thread

pytestmark = pytest.mark.gateway_process

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
"""What every answer is held to."""

EXAMPLES_PER_MODE = {"POST": 60, "GET": 5}
"""Generated requests per operation and generation mode: bounded so the whole test stays
well within a minute on a small machine."""

OPERATIONS = {
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/embeddings"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"),
    ("POST", "/v1/responses"),
    ("GET", "/v1/models"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("GET", "/status"),
    ("GET", "/status.json"),
    ("GET", "/openapi.json"),
}
"""Every operation the document must list (a missing one would go untested silently)."""

REFUSED_ALWAYS = {("POST", "/v1/messages/count_tokens")}
"""Operations no target of this test's config serves, so no valid request of theirs answers
200 (token counting needs an ``anthropic`` target)."""

PLAIN: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    "/v1/completions": {"model": "m", "prompt": "hi"},
    "/v1/embeddings": {"model": "m", "input": "hi"},
    "/v1/messages": {
        "model": "m",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    },
    "/v1/responses": {"model": "m", "input": "hi"},
}
"""A plain valid request of each POST operation served end to end."""

HOST_WORDS = ("host", "resource")
"""Config keys (any spelling) that choose where a target's requests go."""


def server_config(upstream: RunningServer) -> dict[str, Any]:
    """A server config whose every route ends at ``upstream``."""
    base = f"{upstream.url}/v1"
    providers: dict[str, Any] = {name: {"custom_host": base} for name in default_registry().names}
    providers["azure-openai"] = {"custom_host": f"{upstream.url}/openai"}
    return {
        "default_config": {
            "strategy": {"mode": "fallback"},
            "targets": [
                {"provider": "openai", "api_key": "sk-upstream"},
                {"provider": "groq", "override_params": {"model": "llama-3.1-8b-instant"}},
            ],
        },
        "configs": {
            "prod": {
                "provider": "openai",
                "api_key": "sk-upstream",
                "override_params": {"model": "gpt-4o-mini"},
            }
        },
        "providers": providers,
        "limits": {"max_body_bytes": 65536, "request_deadline_ms": 10_000},
        "retry": {"initial_backoff_ms": 1, "max_backoff_ms": 5},
        "telemetry": {"logs": {"level": "warning", "format": "json"}},
    }


@pytest.fixture(scope="module")
def upstream() -> Iterator[RunningServer]:
    """A fault-simulator upstream answering every request successfully."""
    with serve_in_thread(create_mock_app(MockSettings(name="upstream"))) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(upstream: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a ``relaygate serve`` process routing to ``upstream``."""
    # A generated request may name the bedrock provider with no AWS keys: botocore's chain
    # must not wait on an instance metadata service this machine does not have.
    env = {"AWS_EC2_METADATA_DISABLED": "true"}
    with running_gateway(
        tmp_path_factory.mktemp("openapi"), server_config(upstream), env
    ) as server:
        yield server.url


def _names_a_host(value: Any) -> bool:
    """Whether a decoded JSON value has a key choosing a host, at any depth."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if any(word in str(key).lower() for word in HOST_WORDS):
                    return True
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
    return False


def keep_on_loopback(case: Case, upstream: RunningServer) -> Case:
    """``case`` with every caller-chosen destination replaced by ``upstream``."""
    headers = case.headers
    if headers is None:
        return case
    if "x-portkey-custom-host" in headers:
        headers["x-portkey-custom-host"] = f"{upstream.url}/v1"
    config = headers.get("x-portkey-config")
    if isinstance(config, str):
        try:
            decoded = json.loads(config)
        except ValueError:
            decoded = None
        if _names_a_host(decoded):
            headers["x-portkey-config"] = "prod"
    return case


def test_every_documented_operation_answers_as_documented(
    gateway: str, upstream: RunningServer
) -> None:
    session = requests.Session()
    document = session.get(f"{gateway}/openapi.json", timeout=30)
    assert document.status_code == 200
    assert document.headers["content-type"] == "application/json"
    # Loaded from the fetched data rather than from the URL: schemathesis leaves the
    # document's own location out of the operations it tests.
    schema = schemathesis.openapi.from_dict(document.json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in operations} == OPERATIONS

    calls: dict[tuple[str, str, str], list[int]] = {}
    for operation in operations:
        method = operation.method.upper()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if method == "GET" and mode is GenerationMode.NEGATIVE:
                continue  # nothing to break: the GET routes take no parameters
            calls[(method, operation.path, mode.value)] = exercise(
                operation, mode, base_url=gateway, upstream=upstream, session=session
            )
    assert all(statuses for statuses in calls.values()), calls
    for (method, path, mode), statuses in calls.items():
        if mode == GenerationMode.POSITIVE.value and (method, path) not in REFUSED_ALWAYS:
            # Valid requests are served end to end, not only refused: generated ones often
            # carry headers that are rightly refused (a caller's host, an unknown config),
            # so a plain valid request stands in when none of them was a 200.
            if 200 not in statuses and method == "POST":
                answer = session.post(f"{gateway}{path}", json=PLAIN[path], timeout=30)
                statuses.append(answer.status_code)
            assert 200 in statuses, (method, path, sorted(set(statuses)))


def exercise(
    operation: APIOperation,
    mode: GenerationMode,
    *,
    base_url: str,
    upstream: RunningServer,
    session: requests.Session,
) -> list[int]:
    """Send generated requests for ``operation`` and hold each answer to :data:`CHECKS`;
    return the status of each. A failing check raises with the request that caused it."""
    statuses: list[int] = []

    @settings(
        max_examples=EXAMPLES_PER_MODE[operation.method.upper()],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Case) -> None:
        case = keep_on_loopback(case, upstream)
        response = case.call(base_url=base_url, session=session, timeout=30)
        case.validate_response(response, checks=CHECKS)
        statuses.append(response.status_code)

    check()
    return statuses
