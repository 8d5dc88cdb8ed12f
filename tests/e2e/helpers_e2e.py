"""Shared pieces of the end-to-end tests: fault-simulator upstreams, server configs, checks.

Every server listens on loopback only. A :class:`MockUpstream` wraps one running fault
simulator (:mod:`relaygate.mock`) with its control endpoints, so a test can script
the next answers, read what relaygate forwarded and count what arrived.
"""

from __future__ import annotations

import base64
import contextlib
import json
import struct
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from relaygate.mock import MockSettings, create_mock_app
from tests.servers import RunningServer, serve_in_thread

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Say hello to the gateway."}
]
"""A minimal chat conversation accepted by the mock upstreams."""

CLIENT_TIMEOUT_S = 30.0
"""Client-side timeout of every SDK and httpx call: generous, for a loaded machine."""

FAST_RETRY: dict[str, int] = {"initial_backoff_ms": 10, "max_backoff_ms": 50}
"""Server-config backoff settings that keep retries quick in tests."""

QUIET_LOGS: dict[str, Any] = {"logs": {"level": "warning", "format": "json"}}
"""Telemetry settings writing no per-request log line (the process' stdout is not read)."""


def answer_of(name: str) -> str:
    """The completion text a mock upstream called ``name`` answers with."""
    return f"Hello from {name}"


class MockUpstream:
    """One running fault-simulator upstream and its ``/_mock/*`` control endpoints."""

    def __init__(self, name: str, server: RunningServer, control: httpx.Client) -> None:
        self.name = name
        self.server = server
        self._control = control

    @property
    def url(self) -> str:
        """The server root, ``http://127.0.0.1:<port>``."""
        return self.server.url

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL (``.../v1``), as a target's ``custom_host``."""
        return f"{self.server.url}/v1"

    def script(self, spec: str, loop: bool = False) -> None:
        """Make the next requests answer per the fault ``spec`` (see ``parse_faults``)."""
        response = self._control.post(
            f"{self.url}/_mock/script", json={"script": spec, "loop": loop}
        )
        response.raise_for_status()

    def clear(self) -> None:
        """Forget the script, the counters and the recorded requests."""
        self.script("")
        response = self._control.post(f"{self.url}/_mock/reset")
        response.raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        """The API requests received (oldest first): method, path, headers, parsed body."""
        response = self._control.get(f"{self.url}/_mock/requests")
        response.raise_for_status()
        recorded: list[dict[str, Any]] = response.json()
        return recorded

    def hits(self) -> int:
        """How many API requests arrived since the last :meth:`clear`."""
        response = self._control.get(f"{self.url}/_mock/stats")
        response.raise_for_status()
        count: int = response.json()["requests"]
        return count

    def vectors(self, inputs: list[str]) -> list[list[float]]:
        """The float embeddings this mock answers for ``inputs``, asked directly."""
        response = self._control.post(
            f"{self.base_url}/embeddings",
            json={"model": "embed-direct", "input": inputs, "encoding_format": "float"},
        )
        response.raise_for_status()
        return [item["embedding"] for item in response.json()["data"]]

    def target(self, **fields: Any) -> dict[str, Any]:
        """A Portkey config target calling this mock as an ``openai`` provider.

        The target's key is ``sk-<name>``; ``fields`` add to or replace the defaults.
        """
        return {
            "provider": "openai",
            "api_key": f"sk-{self.name}",
            "custom_host": self.base_url,
            **fields,
        }


Mocks = dict[str, MockUpstream]
"""Running upstreams keyed by name."""


@contextlib.contextmanager
def running_mocks(*names: str, **settings: Any) -> Iterator[Mocks]:
    """Start one fault simulator per name (sharing ``settings``), keyed by name."""
    with ExitStack() as stack:
        control = stack.enter_context(httpx.Client(timeout=CLIENT_TIMEOUT_S))
        mocks: dict[str, MockUpstream] = {}
        for name in names:
            app = create_mock_app(MockSettings(name=name, **settings))
            server = stack.enter_context(serve_in_thread(app))
            mocks[name] = MockUpstream(name, server, control)
        yield mocks


def server_config(configs: Mapping[str, Any], **sections: Any) -> dict[str, Any]:
    """A server config with named ``configs``, fast retries and quiet logs.

    ``sections`` add top-level settings (``auth``, ``limits``...) or replace the defaults.
    The mock upstreams listen on loopback, so callers' own configs may point at private
    destinations here (``security.egress.allow_private``).
    """
    return {
        "configs": dict(configs),
        "retry": dict(FAST_RETRY),
        "telemetry": dict(QUIET_LOGS),
        "security": {"egress": {"allow_private": True}},
        **sections,
    }


