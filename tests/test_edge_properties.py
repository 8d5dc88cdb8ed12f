"""Properties of the edge: whatever a caller sends, the answer is a success or a clean refusal.

Hypothesis generates request bodies (arbitrary JSON values, objects whose ``model``,
``stream`` or ``messages`` have odd types, deep nesting, huge numbers, unicode, bytes that
are not UTF-8) and request headers (arbitrary JSON in ``x-portkey-config``, valid configs
mutated with wrong types and unknown fields, conditional queries with random operators and
patterns, odd metadata, timeouts, hosts and header lists), and sends them through the real
ASGI app (``httpx.ASGITransport``) to an ``httpx.MockTransport`` upstream that answers
every call successfully. Every answer must be a 2xx, or an OpenAI-shaped error
(``{"error": {"message", "type", "param", "code"}}``, JSON) with a 4xx/5xx status other
than 500; the app must never raise.

Some generators are bounded below what a caller could send, each by a named constant: the
bound keeps the properties clear of a known defect that is being fixed separately, and is
meant to be lifted once the fix lands.
"""

from __future__ import annotations

import asyncio
import json
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import structlog
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from relaygate.app import create_app
from relaygate.exporters.prometheus import GatewayMetrics
from relaygate.exporters.spans import LeanTracer
from relaygate.gateway import GatewayDeps
from relaygate.providers.client import HttpxUpstream
from relaygate.strategies.conditions import COMPARISON_OPERATORS, LOGICAL_OPERATORS
from relaygate.telemetry import Telemetry
from tests.fakes import ChunkStream, chat_payload, chunk_payload, sse_event, sse_response

UPSTREAM = "http://upstream.invalid/v1"
ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
LIMIT = 256 * 1024

# --- generation bounds ---------------------------------------------------------------------

MAX_JSON_NESTING = 150
"""Nesting depth of generated JSON (bodies, configs, ``override_params``, metadata, ``$and``
/ ``$or``): past every limit relaygate applies (``limits.max_json_depth``, the config depth
bound, the ``$and``/``$or`` bound), so both sides of each are generated."""

SAFE_REGEX_ALPHABET = "ab.^$|[]-()*+?{}\\" + string.digits
"""Characters of generated ``$regex`` patterns, quantifiers and groups included: ``$regex``
runs on RE2 (linear time), and what RE2 cannot run is refused at validation."""


# --- the app under test ------------------------------------------------------------------

SERVER_CONFIG: dict[str, Any] = {
    "configs": {
        "prod": {
            "strategy": {"mode": "fallback"},
            "targets": [
                {"provider": "openai", "api_key": "sk-a", "custom_host": UPSTREAM},
                {"provider": "groq", "api_key": "sk-b", "custom_host": UPSTREAM},
            ],
        },
        "pinned": {
            "provider": "openai",
            "api_key": "sk-a",
            "custom_host": UPSTREAM,
            "override_params": {"model": "gpt-4o", "temperature": 0},
        },
    },
    "providers": {"openai": {"api_key": "sk-default", "custom_host": UPSTREAM}},
    "default_config": "prod",
    "limits": {"max_body_bytes": LIMIT, "max_config_header_bytes": 8192},
    "retry": {"initial_backoff_ms": 0, "max_backoff_ms": 0},
}


def upstream_reply(request: httpx.Request) -> httpx.Response:
    """A successful answer for whatever operation ``request`` is."""
    path = request.url.path
    if "/embeddings" in path:
        return httpx.Response(
            200,
            json={
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]}],
                "model": "text-embedding-3-small",
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            },
        )
    if request.headers.get("accept") == "text/event-stream":
        stream = ChunkStream([sse_event(chunk_payload("hi")), sse_event("[DONE]")])
        return sse_response(stream)
    return httpx.Response(200, json=chat_payload())