@dataclass(frozen=True)
class Recovery:
    """A failure scripted on ``alpha`` that the named config ``config`` recovers from, and
    what the client then reads: the answering upstream, the option index and the route."""

    config: str
    script: str
    served_by: str
    index: str
    route: str

    def check(self, headers: Mapping[str, str], text: str) -> None:
        """Assert the answer and the headers tell this recovery."""
        assert text == answer_of(self.served_by)
        assert headers["x-portkey-last-used-option-index"] == self.index
        assert headers["x-relaygate-route"] == self.route

    def through(self, sdk: openai.OpenAI, mocks: Mocks, *, stream: bool) -> Mapping[str, str]:
        """Script the failure, send one chat on ``config`` through ``sdk`` and
        :meth:`check` the answer; its headers."""
        mocks["alpha"].script(self.script)
        headers, text = chat(sdk, self.config, stream=stream)
        self.check(headers, text)
        return headers


FALLBACK = Recovery(
    "fallback", "503", "beta", "config.targets[1]", "config.targets[0]:503>config.targets[1]:200"
)
"""``alpha`` answers 503: the ``fallback`` config answers from ``beta``."""

RETRY = Recovery(
    "retry", "429@retry_after_ms=30,200", "alpha", "config.targets[0]", "config.targets[0]:429,200"
)
"""``alpha`` answers 429 with ``Retry-After`` once: the ``retry`` config retries it."""

TIMEOUT = Recovery(
    "timeout",
    "200@latency_ms=3000",
    "beta",
    "config.targets[1]",
    "config.targets[0]:timeout>config.targets[1]:200",
)
"""``alpha`` is slower than its 200 ms ``request_timeout``: ``timeout`` falls back to ``beta``."""


def retry_and_timeout_configs(first: MockUpstream, second: MockUpstream) -> dict[str, Any]:
    """Named configs falling back from ``first`` to ``second``: ``retry`` (``first`` retried
    twice, honouring ``Retry-After``) and ``timeout`` (``first`` cut after 200 ms)."""
    return {
        "retry": {
            "strategy": {"mode": "fallback"},
            "targets": [
                first.target(retry={"attempts": 2, "use_retry_after_header": True}),
                second.target(),
            ],
        },
        "timeout": {
            "strategy": {"mode": "fallback"},
            "targets": [first.target(request_timeout=200), second.target()],
        },
    }


def openai_client(base_url: str, api_key: str = "sk-client") -> openai.OpenAI:
    """A synchronous openai SDK client that never retries by itself."""
    return openai.OpenAI(
        base_url=base_url, api_key=api_key, max_retries=0, timeout=CLIENT_TIMEOUT_S
    )


def chat(
    sdk: openai.OpenAI,
    config: str,
    *,
    stream: bool,
    model: str = "gpt-4o-mini",
    headers: dict[str, str] | None = None,
) -> tuple[Mapping[str, str], str]:
    """One chat completion through the SDK: the response headers and the answer text.

    A streamed answer is iterated chunk by chunk and its deltas joined.
    """
    extra = {**config_header(config), **(headers or {})}
    if stream:
        streamed = sdk.chat.completions.with_raw_response.create(
            model=model, messages=MESSAGES, stream=True, extra_headers=extra
        )
        chunks = streamed.parse()
        assert isinstance(chunks, openai.Stream)
        return streamed.headers, chunk_text(chunks)
    plain = sdk.chat.completions.with_raw_response.create(
        model=model, messages=MESSAGES, extra_headers=extra
    )
    return plain.headers, plain.parse().choices[0].message.content or ""


STREAMING = pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
"""Runs a test once with a plain answer and once with a streamed one."""


def config_header(config: str | Mapping[str, Any]) -> dict[str, str]:
    """The ``x-portkey-config`` header selecting a named config or carrying an inline one."""
    value = config if isinstance(config, str) else json.dumps(config)
    return {"x-portkey-config": value}


def error_of(body: object) -> dict[str, Any]:
    """The ``error`` object of an OpenAI-shaped error body, checking the shape.

    The shape is ``{"error": {"message": str, "type": str, "param": ..., "code": ...}}``.
    """
    assert isinstance(body, dict), body
    error = body.get("error")
    assert isinstance(error, dict), body
    assert isinstance(error.get("message"), str) and error["message"], body
    assert isinstance(error.get("type"), str) and error["type"], body
    assert "param" in error and "code" in error, body
    return error


def sdk_error_of(exc: openai.APIStatusError) -> dict[str, Any]:
    """The error object an openai SDK exception carries in ``e.body``, checking its shape.

    The SDK stores the answer's inner ``error`` object as ``e.body``.
    """
    return error_of({"error": exc.body})


def chunk_text(chunks: Iterable[Any]) -> str:
    """The concatenated ``delta.content`` of openai SDK chat-completion chunks."""
    parts: list[str] = []
    for chunk in chunks:
        for choice in chunk.choices:
            if choice.delta.content:
                parts.append(choice.delta.content)
    return "".join(parts)


def decode_float32(text: str) -> list[float]:
    """Floats from base64 of little-endian float32 values (OpenAI's base64 embeddings)."""
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))