class Upstream:
    """The ``httpx.MockTransport`` handler: :func:`upstream_reply`, unless a test set
    ``answer`` to answer the next calls itself."""

    def __init__(self) -> None:
        self.answer: Callable[[httpx.Request], httpx.Response] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request``."""
        return (self.answer or upstream_reply)(request)


async def _no_sleep(_: float) -> None:
    return None


@dataclass
class Edge:
    """The gateway app on one event loop, and a way to send it raw requests."""

    runner: asyncio.Runner
    app: Starlette
    spans: InMemorySpanExporter
    upstream: Upstream

    def send(self, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> httpx.Response:
        """POST ``body`` with ``headers`` to ``path``; the whole answer, stream included."""

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                response = await client.post(path, content=body, headers=headers)
                await response.aread()
                return response

        try:
            return self.runner.run(go())
        finally:
            self.spans.clear()
            self.upstream.answer = None


@pytest.fixture(scope="module")
def edge() -> Iterator[Edge]:
    """The app for :data:`SERVER_CONFIG`, telemetry fully on, upstream :func:`upstream_reply`."""
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    processor = SimpleSpanProcessor(spans)
    provider.add_span_processor(processor)
    telemetry = Telemetry(
        tracer=LeanTracer.of(provider, processor),
        metrics=GatewayMetrics(CollectorRegistry()),
        logger=structlog.wrap_logger(structlog.ReturnLogger(), processors=[]),
        detail="full",
    )
    upstream = Upstream()
    client = HttpxUpstream(httpx.AsyncClient(transport=httpx.MockTransport(upstream)))
    deps = GatewayDeps(upstream=client, telemetry=telemetry, sleep=_no_sleep)
    with asyncio.Runner() as runner:
        yield Edge(runner, create_app(SERVER_CONFIG, deps), spans, upstream)
    provider.shutdown()


def assert_clean(response: httpx.Response) -> None:
    """A success, or an OpenAI-shaped error with a 4xx/5xx status that is not 500."""
    status = response.status_code
    if currently_in_test_context():
        event(f"status {status}")
    if 200 <= status < 300:
        return
    assert 400 <= status < 600, status
    assert status != 500, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict), body
    assert set(error) == {"message", "type", "param", "code"}, body
    assert isinstance(error["message"], str) and error["message"], body
    assert isinstance(error["type"], str), body
    assert error["param"] is None or isinstance(error["param"], str), body
    assert error["code"] is None or isinstance(error["code"], str), body


# --- JSON values -------------------------------------------------------------------------

HUGE_INTS = st.one_of(
    st.integers(), st.integers(min_value=2**63 - 2, max_value=2**70), st.just(-(2**64))
)

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    HUGE_INTS,
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)


def json_values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """Arbitrary JSON values, unicode text and huge integers included."""
    return st.recursive(
        SCALARS,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )


@st.composite
def deep(draw: st.DrawFn, leaf: st.SearchStrategy[Any] | None = None) -> Any:
    """A value nested up to :data:`MAX_JSON_NESTING` levels in lists and objects."""
    depth = draw(st.integers(min_value=1, max_value=MAX_JSON_NESTING - 2))
    value = draw(leaf if leaf is not None else SCALARS)
    for _ in range(depth):
        value = (draw(st.sampled_from(["list", "dict"])) == "list" and [value]) or {"k": value}
    return value


def dumps(value: Any) -> bytes:
    """``value`` as JSON text; huge integers are written as they are."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


ODD_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "model": st.one_of(json_values(5), st.text(), deep()),
        "stream": st.one_of(st.booleans(), st.none(), json_values(5)),
        "messages": st.one_of(
            json_values(10),
            st.lists(st.fixed_dictionaries({"role": st.text(), "content": json_values(5)})),
            deep(),
        ),
        "input": json_values(5),
        "encoding_format": st.one_of(st.sampled_from(["float", "base64"]), json_values(3)),
        "n": HUGE_INTS,
        "temperature": st.one_of(st.floats(allow_nan=False), HUGE_INTS),
    },
)

OBJECT_BODIES = st.builds(
    lambda fields, extra: {**extra, **fields},
    ODD_FIELDS,
    st.dictionaries(st.text(max_size=10), json_values(8), max_size=4),
)


@st.composite
def raw_bytes(draw: st.DrawFn) -> bytes:
    """Bytes that are mostly not a valid JSON body: noise, broken UTF-8 inside JSON,
    non-standard numbers, truncated documents."""
    kind = draw(st.sampled_from(["noise", "bad_utf8", "constant", "truncated", "whitespace"]))
    if kind == "noise":
        return draw(st.binary(max_size=200))
    if kind == "bad_utf8":
        junk = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x28\x8c"]))
        return (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "' + junk + b'"}]}'
        )
    if kind == "constant":
        number = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999"]))
        return b'{"model": "m", "temperature": ' + number + b"}"
    if kind == "truncated":
        text = dumps(draw(OBJECT_BODIES))
        return text[: draw(st.integers(min_value=0, max_value=max(len(text) - 1, 0)))]
    return draw(st.sampled_from([b"", b" ", b"\n\t", b"\xef\xbb\xbf{}"]))


BODIES = st.one_of(
    OBJECT_BODIES.map(dumps),
    json_values().map(dumps),
    deep().map(dumps),
    st.builds(lambda v: {"model": "m", "messages": [], "x": v}, deep()).map(dumps),
    raw_bytes(),
)

PATHS = st.sampled_from(ROUTES)


# --- headers -----------------------------------------------------------------------------

HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=40,
)
"""Header values as an HTTP server hands them over: latin-1 text without control chars."""


def header_value(text: str) -> bytes:
    """``text`` as raw header bytes (UTF-8, as a client would send JSON)."""
    return text.strip().encode("utf-8", "surrogatepass") or b"-"


VALID_CONFIGS: list[dict[str, Any]] = [
    {"provider": "openai", "api_key": "sk-x", "custom_host": UPSTREAM},
    {
        "strategy": {"mode": "fallback", "on_status_codes": [429, 503]},
        "targets": [
            {"provider": "openai", "api_key": "sk-x", "retry": {"attempts": 2}},
            {
                "provider": "groq",
                "api_key": "sk-y",
                "override_params": {"model": "llama", "max_tokens": 5},
                "request_timeout": 5000,
            },
        ],
        "custom_host": UPSTREAM,
    },
    {
        "strategy": {"mode": "loadbalance"},
        "targets": [
            {"provider": "openai", "weight": 0.7, "custom_host": UPSTREAM},
            {"provider": "mistral-ai", "weight": 0.3, "custom_host": UPSTREAM},
        ],
    },
    {
        "strategy": {
            "mode": "conditional",
            "conditions": [
                {"query": {"metadata.plan": {"$eq": "paid"}}, "then": "paid"},
                {"query": {"params.model": {"$regex": "^gpt"}}, "then": "free"},
            ],
            "default": "free",
        },
        "targets": [
            {"name": "paid", "provider": "openai", "custom_host": UPSTREAM},
            {"name": "free", "provider": "groq", "custom_host": UPSTREAM},
        ],
        "forward_headers": ["x-team"],
    },
    {
        "provider": "azure-openai",
        "resource_name": "res",
        "deployment_id": "dep",
        "api_version": "2024-06-01",
        "custom_host": "http://azure.invalid/openai",
    },
]


def _slots(value: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every ``(container, key)`` place inside ``value``."""
    if isinstance(value, dict):
        for key, child in value.items():
            out.append((value, key))
            _slots(child, out)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out.append((value, index))
            _slots(child, out)
    return out


UNKNOWN_KEYS = st.one_of(
    st.sampled_from(["virtual_key", "guardrails", "cache", "metadata", "strategy", "targets"]),
    st.text(max_size=12),
)


@st.composite
def mutated_configs(draw: st.DrawFn) -> Any:
    """A valid config with a few places replaced, removed or added to."""
    config = json.loads(json.dumps(draw(st.sampled_from(VALID_CONFIGS))))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        slots = _slots(config, [])
        if not slots:
            break
        container, key = draw(st.sampled_from(slots))
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "replace":
            container[key] = draw(st.one_of(json_values(6), deep()))
        elif action == "remove":
            del container[key]
        elif isinstance(container, dict):
            container[draw(UNKNOWN_KEYS)] = draw(json_values(4))
        else:
            container.append(draw(json_values(4)))
    return config


QUERY_PATHS = st.one_of(
    st.sampled_from(["metadata.plan", "params.model", "params.messages.0.role", "params.n"]),
    st.text(max_size=12),
    st.sampled_from(["metadata.", "params.", "$nor", "$where"]),
)

OPERATORS = st.one_of(st.sampled_from(sorted(COMPARISON_OPERATORS)), st.text(max_size=6))

PATTERNS = st.text(alphabet=SAFE_REGEX_ALPHABET, max_size=12)


def _operand(op: str) -> st.SearchStrategy[Any]:
    if op == "$regex":
        return st.one_of(PATTERNS, json_values(3))
    return json_values(4)


@st.composite
def conditions(draw: st.DrawFn) -> Any:
    """One condition: a literal, or an object of (known or unknown) operators."""
    if draw(st.booleans()):
        return draw(json_values(4))
    ops = draw(st.lists(OPERATORS, min_size=1, max_size=3))
    return {op: draw(_operand(op)) for op in ops}


def queries(max_depth: int = 3) -> st.SearchStrategy[Any]:
    """Conditional-routing queries with random paths, operators and nesting."""
    leaf = st.dictionaries(QUERY_PATHS, conditions(), max_size=3)
    return st.recursive(
        leaf,
        lambda inner: st.dictionaries(
            st.sampled_from(sorted(LOGICAL_OPERATORS)),
            st.one_of(st.lists(inner, max_size=3), json_values(3)),
            max_size=2,
        ),
        max_leaves=max_depth * 3,
    )


@st.composite
def deep_logic(draw: st.DrawFn) -> Any:
    """A query nesting ``$and``/``$or`` up to :data:`MAX_JSON_NESTING` levels."""
    query: Any = {"metadata.plan": "paid"}
    for _ in range(draw(st.integers(min_value=1, max_value=MAX_JSON_NESTING // 2 - 2))):
        query = {draw(st.sampled_from(["$and", "$or"])): [query]}
    return query


@st.composite
def conditional_configs(draw: st.DrawFn) -> Any:
    """A conditional config whose queries are random."""
    names = ["a", "b"]
    rules = draw(
        st.lists(
            st.builds(
                lambda q, then: {"query": q, "then": then},
                st.one_of(queries(), deep_logic(), json_values(4)),
                st.one_of(st.sampled_from(names), json_values(2)),
            ),
            min_size=1,
            max_size=3,
        )
    )
    return {
        "strategy": {"mode": "conditional", "conditions": rules, "default": "a"},
        "targets": [
            {"name": name, "provider": "openai", "custom_host": UPSTREAM} for name in names
        ],
    }


def _spaced(text: bytes) -> st.SearchStrategy[bytes]:
    return st.sampled_from([text, b" " + text, text + b"\t", b"\t " + text + b" "])


CONFIG_HEADERS = st.one_of(
    json_values().map(dumps),
    mutated_configs().map(dumps),
    conditional_configs().map(dumps),
    st.sampled_from(VALID_CONFIGS).map(dumps),
    st.sampled_from([b"prod", b"pinned", b"nope", b"{", b"{}", b"[]", b"null"]),
    HEADER_TEXT.map(header_value),
).flatmap(_spaced)

HEADERS: dict[str, st.SearchStrategy[bytes]] = {
    "x-portkey-config": CONFIG_HEADERS,
    "x-portkey-metadata": st.one_of(
        st.dictionaries(st.text(max_size=8), json_values(6)).map(dumps),
        st.fixed_dictionaries({"plan": st.sampled_from(["paid", "free"])}).map(dumps),
        json_values().map(dumps),
        deep().map(dumps),
        HEADER_TEXT.map(header_value),
    ),
    "x-portkey-provider": st.one_of(
        st.sampled_from([b"openai", b"OpenAI ", b"groq", b"azure-openai", b"custom", b"nope"]),
        HEADER_TEXT.map(header_value),
    ),
    "authorization": st.one_of(
        st.sampled_from([b"Bearer sk-client", b"Bearer ", b"Basic abc", b"bearer  x "]),
        HEADER_TEXT.map(header_value),
    ),
    "x-portkey-api-key": HEADER_TEXT.map(header_value),
    "x-portkey-trace-id": st.one_of(
        HEADER_TEXT.map(header_value), st.text(min_size=200, max_size=400).map(header_value)
    ),
    "x-portkey-custom-host": st.one_of(
        st.sampled_from([UPSTREAM.encode(), b"http://other.invalid:1/v1", b"ftp://x", b"http://"]),
        HEADER_TEXT.map(header_value),
    ),
    "x-portkey-request-timeout": st.one_of(
        HUGE_INTS.map(lambda n: str(n).encode()), HEADER_TEXT.map(header_value)
    ),
    "x-portkey-forward-headers": st.one_of(
        st.lists(st.sampled_from(["x-team", "traceparent", "x-portkey-config", "accept"])).map(
            lambda names: ",".join(names).encode()
        ),
        HEADER_TEXT.map(header_value),
    ),
    "traceparent": st.one_of(
        st.just(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        HEADER_TEXT.map(header_value),
    ),
    "x-team": HEADER_TEXT.map(header_value),
}


@st.composite
def header_sets(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    """A few of :data:`HEADERS`, each with a generated value."""
    names = draw(st.lists(st.sampled_from(sorted(HEADERS)), unique=True, max_size=5))
    return [(name.encode(), draw(HEADERS[name])) for name in names]


GOOD_BODY = dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})


# --- properties --------------------------------------------------------------------------


@given(path=PATHS, body=BODIES)
def test_any_body_is_served_or_refused_cleanly(edge: Edge, path: str, body: bytes) -> None:
    assert_clean(edge.send(path, body, [(b"content-type", b"application/json")]))


@given(path=PATHS, config=CONFIG_HEADERS)
def test_any_config_header_is_served_or_refused_cleanly(
    edge: Edge, path: str, config: bytes
) -> None:
    assert_clean(edge.send(path, GOOD_BODY, [(b"x-portkey-config", config)]))


@given(
    path=PATHS,
    config=conditional_configs().map(dumps),
    metadata=st.one_of(
        st.dictionaries(st.sampled_from(["plan", "team", "n"]), json_values(4)), deep()
    ).map(dumps),
    body=OBJECT_BODIES.map(dumps),
)
def test_conditional_configs_with_random_queries_route_or_refuse_cleanly(
    edge: Edge, path: str, config: bytes, metadata: bytes, body: bytes
) -> None:
    headers = [(b"x-portkey-config", config), (b"x-portkey-metadata", metadata)]
    assert_clean(edge.send(path, body, headers))


@given(path=PATHS, headers=header_sets(), body=st.one_of(st.just(GOOD_BODY), BODIES))
def test_any_mix_of_headers_is_served_or_refused_cleanly(
    edge: Edge, path: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    assert_clean(edge.send(path, body, headers))


WEIGHTS = st.one_of(
    st.floats(min_value=0, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False),
    HUGE_INTS,
    json_values(3),
)


@given(path=PATHS, weights=st.lists(WEIGHTS, min_size=1, max_size=4))
def test_loadbalance_weights_of_any_size_route_or_refuse_cleanly(
    edge: Edge, path: str, weights: list[Any]
) -> None:
    config = {
        "strategy": {"mode": "loadbalance"},
        "targets": [
            {"provider": "openai", "custom_host": UPSTREAM, "weight": weight} for weight in weights
        ],
    }
    assert_clean(edge.send(path, GOOD_BODY, [(b"x-portkey-config", dumps(config))]))


@given(
    path=PATHS,
    provider=st.sampled_from(["openai", "groq", "azure-openai"]),
    key=st.one_of(HEADER_TEXT, st.text(max_size=20)),
    inline=st.booleans(),
)
def test_any_provider_key_is_sent_or_refused_cleanly(
    edge: Edge, path: str, provider: str, key: str, inline: bool
) -> None:
    """A provider key from a config-less call's bearer, or from an inline config."""
    if inline:
        config = {"provider": provider, "api_key": key, "custom_host": UPSTREAM}
        if provider == "azure-openai":
            config |= {"deployment_id": "dep", "api_version": "2024-06-01"}
        headers = [(b"x-portkey-config", dumps(config))]
    else:
        bearer = b"Bearer " + key.encode("utf-8", "surrogatepass")
        headers = [(b"x-portkey-provider", provider.encode()), (b"authorization", bearer)]
    assert_clean(edge.send(path, GOOD_BODY, headers))


@given(
    path=PATHS,
    forwarded=st.dictionaries(
        st.sampled_from(["x-team", "x-user", "traceparent", "accept", "user-agent"]),
        HEADER_TEXT,
        min_size=1,
    ),
)
def test_any_forwarded_header_value_is_sent_or_refused_cleanly(
    edge: Edge, path: str, forwarded: dict[str, str]
) -> None:
    headers = [(b"x-portkey-forward-headers", ",".join(forwarded).encode())]
    headers += [(name.encode(), header_value(value)) for name, value in forwarded.items()]
    assert_clean(edge.send(path, GOOD_BODY, headers))


# --- upstream answers ----------------------------------------------------------------------

UPSTREAM_STATUSES = st.one_of(
    st.sampled_from([200, 201, 204, 400, 401, 404, 408, 429, 500, 502, 503, 504]),
    st.integers(min_value=200, max_value=599),
)

EMBEDDINGS = st.one_of(
    st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), max_size=4),
    st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=4),
    st.lists(json_values(2), max_size=3),
    st.text(max_size=12),
    st.sampled_from(["AAAAPwAAgL4=", "!!!", "AAA", "A"]),
    json_values(3),
)

UPSTREAM_BODIES = st.one_of(
    st.builds(
        lambda items: {"object": "list", "data": [{"embedding": e} for e in items]},
        st.lists(EMBEDDINGS, min_size=1, max_size=3),
    ).map(dumps),
    st.builds(
        lambda error: {"error": error},
        st.one_of(
            st.fixed_dictionaries(
                {"message": st.text(), "type": st.text()}, optional={"code": json_values(2)}
            ),
            json_values(4),
        ),
    ).map(dumps),
    json_values().map(dumps),
    st.just(dumps(chat_payload())),
    st.binary(max_size=60),
)

CONTENT_TYPES = st.sampled_from(
    [None, "application/json", "application/json; charset=utf-8", "text/html", "text/plain"]
)


@given(
    path=PATHS,
    status=UPSTREAM_STATUSES,
    content_type=CONTENT_TYPES,
    body=UPSTREAM_BODIES,
    encoding=st.sampled_from([None, "float", "base64"]),
)
def test_any_upstream_answer_reaches_the_client_cleanly(
    edge: Edge,
    path: str,
    status: int,
    content_type: str | None,
    body: bytes,
    encoding: str | None,
) -> None:
    """Upstream answers are untrusted: whatever one says, the client gets a success, the
    upstream's own error passed on, or a gateway error, in OpenAI's shape; a 500 only when
    the upstream said 500."""
    headers = {"content-type": content_type} if content_type else {}
    edge.upstream.answer = lambda _: httpx.Response(status, content=body, headers=headers)
    request: dict[str, Any] = {"model": "m", "messages": [], "input": "x"}
    if encoding is not None:
        request["encoding_format"] = encoding
    response = edge.send(path, dumps(request), [])
    event(f"status {response.status_code}")
    if 200 <= response.status_code < 300:
        return
    assert 400 <= response.status_code < 600, response.status_code
    assert response.status_code != 500 or status == 500, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    error = response.json()["error"]
    assert isinstance(error, dict), response.text
    assert error.get("code") != "internal_error", response.text


@given(
    embeddings=st.lists(EMBEDDINGS, min_size=1, max_size=3),
    encoding=st.sampled_from([None, "float", "base64"]),
)
def test_any_embeddings_answer_reaches_the_client_in_its_encoding_or_as_a_clean_502(
    edge: Edge, embeddings: list[Any], encoding: str | None
) -> None:
    """Vectors are converted to the encoding asked for; one that cannot be is an invalid
    upstream answer, never a crash."""
    answer = dumps({"object": "list", "data": [{"embedding": e} for e in embeddings]})
    edge.upstream.answer = lambda _: httpx.Response(
        200, content=answer, headers={"content-type": "application/json"}
    )
    request: dict[str, Any] = {"model": "m", "input": "x"}
    if encoding is not None:
        request["encoding_format"] = encoding
    response = edge.send("/v1/embeddings", dumps(request), [])
    assert_clean(response)
    if response.status_code == 502:
        assert response.json()["error"]["code"] == "upstream_invalid_response"


@given(
    path=st.sampled_from(ROUTES[:2]),
    status=st.sampled_from([200, 200, 201, 400, 429, 503]),
    chunks=st.lists(
        st.one_of(
            st.binary(max_size=30),
            json_values(4).map(lambda value: b"data: " + dumps(value) + b"\n\n"),
            st.just(sse_event("[DONE]")),
            st.just(b'data: {"error": 1}\n\n'),
        ),
        max_size=5,
    ),
    breaks=st.booleans(),
)
def test_any_upstream_stream_reaches_the_client_cleanly(
    edge: Edge, path: str, status: int, chunks: list[bytes], breaks: bool
) -> None:
    """A streamed answer is relayed or refused; one that breaks never raises out of the app."""

    def answer(_: httpx.Request) -> httpx.Response:
        error = httpx.ReadError("connection reset") if breaks else None
        return sse_response(ChunkStream(chunks, error=error), status=status)

    edge.upstream.answer = answer
    body = dumps({"model": "m", "messages": [], "prompt": "x", "stream": True})
    response = edge.send(path, body, [])
    if response.status_code == 200:
        assert response.headers["content-type"].startswith("text/event-stream")
    else:
        assert_clean(response)


# --- hostile shapes, one example each ------------------------------------------------------

BEYOND_NESTING = 300
"""A nesting depth well past :data:`MAX_JSON_NESTING` (and orjson's 254 levels)."""


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"k": value}
    return value


def _conditional(query: Any) -> bytes:
    return dumps(
        {
            "strategy": {
                "mode": "conditional",
                "conditions": [{"query": query, "then": "a"}],
                "default": "a",
            },
            "targets": [
                {"name": "a", "provider": "openai", "api_key": "sk-own", "custom_host": UPSTREAM}
            ],
        }
    )


def _deep_and(depth: int) -> Any:
    query: Any = {"metadata.plan": "paid"}
    for _ in range(depth):
        query = {"$and": [query]}
    return query


def test_a_deeply_nested_body_under_override_params_is_served_or_refused_cleanly(
    edge: Edge,
) -> None:
    body = dumps({"model": "m", "messages": [], "x": _nested(BEYOND_NESTING)})
    assert_clean(edge.send(ROUTES[0], body, [(b"x-portkey-config", b"pinned")]))


def test_deeply_nested_override_params_are_served_or_refused_cleanly(edge: Edge) -> None:
    config = {
        "provider": "openai",
        "api_key": "sk-own",  # the caller's own key may go to a host the caller names
        "custom_host": UPSTREAM,
        "override_params": {"x": _nested(BEYOND_NESTING)},
    }
    assert_clean(edge.send(ROUTES[0], GOOD_BODY, [(b"x-portkey-config", dumps(config))]))


def test_a_deeply_nested_and_query_is_served_or_refused_cleanly(edge: Edge) -> None:
    config = _conditional(_deep_and(BEYOND_NESTING))
    assert_clean(edge.send(ROUTES[0], GOOD_BODY, [(b"x-portkey-config", config)]))


@pytest.mark.parametrize(
    "query",
    [
        {"metadata.plan": {"$bogus": 1}},
        {"user.plan": "x"},
        {"$nor": []},
        {"params.model": {"$regex": "("}},
        {"params.model": {"$in": 5}},
        {"$and": 5},
    ],
    ids=["unknown-operator", "unknown-root", "unknown-logic", "bad-regex", "in-not-list", "and"],
)
def test_a_malformed_conditional_query_is_refused_with_400(edge: Edge, query: Any) -> None:
    response = edge.send(ROUTES[0], GOOD_BODY, [(b"x-portkey-config", _conditional(query))])
    assert response.status_code == 400
    assert_clean(response)


def test_the_generators_reach_the_upstream(edge: Edge) -> None:
    """The properties are not vacuous: a plain request through these helpers is served."""
    response = edge.send(ROUTES[0], GOOD_BODY, [])
    assert response.status_code == 200
    assert response.json()["object"] == "chat.completion"
